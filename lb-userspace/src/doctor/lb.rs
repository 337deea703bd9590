//! The load balancer's checks: what the XDP program needs from the kernel, the interface and its
//! veth peer, the offloads and MTU that break XDP_TX or tunnels, the backends' neighbours, and
//! whether the pins and the attachment agree.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use aya::programs::ProgramInfo;

use super::{Check, Finding, Options, host};
use crate::{
    config::{self, Environment, Forwarding, Model},
    exit,
    netdev::{self, Link, XdpMode},
    pins,
};

/// What the load balancer's checks look at.
pub struct Context {
    /// `--interface`, else the config's `global.interface`.
    pub interface: Option<String>,
    pub link: Option<Link>,
    pub pin_path: PathBuf,
    pub config: Option<Model>,
    /// How long `xdp_tx_errors` is watched for growth.
    pub sample: Duration,
}

/// Validation's view of the host with every interface present: the doctor checks the
/// interface itself, as a finding with its fix.
struct AnyInterface;

impl Environment for AnyInterface {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

impl Context {
    pub fn from_options(args: &Options) -> anyhow::Result<Context> {
        let config = match &args.config {
            Some(path) => Some(match config::load(path, &AnyInterface) {
                Ok(loaded) => loaded.model,
                Err(_) => {
                    return Err(exit::Coded(
                        exit::INVALID,
                        format!(
                            "{} is not a valid config: `xlb validate {}` says why",
                            path.display(),
                            path.display()
                        ),
                    )
                    .into());
                }
            }),
            None => None,
        };
        let interface = args
            .interface
            .clone()
            .or_else(|| config.as_ref().map(|m| m.global.interface.clone()));
        let link = interface
            .as_deref()
            .and_then(|name| netdev::link(name).ok());
        let pin_path = args
            .pin_path
            .clone()
            .or_else(|| config.as_ref().map(|m| m.global.pin_path.clone()))
            .unwrap_or_else(|| PathBuf::from(pins::DEFAULT_PIN_PATH));
        Ok(Context {
            interface,
            link,
            pin_path,
            config,
            sample: Duration::from_secs_f64(args.sample),
        })
    }

    /// Whether the config has a VIP forwarding with `forwarding`.
    fn forwards(&self, forwarding: Forwarding) -> bool {
        self.config
            .as_ref()
            .is_some_and(|m| m.vips.iter().any(|v| v.forwarding == forwarding))
    }
}

pub const CHECKS: &[Check<Context>] = &[
    Check {
        name: "bpffs",
        run: bpffs,
    },
    Check {
        name: "jit",
        run: jit_check,
    },
    Check {
        name: "interface",
        run: interface,
    },
    Check {
        name: "attachment",
        run: attachment,
    },
    Check {
        name: "veth_peer",
        run: veth_peer,
    },
    Check {
        name: "offloads",
        run: offloads,
    },
    Check {
        name: "ipip_mtu",
        run: ipip_mtu,
    },
    Check {
        name: "rp_filter",
        run: rp_filter,
    },
    Check {
        name: "neighbours",
        run: neighbours,
    },
    Check {
        name: "xdp_tx_errors",
        run: xdp_tx_errors,
    },
];

fn bpffs(_: &Context) -> Vec<Finding> {
    let path = Path::new(pins::BPFFS_ROOT);
    vec![if pins::on_bpffs(path) {
        Finding::ok("bpffs", format!("{} is a bpffs mount", path.display()))
    } else {
        Finding::problem(
            "bpffs",
            format!(
                "{} is not a bpffs mount in this mount namespace",
                path.display()
            ),
            "xlb pins its program, link and maps there: without pins forwarding stops when the \
             daemon does, and no other verb can reach the data plane",
            "mount -t bpf bpf /sys/fs/bpf (inside `ip netns exec`, which remounts /sys and hides \
             it, run `nsenter --net=/run/netns/NAME xlb ...` instead)",
        )
    }]
}

/// The JIT switch is visible only in the initial network namespace; elsewhere, whether the
/// attached program was JIT-compiled says the same.
fn jit_check(ctx: &Context) -> Vec<Finding> {
    let switch = host::sysctl("net.core.bpf_jit_enable");
    let jited = ctx
        .link
        .as_ref()
        .and_then(|l| l.xdp.as_ref())
        .map(|xdp| if xdp.jited { "1" } else { "0" });
    vec![jit(switch.as_deref().or(jited))]
}

/// The JIT check's decision on `net.core.bpf_jit_enable` (`None`: the sysctl is missing).
pub fn jit(value: Option<&str>) -> Finding {
    match value {
        Some("1" | "2") => Finding::ok("jit", "the BPF JIT is on"),
        Some(value) => Finding::problem(
            "jit",
            format!("the BPF JIT is off (net.core.bpf_jit_enable = {value})"),
            "the interpreter runs XDP programs several times slower: every packet pays",
            "sysctl -w net.core.bpf_jit_enable=1",
        ),
        None => Finding::warning(
            "jit",
            "net.core.bpf_jit_enable is not visible here and no program is attached: the JIT \
             state is unknown",
            "the switch exists only in the initial network namespace (and not at all with \
             CONFIG_BPF_JIT_ALWAYS_ON, which has a JIT)",
            None,
        ),
    }
}

fn interface(ctx: &Context) -> Vec<Finding> {
    vec![match (&ctx.interface, &ctx.link) {
        (None, _) => Finding::problem(
            "interface",
            "no interface to check",
            "every other check looks at the interface xlb serves",
            "xlb doctor --config FILE (or --interface IF)",
        ),
        (Some(name), None) => {
            let names: Vec<String> = netdev::links(None)
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.name)
                .collect();
            Finding::problem(
                "interface",
                format!("no interface named `{name}` in this network namespace"),
                "xlb cannot attach to it: nothing is load balanced",
                format!(
                    "set global.interface to one of {} (`ip link` lists them)",
                    names.join(", ")
                ),
            )
        }
        (Some(name), Some(link)) => Finding::ok(
            "interface",
            format!("`{name}` exists (index {}, MTU {})", link.ifindex, link.mtu),
        ),
    }]
}

