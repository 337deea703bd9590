//! `xlb explain`: where a flow goes and why, decided from the live maps by the kernel's own
//! steps (filter, VIP lookup, flow hash, table slot, flow table, rewrite), one line per step.

use std::net::{IpAddr, SocketAddr};

use anyhow::bail;
use lb_common::{
    Config, Event, FlowKey, Reason, Vip, VipKey,
    address::{Mac, to_kernel},
    flow_hash,
    service::{
        BACKEND_ACTIVE, FAMILY_IPV4, VIP_FORWARD_IPIP, VIP_HASH_SOURCE_ONLY, find_vip,
        vip_filter_bit,
    },
};
use serde::Serialize;

use crate::{
    config::{FlowAdmission, Protocol},
    flow_table,
    live::{BackendState, Snapshot},
    maps::Maps,
    rollout::{NO_BACKEND, describe_vip, live_address},
    status::VipEntry,
    steering,
};

/// Explains a flow from `source` to `destination` (an address with `protocol`, or a live VIP's
/// name or `ADDRESS:PORT/PROTOCOL`) on the xlb pinned under `pin_path`, the VIP named as its
/// last apply named it.
pub fn explain_live(
    pin_path: &std::path::Path,
    source: SocketAddr,
    destination_text: &str,
    protocol: Option<Protocol>,
) -> anyhow::Result<Explanation> {
    let mut maps = crate::pins::open(pin_path)?;
    let names = crate::names::read(pin_path);
    let (destination, protocol) = destination(&names.resolve(destination_text), protocol)
        .map_err(|err| crate::exit::Coded(crate::exit::UNREADABLE, err))?;
    let query = Query {
        source,
        destination,
        protocol,
    };
    let mut explanation = explain(&mut maps, &query)?;
    if let Some(matched) = &mut explanation.vip {
        matched.entry.name_from(&names);
    }
    Ok(explanation)
}

/// The destination and protocol of `text` (`ADDRESS:PORT` with `protocol`, or a VIP's
/// `ADDRESS:PORT/PROTOCOL`, which a name resolves to); the error says what was wrong.
fn destination(text: &str, protocol: Option<Protocol>) -> Result<(SocketAddr, Protocol), String> {
    let (address, named) = match text.rsplit_once('/') {
        Some((address, "tcp")) => (address, Some(Protocol::Tcp)),
        Some((address, "udp")) => (address, Some(Protocol::Udp)),
        _ => (text, None),
    };
    let address: SocketAddr = address.parse().map_err(|_| {
        format!(
            "destination `{text}` is neither ADDRESS:PORT (e.g. 198.18.1.10:80 or \
             [2001:db8:1::10]:443) nor the name of a live VIP (`xlb status` lists them)"
        )
    })?;
    let protocol = protocol
        .or(named)
        .ok_or_else(|| format!("give the protocol after the destination `{text}`: tcp or udp"))?;
    Ok((address, protocol))
}

/// The flow to explain, as the client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub protocol: Protocol,
}

impl Query {
    /// The 5-tuple as the kernel's parser builds it: addresses as map bytes, ports in network
    /// byte order (read from the header with a native load).
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            src: to_kernel(self.source.ip()).0,
            dst: to_kernel(self.destination.ip()).0,
            sport: self.source.port().to_be(),
            dport: self.destination.port().to_be(),
            proto: self.protocol.number(),
            pad: [0; 3],
        }
    }
}

/// Everything `explain` found, in the kernel's order. `steps` is the text explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The destination's bit in the VIP address filter, and whether it is set.
    pub filter_bit: u32,
    pub filter_set: bool,
    pub is_vip: bool,
    /// When not a VIP: `filter` (the bit is clear) or `lookup` (no VIP entry).
    pub ruled_out_by: Option<&'static str>,
    pub vip: Option<VipMatch>,
    /// The table's choice (what new flows get); absent when not a VIP or the VIP has no table.
    pub table: Option<TableChoice>,
    /// The backend the flow table remembers for this flow, if any.
    pub flow_entry: Option<BackendInfo>,
    /// What a TCP SYN (a new connection) gets: always the table's choice. Absent for UDP.
    pub syn: Option<Decision>,
    /// Whether the flow table would remember that SYN now (`global.flow_admission` and the
    /// flow's set); absent for UDP.
    pub syn_remembered: Option<bool>,
    /// What every other packet (TCP without SYN, every UDP datagram) gets.
    pub established: Option<Decision>,
    /// The explanation, one line per step.
    pub steps: Vec<String>,
}

