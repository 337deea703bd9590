//! Facts about this host and its current network namespace that the doctor's checks read:
//! sysctls, mounts, addresses, neighbours and routes (through `ip -j`, which sees the caller's
//! namespace where /sys/class/net may not).

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
};

/// A sysctl's value (dotted key, e.g. `net.ipv4.conf.all.rp_filter`), trimmed; `None` if it
/// does not exist here.
pub fn sysctl(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|value| value.trim().to_owned())
}

/// A numeric sysctl; `None` if missing or not a number.
pub fn sysctl_number(key: &str) -> Option<i64> {
    sysctl(key)?.parse().ok()
}

/// The value the kernel applies for a per-interface IPv4 setting: the larger of `all` and the
/// interface's own (true of rp_filter, arp_ignore and arp_announce).
pub fn conf_max(setting: &str, interface: &str) -> i64 {
    ["all", interface]
        .iter()
        .filter_map(|dev| sysctl_number(&format!("net.ipv4.conf.{dev}.{setting}")))
        .max()
        .unwrap_or(0)
}

/// `ip -j ARGS` as JSON; `Null` when it fails.
fn ip_json(args: &[&str]) -> serde_json::Value {
    Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| serde_json::from_slice(&out.stdout).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The addresses on `interface`.
pub fn addresses(interface: &str) -> Vec<IpAddr> {
    let links = ip_json(&["addr", "show", "dev", interface]);
    links[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|info| info["local"].as_str()?.parse().ok())
        .collect()
}

/// A neighbour table entry: its states (e.g. `REACHABLE`, `FAILED`) and MAC, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub states: Vec<String>,
    pub mac: Option<String>,
}

impl Neighbour {
    /// Whether the entry holds an answer (a MAC that is not being given up on).
    pub fn resolved(&self) -> bool {
        self.mac.is_some()
            && !self
                .states
                .iter()
                .any(|s| s == "FAILED" || s == "INCOMPLETE")
    }
}

/// The neighbour entry of `address` on `interface`.
pub fn neighbour(address: IpAddr, interface: &str) -> Option<Neighbour> {
    let entries = ip_json(&[
        "neigh",
        "show",
        "to",
        &address.to_string(),
        "dev",
        interface,
    ]);
    let entry = entries.as_array()?.first()?;
    Some(Neighbour {
        states: entry["state"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        mac: entry["lladdr"].as_str().map(str::to_owned),
    })
}

/// Makes the kernel resolve `address` (ARP or neighbour solicitation) by sending one UDP
/// datagram to its discard port.
pub fn provoke_neighbour(address: IpAddr) {
    let bind: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(b"xlb doctor", SocketAddr::new(address, 9));
    }
}

/// A route through `interface`: its destination and advertised MSS, if set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    pub advmss: Option<u32>,
}

/// The IPv4 and IPv6 routes through `interface`.
pub fn routes(interface: &str) -> Vec<Route> {
    ["-4", "-6"]
        .iter()
        .flat_map(|family| {
            let routes = ip_json(&[family, "route", "show", "dev", interface]);
            routes.as_array().cloned().unwrap_or_default()
        })
        .filter_map(|route| {
            let destination = route["dst"].as_str()?.to_owned();
            let advmss = route["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|metric| metric["advmss"].as_u64())
                .map(|mss| mss as u32);
            // Link-local and multicast routes carry no client traffic.
            (!destination.starts_with("fe80") && !destination.starts_with("ff00")).then_some(
                Route {
                    destination,
                    advmss,
                },
            )
        })
        .collect()
}
