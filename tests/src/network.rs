//! Every lab's network from one typed description ([`Network`]): the switch, the client, the
//! balancer nodes and the backend hosts, with the one address plan all labs share.
//!
//! ```text
//!   Balancers::One (the demo, daemon and topology labs):
//!   client (eth0: 198.18.0.1, 2001:db8::1)  ─┐
//!   lb     (eth0: 198.18.0.2, 2001:db8::2)  ─┼── br0 in sw; every b{i} holds the VIPs on lo
//!   b{i}   (eth0: 198.18.0.{10+i}, ::1{i})  ─┘
//!
//!   Balancers::BehindRouter (the scale-out lab):
//!   client (198.18.2.1) ── router (198.18.2.254 | 198.18.0.254) ─┐
//!   n{i}   (eth0: 198.18.0.{2+i})                                ├── br0 in sw
//!   b{i}   (eth0: 198.18.0.{10+i}; default route via the router) ─┘
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;

use crate::netns::{Ipv6, Netns, Switch, veth};

/// The client's addresses when it shares the switch with the balancer.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The one balancer's addresses (the first node's, behind a router).
pub const LB_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The client's address behind a router, and the router's addresses on either side.
pub const ROUTED_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const ROUTER_FRONT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

/// Where the balancers sit.
#[derive(Clone, Copy, Debug)]
pub enum Balancers {
    /// One, `lb`, on the switch beside the client, which reaches each VIP through it.
    One,
    /// `n0`, `n1`... on the switch behind a router, the client on a link of its own to the
    /// router (its default route), the backends answering through the router.
    BehindRouter(usize),
}

/// A lab's network, described.
#[derive(Clone, Copy)]
pub struct Network<'a> {
    /// [`Ipv6::Off`]: IPv4 addresses only; [`Ipv6::NoDad`]: an IPv6 address beside each.
    pub ipv6: Ipv6,
    pub balancers: Balancers,
    /// How many backend hosts, `b0`, `b1`...
    pub backends: usize,
    /// The VIPs every backend holds on its loopback.
    pub vips: &'a [IpAddr],
    /// The MTU of every link behind the balancers (both ends), if not the default: set before
    /// any XDP program is attached, as veth caps the MTU of a link whose peer runs XDP.
    pub fabric_mtu: Option<u32>,
}

/// One host on the switch: a balancer node or a backend.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its namespace's short name: `lb`, `n{i}`, `b{i}` (what a backend's server answers).
    pub name: String,
    pub ns: Netns,
    /// Its addresses on eth0.
    pub address: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
    /// Its eth0's MAC, as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

impl Host {
    /// Its address of `vip`'s family: what a config names it by in that VIP.
    pub fn address_for(&self, vip: IpAddr) -> IpAddr {
        match (vip, self.v6) {
            (IpAddr::V6(_), Some(v6)) => IpAddr::V6(v6),
            _ => IpAddr::V4(self.address),
        }
    }

    /// Its addresses on eth0, IPv4 first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.address))
            .chain(self.v6.map(IpAddr::V6))
            .collect()
    }
}

/// The network built from a [`Network`].
pub struct Built {
    pub switch: Netns,
    pub client: Netns,
    /// With [`Balancers::BehindRouter`].
    pub router: Option<Netns>,
    pub balancers: Vec<Host>,
    pub backends: Vec<Host>,
}

impl Built {
    /// The (first) balancer's namespace.
    pub fn lb(&self) -> &Netns {
        &self.balancers[0].ns
    }

    /// Attaches `bare_pass` to every balancer's switch port (see [`Switch::pass_xdp`]).
    pub fn pass_xdp(&self) -> anyhow::Result<Vec<aya::Ebpf>> {
        self.balancers
            .iter()
            .map(|node| Switch::pass_xdp(&self.switch, &node.name))
            .collect()
    }

    /// The names of all its namespaces.
    pub fn namespaces(&self) -> Vec<String> {
        [&self.switch, &self.client]
            .into_iter()
            .chain(&self.router)
            .chain(self.balancers.iter().chain(&self.backends).map(|h| &h.ns))
            .map(|ns| ns.name.clone())
            .collect()
    }
}