fn attachment(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "attachment";
    let pin = ctx.pin_path.display();
    let Some(link) = &ctx.link else {
        return vec![Finding::skipped(CHECK, "no interface")];
    };
    let name = &link.name;
    let pinned = ProgramInfo::from_pin(pins::program_path(&ctx.pin_path)).ok();
    let running = link.xdp.as_ref();
    let mut findings = Vec::new();
    match (pinned.as_ref().map(ProgramInfo::id), running) {
        (None, None) => findings.push(Finding::problem(
            CHECK,
            format!("nothing is pinned under {pin} and `{name}` runs no XDP program"),
            "no packet is load balanced",
            "xlb run --config FILE",
        )),
        (None, Some(xdp)) => findings.push(Finding::problem(
            CHECK,
            format!(
                "`{name}` runs XDP program {} (`{}`) but nothing is pinned under {pin}",
                xdp.program_id, xdp.program_name
            ),
            "another program (or an xlb with other pins) holds the interface: `xlb` verbs \
             cannot reach it and `xlb run` cannot attach",
            format!("ip link set dev {name} xdp off, then xlb run --config FILE"),
        )),
        (Some(id), None) => findings.push(Finding::problem(
            CHECK,
            format!("program {id} is pinned under {pin} but `{name}` runs no XDP program"),
            "the pins outlived their attachment (another interface, or detached by hand): no \
             packet is load balanced",
            format!("xlb down --pin-path {pin}, then xlb run --config FILE"),
        )),
        (Some(id), Some(xdp)) if xdp.program_id != id => findings.push(Finding::problem(
            CHECK,
            format!(
                "`{name}` runs program {} (`{}`), not the program {id} pinned under {pin}",
                xdp.program_id, xdp.program_name
            ),
            "the maps `xlb` verbs change are not the ones steering packets",
            format!("xlb down --pin-path {pin}, then xlb run --config FILE"),
        )),
        (Some(id), Some(xdp)) => findings.push(match xdp.mode {
            XdpMode::Generic => Finding::warning(
                CHECK,
                format!("program {id} runs on `{name}` in generic mode"),
                format!(
                    "generic XDP runs after the kernel built an skb: several times the cost of \
                     native. Native needs driver support ({}) and, on most drivers, an MTU \
                     that fits a page ({name}'s is {}); `xlb run` logs why native failed",
                    driver(name),
                    link.mtu
                ),
                Some("set global.xdp_mode = \"native\" and fix what `xlb run` reports".into()),
            ),
            _ => Finding::ok(
                CHECK,
                format!(
                    "program {id} pinned under {pin} runs on `{name}` ({})",
                    xdp.mode.name()
                ),
            ),
        }),
    }
    findings
}

