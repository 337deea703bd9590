//! A backend's checks (`xlb doctor --backend --vip ADDR...`): what a host needs to answer
//! VIP traffic that xlb steers to it, by `dsr` (the VIP on loopback, ARP kept quiet about it)
//! and by `ipip` (the decapsulation program, reverse-path filtering, room for the tunnel).

use std::net::IpAddr;

use anyhow::bail;

use super::{Check, Finding, Options, host};
use crate::{
    exit,
    netdev::{self, Link},
};

pub struct Context {
    pub vips: Vec<IpAddr>,
    pub link: Link,
    /// xlb reaches this backend through `ipip` tunnels.
    pub ipip: bool,
}

impl Context {
    pub fn from_options(args: &Options) -> anyhow::Result<Context> {
        if args.vips.is_empty() {
            bail!(exit::Coded(
                exit::UNREADABLE,
                "--backend needs the VIPs this host serves: --vip ADDR (repeatable)".into()
            ));
        }
        let Some(interface) = &args.interface else {
            bail!(exit::Coded(
                exit::UNREADABLE,
                "--backend needs the interface xlb's traffic arrives on: --interface IF".into()
            ));
        };
        Ok(Context {
            vips: args.vips.clone(),
            link: netdev::link(interface)?,
            ipip: args.ipip,
        })
    }

    fn name(&self) -> &str {
        &self.link.name
    }

    fn has_v4(&self) -> bool {
        self.vips.iter().any(IpAddr::is_ipv4)
    }
}

pub const CHECKS: &[Check<Context>] = &[
    Check {
        name: "vip_on_loopback",
        run: vip_on_loopback,
    },
    Check {
        name: "arp_ignore",
        run: arp_ignore,
    },
    Check {
        name: "arp_announce",
        run: arp_announce,
    },
    Check {
        name: "rp_filter",
        run: rp_filter,
    },
    Check {
        name: "decap",
        run: decap,
    },
    Check {
        name: "mss",
        run: mss,
    },
];

fn vip_on_loopback(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "vip_on_loopback";
    let on_lo = host::addresses("lo");
    ctx.vips
        .iter()
        .map(|vip| {
            let prefix = if vip.is_ipv4() { 32 } else { 128 };
            if on_lo.contains(vip) {
                Finding::ok(CHECK, format!("VIP {vip} is on lo"))
            } else {
                Finding::problem(
                    CHECK,
                    format!("VIP {vip} is not on lo"),
                    "packets xlb steers here keep the VIP as their destination: without it \
                     on an interface this host drops them",
                    format!("ip addr add {vip}/{prefix} dev lo"),
                )
            }
        })
        .collect()
}

fn arp_ignore(ctx: &Context) -> Vec<Finding> {
    arp_setting(
        ctx,
        "arp_ignore",
        1,
        "this host answers ARP for its loopback VIPs",
        "routers then send VIP traffic straight here instead of through the load balancer: one \
         backend gets every client",
    )
}

fn arp_announce(ctx: &Context) -> Vec<Finding> {
    arp_setting(
        ctx,
        "arp_announce",
        2,
        "this host may use a VIP as the source of its own ARP requests",
        "neighbours learn the VIP at this host's MAC and send VIP traffic here, around the load \
         balancer",
    )
}

/// The IPv4 ARP setting `check`, which must be at least `at_least` on the backend's interface
/// (the kernel applies the larger of `all` and the interface's own); `problem` is what a lower
/// value makes the host do, `why` what follows. Skipped without an IPv4 VIP.
fn arp_setting(
    ctx: &Context,
    check: &'static str,
    at_least: i64,
    problem: &str,
    why: &str,
) -> Vec<Finding> {
    if !ctx.has_v4() {
        return vec![Finding::skipped(check, "no IPv4 VIP")];
    }
    let value = host::conf_max(check, ctx.name());
    vec![if value >= at_least {
        Finding::ok(check, format!("{check} = {value} on `{}`", ctx.name()))
    } else {
        Finding::problem(
            check,
            format!("{problem} on `{}` ({check} = {value})", ctx.name()),
            why,
            format!("sysctl -w net.ipv4.conf.all.{check}={at_least}"),
        )
    }]
}