impl Network<'_> {
    /// Builds it, each namespace made by `netns` (a [`crate::netns::Lab`]'s or a kept lab's).
    pub fn build(
        &self,
        mut netns: impl FnMut(&str) -> anyhow::Result<Netns>,
    ) -> anyhow::Result<Built> {
        let (front, nodes): (&str, Vec<String>) = match self.balancers {
            Balancers::One => ("client", vec!["lb".to_owned()]),
            Balancers::BehindRouter(n) => ("router", (0..n).map(|i| format!("n{i}")).collect()),
        };
        let backends: Vec<String> = (0..self.backends).map(|i| format!("b{i}")).collect();
        let names: Vec<String> = std::iter::once(front.to_owned())
            .chain(nodes.iter().cloned())
            .chain(backends.iter().cloned())
            .collect();
        let Switch {
            ns: switch,
            mut members,
        } = Switch::build(&mut netns, &names, self.ipv6)?;
        let backend_ns = members.split_off(1 + nodes.len());
        let node_ns = members.split_off(1);
        let front = members
            .pop()
            .context("the client or the router comes first")?;
        let (client, router) = match self.balancers {
            Balancers::One => (front, None),
            Balancers::BehindRouter(_) => {
                let client = netns("client")?;
                self.ipv6.apply(&client)?;
                (client, Some(front))
            }
        };
        if let Some(mtu) = self.fabric_mtu {
            let mtu = mtu.to_string();
            for name in nodes.iter().chain(&backends) {
                switch.ip(&["link", "set", &Switch::port(name), "mtu", &mtu])?;
            }
            for ns in node_ns.iter().chain(&backend_ns) {
                ns.ip(&["link", "set", "eth0", "mtu", &mtu])?;
            }
        }
        let balancers = self.hosts(nodes.into_iter().zip(node_ns), (2, 2))?;
        let backends = self.hosts(backends.into_iter().zip(backend_ns), (10, 0x10))?;
        for backend in &backends {
            backend.ns.hold_vips_on_lo(self.vips)?;
        }
        match &router {
            Some(router) => route_through(&client, router, &backends)?,
            None => route_to_vips(&client, &balancers[0], self.vips, self.dual())?,
        }
        Ok(Built {
            switch,
            client,
            router,
            balancers,
            backends,
        })
    }

    fn dual(&self) -> bool {
        matches!(self.ipv6, Ipv6::NoDad)
    }

    /// Addresses the hosts `named` in order from 198.18.0.`first.0` and 2001:db8::`first.1`,
    /// the IPv6 address only in a dual-stack network.
    fn hosts(
        &self,
        named: impl Iterator<Item = (String, Netns)>,
        (first_v4, first_v6): (u8, u16),
    ) -> anyhow::Result<Vec<Host>> {
        let dual = self.dual();
        named
            .zip(0..)
            .map(|((name, ns), i)| {
                let address = Ipv4Addr::new(198, 18, 0, first_v4 + i);
                let v6 = dual
                    .then(|| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, first_v6 + u16::from(i)));
                ns.addr("eth0", &format!("{address}/24"))?;
                if let Some(v6) = v6 {
                    ns.addr("eth0", &format!("{v6}/64"))?;
                }
                let mac = ns.mac("eth0")?;
                Ok(Host {
                    name,
                    ns,
                    address,
                    v6,
                    mac,
                })
            })
            .collect()
    }
}

/// Addresses the client on the switch beside `lb`, through which it reaches each of `vips`.
fn route_to_vips(client: &Netns, lb: &Host, vips: &[IpAddr], dual: bool) -> anyhow::Result<()> {
    client.addr("eth0", &format!("{CLIENT_V4}/24"))?;
    if dual {
        client.addr("eth0", &format!("{CLIENT_V6}/64"))?;
    }
    for vip in vips {
        let (family, prefix) = if vip.is_ipv4() {
            ("-4", 32)
        } else {
            ("-6", 128)
        };
        let via = lb.address_for(*vip).to_string();
        client.ip(&[
            family,
            "route",
            "add",
            &format!("{vip}/{prefix}"),
            "via",
            &via,
        ])?;
    }
    Ok(())
}

/// Links the client to the router, which forwards between it and the switch; the client's
/// and the backends' default routes go through it.
fn route_through(client: &Netns, router: &Netns, backends: &[Host]) -> anyhow::Result<()> {
    veth((client, "eth0"), (router, "eth1"))?;
    client.tx_checksum_off("eth0")?;
    router.tx_checksum_off("eth1")?;
    client.addr("eth0", &format!("{ROUTED_CLIENT}/24"))?;
    client.ip(&["route", "add", "default", "via", &ROUTER_FRONT.to_string()])?;
    router.addr("eth1", &format!("{ROUTER_FRONT}/24"))?;
    router.addr("eth0", &format!("{ROUTER}/24"))?;
    router.sysctl("net.ipv4.ip_forward", "1")?;
    // Hash multipath routes on the 5-tuple (L4), so each connection picks its own node.
    router.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
    for dev in ["all", "default", "eth0", "eth1"] {
        router.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    for backend in backends {
        let via = ROUTER.to_string();
        backend.ns.ip(&["route", "add", "default", "via", &via])?;
    }
    Ok(())
}