/// The driver of `name` (`ethtool -i`), for messages.
fn driver(name: &str) -> String {
    std::process::Command::new("ethtool")
        .args(["-i", name])
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("driver: ").map(|d| format!("driver `{d}`")))
        })
        .unwrap_or_else(|| "driver unknown".to_owned())
}

/// The veth peer of `link`: the interface and the named namespace it is in (`None`: this one).
fn peer(link: &Link) -> anyhow::Result<Option<(Link, Option<String>)>> {
    let Some(index) = link.peer_ifindex else {
        return Ok(None);
    };
    if link.peer_netnsid.is_none() {
        return Ok(netdev::links(None)?
            .into_iter()
            .find(|l| l.ifindex == index)
            .map(|l| (l, None)));
    }
    let Some(name) = link.peer_netnsid.and_then(netdev::netns_name) else {
        return Ok(None);
    };
    Ok(netdev::links(Some(&name))?
        .into_iter()
        .find(|l| l.ifindex == index)
        .map(|l| (l, Some(name))))
}

fn veth_peer(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "veth_peer";
    let Some(link) = ctx
        .link
        .as_ref()
        .filter(|l| l.kind.as_deref() == Some("veth"))
    else {
        return vec![Finding::skipped(CHECK, "not a veth")];
    };
    if link.xdp.as_ref().is_none_or(|x| x.mode != XdpMode::Native) {
        return vec![Finding::skipped(
            CHECK,
            format!("`{}` runs no native XDP program", link.name),
        )];
    }
    vec![match peer(link) {
        Ok(Some((peer, netns))) => {
            let enter = netns
                .as_ref()
                .map(|ns| format!("nsenter --net=/run/netns/{ns} "))
                .unwrap_or_default();
            let place = netns
                .as_ref()
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default();
            match &peer.xdp {
                Some(xdp) => Finding::ok(
                    CHECK,
                    format!(
                        "peer `{}`{place} runs XDP program `{}`: XDP_TX frames are delivered",
                        peer.name, xdp.program_name
                    ),
                ),
                None => Finding::problem(
                    CHECK,
                    format!(
                        "the veth peer of `{}`, `{}`{place}, runs no XDP program",
                        link.name, peer.name
                    ),
                    "native XDP_TX on a veth is delivered only if the peer runs an XDP program \
                     (GRO on the peer is not enough): every forwarded frame is counted as sent \
                     and lost, and connections stall",
                    format!(
                        "{enter}xlb decap attach {} --address ADDR (any XDP program will do; \
                         xlb_decap passes everything but tunnels to ADDR), or set \
                         global.xdp_mode = \"generic\"",
                        peer.name
                    ),
                ),
            }
        }
        Ok(None) => Finding::warning(
            CHECK,
            format!(
                "the veth peer of `{}` is in no namespace under /run/netns: not checked",
                link.name
            ),
            "native XDP_TX on a veth is delivered only if the peer runs an XDP program",
            Some("check the peer with `ip -d link` where it lives".into()),
        ),
        Err(err) => Finding::warning(CHECK, format!("{err:#}"), "", None),
    }]
}

/// The offload check's decision for interface `name` of `kind` with the features that are on.
pub fn offload_findings(
    name: &str,
    kind: Option<&str>,
    native: bool,
    features: &[String],
) -> Vec<Finding> {
    const CHECK: &str = "offloads";
    let on = |feature: &str| features.iter().any(|f| f == feature);
    let mut findings = Vec::new();
    if on("large-receive-offload") {
        findings.push(Finding::problem(
            CHECK,
            format!("large-receive-offload is on on `{name}`"),
            "XDP sees merged super-frames that it cannot forward, and native XDP refuses \
             devices with LRO",
            format!("ethtool -K {name} lro off"),
        ));
    }
    if kind == Some("veth") && native && on("tx-checksumming") {
        findings.push(Finding::problem(
            CHECK,
            format!("tx checksum offload is on on veth `{name}` with native XDP"),
            "frames XDP forwards keep the partial checksum their sender left to an offload that \
             never happens: receivers drop TCP and UDP segments as bad checksums",
            format!("ethtool -K {name} tx off"),
        ));
    }
    if findings.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            format!("no offload on `{name}` breaks XDP_TX"),
        ));
    }
    findings
}