fn rp_filter(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "rp_filter";
    let value = host::conf_max("rp_filter", ctx.name());
    vec![if value == 1 {
        Finding::problem(
            CHECK,
            format!(
                "strict reverse-path filtering on `{}` (rp_filter = 1)",
                ctx.name()
            ),
            "packets from clients reach this host through the load balancer (and, with ipip, \
             out of a tunnel), not by the route back to them: strict filtering drops those \
             whose client is routed elsewhere",
            format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{}.rp_filter=2",
                ctx.name()
            ),
        )
    } else {
        Finding::ok(CHECK, format!("rp_filter = {value} on `{}`", ctx.name()))
    }]
}

fn decap(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "decap";
    if !ctx.ipip {
        return vec![Finding::skipped(CHECK, "not an ipip backend (--ipip)")];
    }
    let address = host::addresses(ctx.name())
        .into_iter()
        .find(|a| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80))
        .map_or_else(|| "ADDR".to_owned(), |a| a.to_string());
    vec![match &ctx.link.xdp {
        Some(xdp) if xdp.program_name == lb_common::DECAP_PROGRAM_NAME => Finding::ok(
            CHECK,
            format!(
                "`{}` runs xlb_decap ({}, program {})",
                ctx.name(),
                xdp.mode.name(),
                xdp.program_id
            ),
        ),
        other => Finding::problem(
            CHECK,
            match other {
                Some(xdp) => format!(
                    "`{}` runs XDP program `{}`, not xlb_decap",
                    ctx.name(),
                    xdp.program_name
                ),
                None => format!("`{}` runs no decapsulation program", ctx.name()),
            },
            "ipip packets arrive wrapped in an outer header to this host: without xlb_decap \
             (this kernel has no ipip device) the stack drops them",
            format!("xlb decap attach {} --address {address}", ctx.name()),
        ),
    }]
}

/// Bytes of an IPv4 tunnel header, and of the IPv4 and TCP headers of a segment.
const TUNNEL_V4: u32 = 20;
const TCP_V4_HEADERS: u32 = 40;

/// The MSS check's decision: for an interface of `mtu` whose routes advertise `advmss` (`None`
/// where unset), whether a client's full-size segment fits once tunnelled.
pub fn mss_finding(interface: &str, mtu: u32, routes: &[host::Route]) -> Finding {
    const CHECK: &str = "mss";
    let room = mtu.saturating_sub(TUNNEL_V4 + TCP_V4_HEADERS);
    let too_big: Vec<&host::Route> = routes
        .iter()
        .filter(|r| r.advmss.is_none_or(|mss| mss > room))
        .collect();
    if mtu >= 1500 + TUNNEL_V4 || too_big.is_empty() {
        return Finding::ok(
            CHECK,
            format!("a tunnelled full-size segment fits `{interface}` (MTU {mtu})"),
        );
    }
    let route = &too_big[0].destination;
    Finding::problem(
        CHECK,
        format!(
            "`{interface}`'s MTU is {mtu}: a client's {}-byte segment arrives {} bytes long in \
             its tunnel, and route {route} advertises an MSS above {room}",
            1500 - TCP_V4_HEADERS,
            1500 + TUNNEL_V4
        ),
        "full-size segments do not fit the tunnel: they are dropped, or the load balancer \
         answers them with ICMP too-big at a round trip each (and they are lost where ICMP is \
         filtered)",
        format!(
            "ip link set dev {interface} mtu {} (and the path from the load balancer), or ip \
             route change {route} dev {interface} advmss {room}",
            1500 + TUNNEL_V4
        ),
    )
}

fn mss(ctx: &Context) -> Vec<Finding> {
    if !ctx.ipip {
        return vec![Finding::skipped("mss", "not an ipip backend (--ipip)")];
    }
    vec![mss_finding(
        ctx.name(),
        ctx.link.mtu,
        &host::routes(ctx.name()),
    )]
}
