//! Counter layouts: one per XDP verdict, one per reason a packet got its verdict, and one per
//! VIP that also holds the reason and event of the packets steered to it.

/// Packets and bytes seen by one CPU for one slot. Summed across CPUs in userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    /// Bytes of the frame as received (Ethernet header included).
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

#[cfg(feature = "user")]
// SAFETY: plain old data, two u64 fields, no padding.
unsafe impl aya::Pod for Counter {}

impl Counter {
    /// The sum of two counters (of two CPUs, or two slots).
    pub const fn plus(self, other: Counter) -> Counter {
        Counter {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Per-CPU counters of one VIP (`XLB_VIP_STATS` by VIP id). A packet steered to a backend is
/// counted here, under its reason and (when the flow table knew its flow) its `flow_hit` event,
/// and not in the global reason and event maps: with its backend's counter that is two counter
/// values per steered packet instead of four. Userspace adds these slots, over every VIP id, to
/// the global ones ([`VipCounter::reason`], [`VipCounter::event`]). The fields a steered packet
/// touches come first, next to each other.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipCounter {
    /// [`Reason::ForwardedDsr`].
    pub dsr: Counter,
    /// [`Event::FlowHit`] of the packets counted in `dsr`, `ipip` and `icmp`.
    pub hit: Counter,
    /// [`Reason::ForwardedIpip`].
    pub ipip: Counter,
    /// [`Reason::IcmpSteered`].
    pub icmp: Counter,
    /// Every other packet to the VIP (no backend, too big for the tunnel, ...), which the global
    /// reason map counts.
    pub other: Counter,
}
const _: () = assert!(core::mem::size_of::<VipCounter>() == 80);

#[cfg(feature = "user")]
// SAFETY: plain old data, ten u64 fields, no padding.
unsafe impl aya::Pod for VipCounter {}

impl VipCounter {
    /// Every packet to the VIP, whatever became of it.
    pub const fn total(&self) -> Counter {
        self.dsr.plus(self.ipip).plus(self.icmp).plus(self.other)
    }

    /// The packets of `reason` counted here (none for a reason the global map counts).
    pub const fn reason(&self, reason: Reason) -> Counter {
        match reason {
            Reason::ForwardedDsr => self.dsr,
            Reason::ForwardedIpip => self.ipip,
            Reason::IcmpSteered => self.icmp,
            _ => Counter {
                packets: 0,
                bytes: 0,
            },
        }
    }

    /// The packets of `event` counted here (only `flow_hit`).
    pub const fn event(&self, event: Event) -> Counter {
        match event {
            Event::FlowHit => self.hit,
            _ => Counter {
                packets: 0,
                bytes: 0,
            },
        }
    }

    /// The sum of two VIP counters (of two CPUs).
    pub const fn plus(self, other: VipCounter) -> VipCounter {
        VipCounter {
            dsr: self.dsr.plus(other.dsr),
            hit: self.hit.plus(other.hit),
            ipip: self.ipip.plus(other.ipip),
            icmp: self.icmp.plus(other.icmp),
            other: self.other.plus(other.other),
        }
    }
}

/// XDP verdicts, numbered as the kernel's `enum xdp_action`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Aborted,
        Verdict::Drop,
        Verdict::Pass,
        Verdict::Tx,
        Verdict::Redirect,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Aborted => "aborted",
            Verdict::Drop => "drop",
            Verdict::Pass => "pass",
            Verdict::Tx => "tx",
            Verdict::Redirect => "redirect",
        }
    }

    /// The verdict for a raw XDP return code, if it is one.
    pub const fn from_code(code: u32) -> Option<Verdict> {
        match code {
            0 => Some(Verdict::Aborted),
            1 => Some(Verdict::Drop),
            2 => Some(Verdict::Pass),
            3 => Some(Verdict::Tx),
            4 => Some(Verdict::Redirect),
            _ => None,
        }
    }
}