fn offloads(ctx: &Context) -> Vec<Finding> {
    let Some(link) = &ctx.link else {
        return vec![Finding::skipped("offloads", "no interface")];
    };
    let native = link.xdp.as_ref().is_some_and(|x| x.mode == XdpMode::Native);
    match netdev::features_on(&link.name) {
        Ok(features) => offload_findings(&link.name, link.kind.as_deref(), native, &features),
        Err(err) => vec![Finding::warning("offloads", format!("{err:#}"), "", None)],
    }
}

/// Bytes an IPv4 outer header adds (an IPv6 one adds 40).
const IPIP_V4_OVERHEAD: u32 = 20;

fn ipip_mtu(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "ipip_mtu";
    let (Some(link), Some(model)) = (&ctx.link, &ctx.config) else {
        return vec![Finding::skipped(CHECK, "no config or interface")];
    };
    if !ctx.forwards(Forwarding::Ipip) {
        return vec![Finding::skipped(CHECK, "no ipip VIP")];
    }
    let mtu = model.global.mtu;
    let mut findings = Vec::new();
    if link.mtu < mtu {
        findings.push(Finding::problem(
            CHECK,
            format!(
                "global.mtu is {mtu} but `{}`'s MTU is {}",
                link.name, link.mtu
            ),
            "xlb emits tunnelled packets up to global.mtu: the ones above the interface's MTU \
             are dropped by the device, silently",
            format!(
                "ip link set dev {} mtu {mtu} (and every link to the backends), or lower \
                 global.mtu to {}",
                link.name, link.mtu
            ),
        ));
    }
    if mtu < 1500 + IPIP_V4_OVERHEAD {
        findings.push(Finding::warning(
            CHECK,
            format!(
                "global.mtu {mtu} leaves {} bytes inside an IPv4 tunnel: full-size client \
                 packets (1500) do not fit",
                mtu - IPIP_V4_OVERHEAD
            ),
            "xlb answers them with ICMP too-big and clients shrink their segments: it works, at \
             a round trip per new path, and breaks where ICMP is filtered",
            Some(format!(
                "raise the MTU to the backends to {} and set global.mtu to it, or clamp the \
                 backends' MSS (`xlb doctor --backend` shows how)",
                1500 + IPIP_V4_OVERHEAD
            )),
        ));
    }
    if findings.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            format!(
                "global.mtu {mtu} fits `{}` (MTU {}) and carries full-size client packets",
                link.name, link.mtu
            ),
        ));
    }
    findings
}

fn rp_filter(ctx: &Context) -> Vec<Finding> {
    let Some(link) = &ctx.link else {
        return vec![Finding::skipped("rp_filter", "no interface")];
    };
    let value = host::conf_max("rp_filter", &link.name);
    vec![if value == 1 {
        Finding::warning(
            "rp_filter",
            format!(
                "strict reverse-path filtering on `{}` (rp_filter = 1)",
                link.name
            ),
            "XDP steers VIP packets before rp_filter, but what xlb passes up to this host \
             (health-check answers, BGP) is dropped when it arrives by another route than \
             the one back",
            Some(format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{}.rp_filter=2",
                link.name
            )),
        )
    } else {
        Finding::ok(
            "rp_filter",
            format!("rp_filter = {value} on `{}`", link.name),
        )
    }]
}