/// The VIP entry the flow matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipMatch {
    #[serde(flatten)]
    pub entry: VipEntry,
    /// Whether the exact port matched (else the all-ports entry did).
    pub exact_port: bool,
    /// The live table copy's first slot in the slot map.
    pub table_base: u32,
}

/// The flow's slot in the live table and the backend there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableChoice {
    pub flow_hash: u32,
    /// `hash % table_size`, relative to the copy's first slot.
    pub slot: u32,
    /// None: the slot holds no backend.
    pub backend: Option<BackendInfo>,
}

/// A backend entry as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    pub id: u32,
    /// None when the id is unused or beyond the backend map.
    pub address: Option<IpAddr>,
    pub mac: String,
    pub weight: u32,
    pub state: BackendState,
    /// Whether the kernel sends it packets (`BACKEND_ACTIVE`).
    pub active: bool,
}

/// Where one kind of packet goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `flow_table` (the remembered backend) or `table` (hashed into the Maglev table).
    pub via: &'static str,
    /// The flow-table event the kernel counts: `flow_hit`, `flow_miss` or `flow_stale`.
    pub event: &'static str,
    /// The reason the kernel counts: `forwarded_dsr`, `forwarded_ipip` or `no_backend`.
    pub reason: &'static str,
    /// `tx` or `drop`.
    pub verdict: &'static str,
    pub backend: Option<BackendInfo>,
    /// The frame that leaves, when forwarded.
    pub frame: Option<Frame>,
}

/// The frame sent to the backend: the destination MAC is the backend's (`dsr`) or the next
/// hop's (`ipip`); the source MAC is the received frame's destination (this host's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub dst_mac: String,
    /// The outer header of `ipip`; none for `dsr` (the IP packet is unchanged).
    pub tunnel: Option<Tunnel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    /// IP protocol (IPv4 outer) or next header (IPv6 outer): 4 for IPv4 inside, 41 for IPv6.
    pub protocol: u8,
    /// Largest tunnelled packet; larger ones are answered with a too-big error
    /// (`too_big_answered`) or, IPv4 without DF, dropped as `encap_too_big`.
    pub mtu: u32,
    /// Largest client packet that fits (`mtu` minus the outer header).
    pub max_inner: u32,
}