/// Why a packet got its verdict. Exactly one reason is counted per packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed to the stack untouched.
    NotIp = 0,
    /// A well-formed IP packet that is not addressed to a service: passed untouched.
    NotVip = 1,
    /// A frame that ends inside a header it announces: dropped.
    Truncated = 2,
    /// An IP header that is inconsistent (IHL < 5, version mismatch, total length shorter
    /// than the header): dropped.
    BadHeader = 3,
    /// An IP fragment: passed to the stack, never steered (only the first carries ports).
    Fragment = 4,
    /// A transport other than TCP or UDP: passed untouched.
    OtherL4 = 5,
    /// Addressed to a VIP and sent to a backend by rewriting the MAC addresses (`dsr`).
    ForwardedDsr = 6,
    /// Addressed to a VIP whose table holds no active backend for this flow: dropped.
    NoBackend = 7,
    /// Addressed to a VIP and sent to a backend inside an IPIP or IPv6 tunnel header (`ipip`).
    ForwardedIpip = 8,
    /// `ipip` would make the packet larger than the configured MTU and it may not be answered
    /// (IPv4 without DF, an ICMP error): dropped and counted.
    EncapTooBig = 9,
    /// An ICMP "fragmentation needed" / ICMPv6 "packet too big" about a VIP's flow, sent to the
    /// backend that owns the flow (dsr or ipip, as the VIP forwards).
    IcmpSteered = 10,
    /// Decapsulation program: a tunnelled packet for this host, stripped and passed up.
    Decapsulated = 11,
    /// An `ipip` packet too big for the tunnel (IPv4 with DF set, or IPv6), answered in its
    /// place with an ICMP "fragmentation needed" / ICMPv6 "packet too big" to the client
    /// carrying the MTU that leaves room for the outer header.
    TooBigAnswered = 12,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::NotIp,
        Reason::NotVip,
        Reason::Truncated,
        Reason::BadHeader,
        Reason::Fragment,
        Reason::OtherL4,
        Reason::ForwardedDsr,
        Reason::NoBackend,
        Reason::ForwardedIpip,
        Reason::EncapTooBig,
        Reason::IcmpSteered,
        Reason::Decapsulated,
        Reason::TooBigAnswered,
    ];
    /// Slots in the reason counter map; room to add reasons without resizing the map.
    pub const SLOTS: u32 = 32;

    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::NotVip => "not_vip",
            Reason::Truncated => "truncated",
            Reason::BadHeader => "bad_header",
            Reason::Fragment => "fragment",
            Reason::OtherL4 => "other_l4",
            Reason::ForwardedDsr => "forwarded_dsr",
            Reason::NoBackend => "no_backend",
            Reason::ForwardedIpip => "forwarded_ipip",
            Reason::EncapTooBig => "encap_too_big",
            Reason::IcmpSteered => "icmp_steered",
            Reason::Decapsulated => "decapsulated",
            Reason::TooBigAnswered => "too_big_answered",
        }
    }

    /// The verdict the data plane gives every packet counted under this reason.
    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::Truncated | Reason::BadHeader | Reason::NoBackend | Reason::EncapTooBig => {
                Verdict::Drop
            }
            Reason::ForwardedDsr
            | Reason::ForwardedIpip
            | Reason::IcmpSteered
            | Reason::TooBigAnswered => Verdict::Tx,
            Reason::NotIp
            | Reason::NotVip
            | Reason::Fragment
            | Reason::OtherL4
            | Reason::Decapsulated => Verdict::Pass,
        }
    }
}
const _: () = assert!(Reason::ALL.len() as u32 <= Reason::SLOTS);

/// Things that happen to some packets on their way, counted beside (not instead of) reasons.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The flow table knew the flow and its backend is active.
    FlowHit = 0,
    /// The flow was hashed into the Maglev table (new flow or unknown to the flow table).
    FlowMiss = 1,
    /// The flow table pointed at a backend that is no longer active: re-hashed.
    FlowStale = 2,
    /// A flow that missed the table was remembered (it took a slot).
    FlowRemembered = 3,
    /// A flow that missed the table was steered by the Maglev table without being remembered:
    /// a SYN under `first_ack`, or under `protect` a SYN whose set holds only proven flows (an
    /// ICMP error about an unknown flow, too).
    FlowNotRemembered = 4,
    /// Remembering a flow evicted a flow that had proved itself (sent more than a SYN): under a
    /// SYN flood with the `protect` or `first_ack` admission this stays at what legitimate
    /// churn causes; otherwise the table is too small.
    FlowEvictedProven = 5,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::FlowHit,
        Event::FlowMiss,
        Event::FlowStale,
        Event::FlowRemembered,
        Event::FlowNotRemembered,
        Event::FlowEvictedProven,
    ];
    /// Slots in the event counter map; room to add events without resizing the map.
    pub const SLOTS: u32 = 16;

    pub const fn name(self) -> &'static str {
        match self {
            Event::FlowHit => "flow_hit",
            Event::FlowMiss => "flow_miss",
            Event::FlowStale => "flow_stale",
            Event::FlowRemembered => "flow_remembered",
            Event::FlowNotRemembered => "flow_not_remembered",
            Event::FlowEvictedProven => "flow_evicted_proven",
        }
    }
}
const _: () = assert!(Event::ALL.len() as u32 <= Event::SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    const fn counter(packets: u64, bytes: u64) -> Counter {
        Counter { packets, bytes }
    }

    /// Test that a VIP counter's total counts each packet once (the `flow_hit` of a steered
    /// packet is not a second packet), and that it gives the global sums only the reasons and
    /// event it holds.
    #[test]
    fn vip_counter_counts_each_packet_once_and_owns_only_steered_slots() {
        let vip = VipCounter {
            dsr: counter(3, 300),
            hit: counter(2, 200),
            ipip: counter(5, 500),
            icmp: counter(1, 70),
            other: counter(4, 40),
        };
        assert_eq!(vip.total(), counter(13, 910));
        assert_eq!(vip.reason(Reason::ForwardedDsr), counter(3, 300));
        assert_eq!(vip.reason(Reason::ForwardedIpip), counter(5, 500));
        assert_eq!(vip.reason(Reason::IcmpSteered), counter(1, 70));
        assert_eq!(vip.event(Event::FlowHit), counter(2, 200));
        for reason in Reason::ALL.into_iter().filter(|reason| {
            !matches!(
                reason,
                Reason::ForwardedDsr | Reason::ForwardedIpip | Reason::IcmpSteered
            )
        }) {
            assert_eq!(vip.reason(reason), Counter::default(), "{}", reason.name());
        }
        for event in &Event::ALL[1..] {
            assert_eq!(vip.event(*event), Counter::default(), "{}", event.name());
        }
        assert_eq!(vip.plus(vip).total(), counter(26, 1820));
    }
}