fn neighbours(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "neighbours";
    let (Some(link), Some(model)) = (&ctx.link, &ctx.config) else {
        return vec![Finding::skipped(CHECK, "no config or interface")];
    };
    // A dsr backend must answer for itself on this segment; an ipip entry's MAC is a next hop.
    let mut backends: Vec<(std::net::IpAddr, [u8; 6])> = model
        .vips
        .iter()
        .filter(|v| v.forwarding == Forwarding::Dsr)
        .flat_map(|v| v.backends.iter().map(|b| (b.address, b.mac)))
        .collect();
    backends.sort();
    backends.dedup();
    if backends.is_empty() {
        return vec![Finding::skipped(CHECK, "no dsr backend")];
    }
    let unresolved: Vec<_> = backends
        .iter()
        .filter(|(addr, _)| host::neighbour(*addr, &link.name).is_none_or(|n| !n.resolved()))
        .collect();
    if !unresolved.is_empty() {
        for (addr, _) in &unresolved {
            host::provoke_neighbour(*addr);
        }
        // Bounded: one resolution attempt's worth.
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut findings = Vec::new();
    for (addr, mac) in &backends {
        let want = lb_common::address::Mac(*mac).to_string();
        let entry = host::neighbour(*addr, &link.name);
        match entry.filter(host::Neighbour::resolved) {
            None => findings.push(Finding::problem(
                CHECK,
                format!("backend {addr} does not answer ARP/NDP on `{}`", link.name),
                "a dsr backend must be on the load balancer's segment: its frames go to a MAC \
                 nobody answers for, and its health checks fail",
                format!(
                    "check that {addr} is up and on `{}`'s segment: `ping -c1 {addr}`, \
                     `ip neigh show {addr}`",
                    link.name
                ),
            )),
            Some(entry) if entry.mac.as_deref() != Some(&want) => findings.push(Finding::problem(
                CHECK,
                format!(
                    "backend {addr} answers with MAC {} but the config gives {want}",
                    entry.mac.unwrap_or_default()
                ),
                "dsr rewrites frames to the configured MAC: they reach another machine, or none",
                format!(
                    "set the backend's mac to {} in the config, then xlb apply FILE",
                    host::neighbour(*addr, &link.name)
                        .and_then(|n| n.mac)
                        .unwrap_or_default()
                ),
            )),
            Some(_) => findings.push(Finding::ok(
                CHECK,
                format!("backend {addr} answers with its configured MAC {want}"),
            )),
        }
    }
    findings
}

/// The sum of `name`'s XDP_TX failure counters (0 when its driver counts none).
fn tx_errors(name: &str) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    Ok(crate::ethtool::xdp_tx_errors(name)
        .with_context(|| format!("reading the driver statistics of {name}"))?
        .unwrap_or(0))
}

fn xdp_tx_errors(ctx: &Context) -> Vec<Finding> {
    const CHECK: &str = "xdp_tx_errors";
    let Some(link) = &ctx.link else {
        return vec![Finding::skipped(CHECK, "no interface")];
    };
    let before = match tx_errors(&link.name) {
        Ok(count) => count,
        Err(err) => return vec![Finding::skipped(CHECK, format!("{err:#}"))],
    };
    std::thread::sleep(ctx.sample);
    let after = tx_errors(&link.name).unwrap_or(before);
    vec![if after > before {
        Finding::problem(
            CHECK,
            format!(
                "`{}`'s xdp_tx_errors grew by {} in {:.1} s (now {after})",
                link.name,
                after - before,
                ctx.sample.as_secs_f64()
            ),
            "frames xlb forwards with XDP_TX are being lost after it counted them as \
             forwarded: connections stall while xlb's counters look healthy",
            format!(
                "on a veth, give the peer an XDP program (see veth_peer); on a NIC, check its \
                 TX ring (`ethtool -g {}`) and queues",
                link.name
            ),
        )
    } else {
        Finding::ok(
            CHECK,
            format!(
                "`{}`'s xdp_tx_errors did not grow in {:.1} s (total {after})",
                link.name,
                ctx.sample.as_secs_f64()
            ),
        )
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    /// Test that the JIT check passes 1 and 2, flags 0 with the sysctl that fixes it, and only
    /// warns when the switch does not exist (JIT_ALWAYS_ON kernels). The JIT is global to the
    /// machine: a namespace test cannot turn it off, so the decision is tested here.
    #[test]
    fn jit_off_is_a_problem_with_its_sysctl() {
        assert_eq!(jit(Some("1")).status, Status::Ok);
        assert_eq!(jit(Some("2")).status, Status::Ok);
        let off = jit(Some("0"));
        assert_eq!(off.status, Status::Problem);
        assert_eq!(
            off.fix.as_deref(),
            Some("sysctl -w net.core.bpf_jit_enable=1")
        );
        assert_eq!(jit(None).status, Status::Warning);
    }

    /// Test that LRO is a problem on any device (veth cannot turn it on, so this is tested
    /// here) and tx checksum offload only on a veth with native XDP.
    #[test]
    fn lro_and_veth_tx_checksum_are_problems() {
        let features = |list: &[&str]| list.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
        let lro = offload_findings("eth0", None, true, &features(&["large-receive-offload"]));
        assert_eq!(lro[0].status, Status::Problem);
        assert_eq!(lro[0].fix.as_deref(), Some("ethtool -K eth0 lro off"));
        let csum = features(&["tx-checksumming"]);
        assert_eq!(
            offload_findings("eth0", Some("veth"), true, &csum)[0].status,
            Status::Problem
        );
        assert_eq!(
            offload_findings("eth0", Some("veth"), false, &csum)[0].status,
            Status::Ok
        );
        assert_eq!(
            offload_findings("eth0", None, true, &csum)[0].status,
            Status::Ok
        );
    }
}