/// Explains `query` from the maps of a loaded xlb.
pub fn explain(maps: &mut (impl Maps + ?Sized), query: &Query) -> anyhow::Result<Explanation> {
    if query.source.is_ipv4() != query.destination.is_ipv4() {
        bail!(
            "source {} and destination {} are of different address families: give both as \
             IPv4 or both as IPv6 (a packet carries one family)",
            query.source,
            query.destination
        );
    }
    let snapshot = Snapshot::read(maps)?;
    let key = query.flow_key();
    let family = to_kernel(query.destination.ip()).1;
    let protocol = match query.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let filter_bit = vip_filter_bit(&key.dst, family);
    let filter_set = snapshot.filter[(filter_bit / 64) as usize] & (1 << (filter_bit % 64)) != 0;
    let mut explanation = Explanation {
        source: query.source,
        destination: query.destination,
        protocol,
        filter_bit,
        filter_set,
        is_vip: false,
        ruled_out_by: None,
        vip: None,
        table: None,
        flow_entry: None,
        syn: None,
        syn_remembered: None,
        established: None,
        steps: Vec::new(),
    };
    let dst = query.destination.ip();
    let steps = &mut explanation.steps;
    if !filter_set {
        explanation.ruled_out_by = Some("filter");
        steps.push(format!(
            "VIP filter: bit {filter_bit} of {dst} is clear, so no VIP has this address: the \
             packet goes to the host's stack untouched (not_vip)"
        ));
        return Ok(explanation);
    }
    steps.push(format!("VIP filter: bit {filter_bit} of {dst} is set"));
    let exact_key = VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family,
    };
    let all_ports = VipKey {
        port: 0,
        ..exact_key
    };
    let Some((vip, exact_port)) = find_vip(exact_key, |key| snapshot.vip(key).copied()) else {
        explanation.ruled_out_by = Some("lookup");
        steps.push(format!(
            "no VIP {} and no all-ports VIP {}: not a VIP (the filter bit is shared with another \
             VIP address, or this address is a VIP for another port or protocol), so the packet \
             goes to the host's stack untouched (not_vip)",
            describe_vip(&exact_key),
            describe_vip(&all_ports)
        ));
        return Ok(explanation);
    };
    let vip_key = if exact_port { exact_key } else { all_ports };
    explanation.is_vip = true;
    let ipip = vip.flags & VIP_FORWARD_IPIP != 0;
    let source_only = vip.flags & VIP_HASH_SOURCE_ONLY != 0;
    let matched = VipMatch {
        entry: VipEntry::of(&vip_key, &vip),
        exact_port,
        table_base: if vip.active == 0 {
            vip.tables[0]
        } else {
            vip.tables[1]
        },
    };
    let entry = &matched.entry;
    steps.push(format!(
        "VIP {} (id {}) matches {}: {} forwarding, {} hash, {}-slot table, copy {} live",
        entry.vip,
        entry.id,
        if exact_port {
            "the exact port"
        } else {
            "on all ports (its port-0 entry)"
        },
        entry.forwarding,
        entry.hash,
        entry.table_size,
        entry.active_copy
    ));

    let table = table_choice(maps, &snapshot, &vip, &key)?;
    match &table {
        None => steps.push(format!(
            "the VIP entry is unusable (table size {}, live copy {}): the kernel finds no \
             backend for new flows; re-apply the config with `xlb apply FILE`",
            vip.table_size, vip.active
        )),
        Some(choice) => {
            steps.push(format!(
                "flow hash {:#010x} over the {} -> slot {} of {}",
                choice.flow_hash,
                if source_only {
                    "source address"
                } else {
                    "5-tuple"
                },
                choice.slot,
                vip.table_size
            ));
            steps.push(match &choice.backend {
                None => format!(
                    "slot {} holds no backend: new flows are dropped (no_backend)",
                    choice.slot
                ),
                Some(backend) => format!(
                    "slot {} holds backend {}{}",
                    choice.slot,
                    backend.id,
                    describe_backend(backend)
                ),
            });
        }
    }

    let entry_backend = flow_table::lookup(maps, &key)?.map(|slot| {
        let mut remembered = backend_info(&snapshot, slot.backend);
        // An id given to another backend since: the kernel re-hashes the flow.
        remembered.active &= snapshot
            .backends
            .get(slot.backend as usize)
            .is_some_and(|backend| backend.cookie == slot.cookie);
        remembered
    });
    let rewrite = Rewrite {
        ipip,
        inner_v4: family == FAMILY_IPV4,
        config: snapshot.config,
        hash: flow_hash(&key, false),
    };
    let from_table = |event: Event| decide(&table, "table", event, &rewrite);
    let syn = (query.protocol == Protocol::Tcp).then(|| from_table(Event::FlowMiss));
    let syn_remembered = match syn {
        Some(_) => Some(flow_table::syn_remembered(
            maps,
            &key,
            snapshot.config.flags,
        )?),
        None => None,
    };
    if let Some(remembered) = syn_remembered {
        let admission = FlowAdmission::from_flags(snapshot.config.flags).name();
        steps.push(if remembered {
            format!(
                "flow admission {admission}: a SYN of this flow is remembered (its set has a \
                 way for it), so its first ACK follows it even across a table change"
            )
        } else {
            format!(
                "flow admission {admission}: a SYN of this flow is steered by the table without \
                 being remembered (its set holds only flows that proved themselves, or the \
                 policy waits for the first ACK), which the table then steers"
            )
        });
    }
    let table_id = table
        .as_ref()
        .and_then(|t| t.backend.as_ref())
        .map(|b| b.id);
    let others = if query.protocol == Protocol::Tcp {
        "other packets follow the flow-table entry"
    } else {
        "every datagram follows the flow-table entry"
    };
    let established = match &entry_backend {
        None => {
            steps.push(
                "flow table: no entry for this flow: packets take the table's choice, and the \
                 first one the flow admission lets in is remembered"
                    .to_owned(),
            );
            from_table(Event::FlowMiss)
        }
        Some(remembered) if remembered.active => {
            steps.push(if Some(remembered.id) == table_id {
                format!(
                    "flow table: entry -> backend {}, the table's choice too",
                    remembered.id
                )
            } else if query.protocol == Protocol::Tcp {
                format!(
                    "flow table: entry -> backend {}{}: a new TCP SYN re-hashes (to the table's \
                     choice); {others}",
                    remembered.id,
                    describe_backend(remembered)
                )
            } else {
                format!(
                    "flow table: entry -> backend {}{}: {others}",
                    remembered.id,
                    describe_backend(remembered)
                )
            });
            forward("flow_table", Event::FlowHit, remembered.clone(), &rewrite)
        }
        Some(remembered) => {
            steps.push(format!(
                "flow table: entry -> backend {}{}: not active (or its id was given to \
                 another backend since), so the next packet will be re-hashed to the table's \
                 choice and the entry replaced",
                remembered.id,
                describe_backend(remembered)
            ));
            from_table(Event::FlowStale)
        }
    };
    match &syn {
        Some(syn) if syn.backend != established.backend => {
            steps.push(format!("a new TCP SYN: {}", describe_decision(syn)));
            steps.push(format!(
                "every other packet: {}",
                describe_decision(&established)
            ));
        }
        _ => steps.push(format!("result: {}", describe_decision(&established))),
    }
    explanation.vip = Some(matched);
    explanation.table = table;
    explanation.flow_entry = entry_backend;
    explanation.syn = syn;
    explanation.syn_remembered = syn_remembered;
    explanation.established = Some(established);
    Ok(explanation)
}

