//! What the kernel says about a network interface of the current network namespace: its index,
//! MTU, kind, veth peer and attached XDP program (from `ip -j -d link`), its offload features
//! and driver statistics (from `ethtool`). Read through those tools rather than /sys/class/net,
//! which shows the namespace sysfs was mounted in, not the caller's.

use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Where an XDP program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// In the driver (`ip link`'s `xdp`, mode 1).
    Native,
    /// In the kernel stack, after an skb is built (`xdpgeneric`, mode 2).
    Generic,
    /// On the NIC (`xdpoffload`, mode 3).
    Offload,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Offload => "offload",
        }
    }
}

/// The XDP program attached to an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct XdpAttachment {
    pub mode: XdpMode,
    pub program_id: u32,
    pub program_name: String,
    /// The JIT compiled it.
    pub jited: bool,
}

/// One interface as `ip -j -d link show` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    /// `veth`, `bridge`, ...; `None` for a plain device (a physical NIC, `lo`).
    pub kind: Option<String>,
    /// The peer's index of a veth (or the lower device of a stacked one).
    pub peer_ifindex: Option<u32>,
    /// The peer's namespace id as seen from here, when it lives in another namespace.
    pub peer_netnsid: Option<i64>,
    pub xdp: Option<XdpAttachment>,
    pub mac: Option<String>,
}

/// Interface `name` of the current network namespace; an error naming the fix if there is none.
pub fn link(name: &str) -> anyhow::Result<Link> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", name])
        .output()
        .context("running `ip -j -d link show` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "no interface named `{name}` in this network namespace ({}): check the name with \
             `ip link` (inside a namespace: `ip -n NAME link`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `ip -j link` output")?;
    parse_link(&links[0]).with_context(|| format!("`ip -j -d link show dev {name}` said {links}"))
}

/// Every interface of the current network namespace, or of the named namespace `netns`.
pub fn links(netns: Option<&str>) -> anyhow::Result<Vec<Link>> {
    let mut command = Command::new("ip");
    if let Some(netns) = netns {
        command.args(["-n", netns]);
    }
    let out = command
        .args(["-j", "-d", "link", "show"])
        .output()
        .context("running `ip -j -d link show` (is iproute2 installed?)")?;
    let links: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("parsing `ip -j link` output")?;
    links.iter().map(parse_link).collect()
}

fn parse_link(link: &serde_json::Value) -> anyhow::Result<Link> {
    let number = |key: &str| link[key].as_u64().map(|n| n as u32);
    let xdp = &link["xdp"];
    let xdp = match (xdp["mode"].as_u64(), xdp["prog"]["id"].as_u64()) {
        (Some(mode), Some(id)) => Some(XdpAttachment {
            mode: match mode {
                1 => XdpMode::Native,
                2 => XdpMode::Generic,
                _ => XdpMode::Offload,
            },
            program_id: id as u32,
            program_name: xdp["prog"]["name"].as_str().unwrap_or("").to_owned(),
            jited: xdp["prog"]["jited"].as_u64() == Some(1),
        }),
        _ => None,
    };
    Ok(Link {
        name: link["ifname"]
            .as_str()
            .context("an interface without a name")?
            .to_owned(),
        ifindex: number("ifindex").context("an interface without an index")?,
        mtu: number("mtu").unwrap_or(0),
        kind: link["linkinfo"]["info_kind"].as_str().map(str::to_owned),
        peer_ifindex: number("link_index"),
        peer_netnsid: link["link_netnsid"].as_i64(),
        xdp,
        mac: link["address"].as_str().map(str::to_owned),
    })
}

/// The name (under /run/netns) of the namespace this one knows as `nsid`, if it has one.
pub fn netns_name(nsid: i64) -> Option<String> {
    let out = Command::new("ip")
        .args(["-j", "netns", "list-id"])
        .output()
        .ok()?;
    let ids: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    ids.as_array()?
        .iter()
        .find(|id| id["nsid"].as_i64() == Some(nsid))?["name"]
        .as_str()
        .map(str::to_owned)
}

/// The offload features of `name` that are on (`ethtool -k`), e.g. `tx-checksumming`.
pub fn features_on(name: &str) -> anyhow::Result<Vec<String>> {
    let text = run_checked(Command::new("ethtool").args(["-k", name]))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (feature, state) = line.trim().split_once(": ")?;
            state.starts_with("on").then(|| feature.to_owned())
        })
        .collect())
}

/// Runs `command` to its end: its stdout, or an error naming the command with its stderr.
pub fn run_checked(command: &mut Command) -> anyhow::Result<String> {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = command.output().with_context(|| {
        let program = command.get_program().to_string_lossy();
        format!("running `{shown}`: is `{program}` installed?")
    })?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that a veth with a native XDP program and a peer in another namespace is read with
    /// its mode, program id and peer.
    #[test]
    fn parses_xdp_and_peer_of_a_veth() {
        let json = serde_json::json!({
            "ifindex": 2, "link_index": 5, "link_netnsid": 0, "ifname": "eth0", "mtu": 1500,
            "address": "02:00:00:00:00:01", "linkinfo": {"info_kind": "veth"},
            "xdp": {"mode": 1, "prog": {"id": 77, "name": "xlb", "jited": 1}}
        });
        let link = parse_link(&json).expect("parsed");
        assert_eq!(link.peer_ifindex, Some(5));
        assert_eq!(link.peer_netnsid, Some(0));
        assert_eq!(link.kind.as_deref(), Some("veth"));
        assert_eq!(
            link.xdp,
            Some(XdpAttachment {
                mode: XdpMode::Native,
                program_id: 77,
                program_name: "xlb".to_owned(),
                jited: true,
            })
        );
        let bare = serde_json::json!({"ifindex": 1, "ifname": "lo", "mtu": 65536});
        assert_eq!(parse_link(&bare).expect("parsed").xdp, None);
    }
}