/// The flow's slot of the live table by [`Vip::table_slot`], as the kernel's `select` takes it;
/// None when the kernel would not read a table ([`Vip::has_table`]).
fn table_choice(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    vip: &Vip,
    key: &FlowKey,
) -> anyhow::Result<Option<TableChoice>> {
    if !vip.has_table() {
        return Ok(None);
    }
    let table = vip.table_slot(key, flow_hash(key, false));
    let id = steering::read_table(maps, table.index(), 1)?[0];
    Ok(Some(TableChoice {
        flow_hash: table.hash,
        slot: table.slot,
        backend: (id != NO_BACKEND).then(|| backend_info(snapshot, id)),
    }))
}

fn backend_info(snapshot: &Snapshot, id: u32) -> BackendInfo {
    match snapshot.backends.get(id as usize) {
        None => BackendInfo {
            id,
            address: None,
            mac: Mac([0; 6]).to_string(),
            weight: 0,
            state: BackendState::Unused,
            active: false,
        },
        Some(backend) => {
            let state = BackendState::of(backend);
            BackendInfo {
                id,
                address: (state != BackendState::Unused).then(|| live_address(backend)),
                mac: Mac(backend.mac).to_string(),
                weight: backend.weight,
                state,
                active: backend.flags & BACKEND_ACTIVE != 0,
            }
        }
    }
}

/// How the VIP rewrites a forwarded packet.
struct Rewrite {
    ipip: bool,
    /// The client's packet is IPv4 (the tunnel's inner protocol).
    inner_v4: bool,
    config: Config,
    /// The flow's 5-tuple hash: picks the outer source within a configured prefix.
    hash: u32,
}

/// What the table's choice does with a packet: forward to an active backend, else drop.
fn decide(
    table: &Option<TableChoice>,
    via: &'static str,
    event: Event,
    rewrite: &Rewrite,
) -> Decision {
    match table.as_ref().and_then(|t| t.backend.as_ref()) {
        Some(backend) if backend.active => forward(via, event, backend.clone(), rewrite),
        backend => Decision {
            via,
            event: event.name(),
            reason: Reason::NoBackend.name(),
            verdict: Reason::NoBackend.verdict().name(),
            backend: backend.cloned(),
            frame: None,
        },
    }
}

fn forward(via: &'static str, event: Event, backend: BackendInfo, rewrite: &Rewrite) -> Decision {
    let config = &rewrite.config;
    let reason = if rewrite.ipip {
        Reason::ForwardedIpip
    } else {
        Reason::ForwardedDsr
    };
    let tunnel = match (rewrite.ipip, backend.address) {
        (true, Some(outer_dst)) => {
            let mtu = if config.mtu == 0 {
                Config::DEFAULT_MTU
            } else {
                config.mtu
            };
            let (outer_src, header) = match outer_dst {
                IpAddr::V4(_) => (IpAddr::from(config.ipip_source_v4(rewrite.hash)), 20),
                IpAddr::V6(_) => (IpAddr::from(config.ipip_source_v6(rewrite.hash)), 40),
            };
            Some(Tunnel {
                outer_src,
                outer_dst,
                protocol: if rewrite.inner_v4 { 4 } else { 41 },
                mtu,
                max_inner: mtu.saturating_sub(header),
            })
        }
        _ => None,
    };
    Decision {
        via,
        event: event.name(),
        reason: reason.name(),
        verdict: reason.verdict().name(),
        frame: Some(Frame {
            dst_mac: backend.mac.clone(),
            tunnel,
        }),
        backend: Some(backend),
    }
}

/// ` (ADDRESS, mac MAC, STATE, weight W)` of a backend.
fn describe_backend(backend: &BackendInfo) -> String {
    match backend.address {
        Some(address) => format!(
            " ({address}, mac {}, {}, weight {})",
            backend.mac,
            backend.state.name(),
            backend.weight
        ),
        None => format!(" ({})", backend.state.name()),
    }
}

fn describe_decision(decision: &Decision) -> String {
    let (Some(backend), Some(frame)) = (&decision.backend, &decision.frame) else {
        return format!("dropped ({})", decision.reason);
    };
    let address = backend
        .address
        .map_or_else(String::new, |a| format!(" {a}"));
    match &frame.tunnel {
        None => format!(
            "XDP_TX to backend {}{address}: destination MAC {}, source MAC this host's, IP packet \
             unchanged ({})",
            backend.id, frame.dst_mac, decision.reason
        ),
        Some(tunnel) => {
            let unset = tunnel.outer_src.is_unspecified();
            format!(
                "XDP_TX to backend {}{address} in a tunnel: destination MAC {} (next hop), outer \
                 {} -> {} protocol {}{}; client packets over {} bytes get a too-big answer \
                 (too_big_answered; IPv4 without DF: dropped as encap_too_big) ({})",
                backend.id,
                frame.dst_mac,
                tunnel.outer_src,
                tunnel.outer_dst,
                tunnel.protocol,
                if unset {
                    " (tunnel source unset: set global.ipip_source_v4/v6 and re-apply)"
                } else {
                    ""
                },
                tunnel.max_inner,
                decision.reason
            )
        }
    }
}

/// The explanation as numbered lines under a header.
pub fn text(explanation: &Explanation) -> String {
    let mut out = format!(
        "flow {} -> {}/{}\n",
        explanation.source, explanation.destination, explanation.protocol
    );
    for (i, step) in explanation.steps.iter().enumerate() {
        out += &format!("{:>2}. {step}\n", i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the flow key matches the kernel parser's: ports in network byte order and an
    /// IPv4 address in the first four bytes.
    #[test]
    fn flow_key_is_the_kernels() {
        let query = Query {
            source: "198.18.0.1:40000".parse().unwrap(),
            destination: "198.18.1.10:80".parse().unwrap(),
            protocol: Protocol::Udp,
        };
        let key = query.flow_key();
        assert_eq!(key.src[..4], [198, 18, 0, 1]);
        assert_eq!(key.src[4..], [0; 12]);
        assert_eq!(key.sport.to_ne_bytes(), 40000u16.to_be_bytes());
        assert_eq!(key.dport.to_ne_bytes(), 80u16.to_be_bytes());
        assert_eq!(key.proto, 17);
    }

    /// Test that MACs print as `ip` prints them.
    #[test]
    fn macs_print_as_ip_prints_them() {
        assert_eq!(Mac([2, 0, 0, 0, 3, 0xab]).to_string(), "02:00:00:00:03:ab");
    }
}
