//! A load-balancer topology on a [`Lab`]: a client, the xlb program attached in native XDP mode
//! on a load-balancer namespace, and N backends that hold the VIPs on their loopback and answer
//! the client directly, all joined by a bridge; plus real TCP servers on the backends and a
//! client that asks a VIP which backend served it, or uploads a body and hears how much
//! arrived.
//!
//! The VIPs forward in `dsr` mode (the frame is re-addressed to the backend's MAC) or, with
//! [`Forwarding::IpipV4`] / [`Forwarding::IpipV6`], in `ipip` mode: the client's packet goes
//! to the backend inside an outer IPv4 or IPv6 header from the lb's address, and the backend's
//! `xlb_decap` XDP program strips it (this kernel has no ipip or ip6tnl devices).
//!
//! ```text
//!   client (eth0: .1, ::1) ──┐
//!   lb     (eth0: .2, ::2) ──┼── br0 in sw ── XDP bare_pass on p-lb, so XDP_TX is delivered
//!   b{i}   (eth0: .10+i)   ──┘   (every b{i} holds the VIPs on lo and replies to the client;
//!                                 with ipip, xlb_decap on its eth0)
//! ```

use std::{
    io::{Read as _, Write as _},
    mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use lb_common::{
    Backend, BackendCounter, Config, DECAP_PROGRAM_NAME, PROGRAM_NAME, Vip, VipKey, map_names,
    proto::TCP,
    service::{BACKEND_ACTIVE, VIP_FORWARD_IPIP},
};
use lb_userspace::{
    attach::{self, AttachMode},
    decap, maglev, object, steering,
};

use crate::{
    connect::connect_from,
    netns::{Ipv6, Lab, Netns, Switch},
    network::{Balancers, Built, Network},
    packets::Flow,
    steering::{flow_key, vip_key},
};

pub use crate::network::{CLIENT_V4, CLIENT_V6, LB_V4, LB_V6};
/// `ipip` outer sources: each flow's from its hash within 198.18.200.0/24 and
/// 2001:db8:200::/120.
pub const TUNNEL_SOURCES_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 0);
pub const TUNNEL_SOURCES_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0);
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The TCP port of both VIPs, where every backend's server listens.
pub const VIP_PORT: u16 = 80;
/// The TCP port of the upload VIPs (same addresses, same backends): every backend's server
/// there reads the whole request and answers with its name and the number of bytes read.
pub const UPLOAD_PORT: u16 = 81;
/// MTU of the client's link: an ordinary Ethernet host.
pub const CLIENT_MTU: u32 = 1500;
/// MTU of every link between the lb and the backends in `ipip` mode (the lb's eth0, the
/// bridge ports other than the client's, the backends' eth0), and xlb's `Config::mtu`.
///
/// A full-size packet from the client is 1500 bytes and 1520 (IPv4 outer) or 1540 (IPv6
/// outer) once tunnelled. Like a real data centre fabric behind an L4 balancer, the path from
/// the lb to the backends therefore carries a larger MTU than the clients', and xlb is told
/// that MTU, so it never has to answer a client's packet as too big. With `Config::mtu` at
/// 1500 instead, xlb answers every full-size segment with a too-big error carrying 1480 (IPv4
/// outer) or 1460 (IPv6 outer), and the client's path MTU shrinks to it.
pub const FABRIC_MTU: u32 = 1600;
/// Where the VIPs' live tables start in the Maglev slot map (the second copy of each, unused
/// here, would start 100,000 slots later as in [`crate::steering`]).
const V4_TABLES: [u32; 2] = [0, 100_000];
const V6_TABLES: [u32; 2] = [200_000, 300_000];
/// How long the client waits for the handshake, and then for the backend's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a server thread looks at its stop flag while no client connects.
const ACCEPT_POLL_MS: i32 = 50;
/// How long either side of an upload waits for the other before giving up.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How the VIPs reach their backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Forwarding {
    /// `dsr`: the frame goes to the backend's MAC, the IP packet unchanged.
    #[default]
    Dsr,
    /// `ipip` with IPv4 outer headers: backends are known by their IPv4 address (IPv4 in
    /// IPv4 for the IPv4 VIP, IPv6 in IPv4 for the IPv6 VIP).
    IpipV4,
    /// `ipip` with IPv6 outer headers: backends are known by their IPv6 address (IPv6 in IPv6
    /// for the IPv6 VIP, IPv4 in IPv6 for the IPv4 VIP).
    IpipV6,
}

impl Forwarding {
    pub fn is_ipip(self) -> bool {
        self != Forwarding::Dsr
    }
}

/// The shape of a topology.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of backends (`b0`..), at most 200.
    pub backends: u32,
    /// Maglev weight of each backend; empty means 1 for every backend.
    pub weights: Vec<u32>,
    /// Maglev table size of both VIPs: a prime of at most 100,000.
    pub table_size: u32,
    /// How every VIP forwards.
    pub forwarding: Forwarding,
    /// xlb's `Config::mtu` in `ipip` mode: [`FABRIC_MTU`] by default; [`CLIENT_MTU`] makes
    /// every full-size client packet too big for the tunnel, so xlb answers it with a too-big
    /// error and the client's path MTU shrinks.
    pub tunnel_mtu: u32,
    /// With `ipip`: attach `xlb_decap` to every backend in-process (`true`, the default), or
    /// leave it to the test (as `xlb decap attach` in each backend's namespace).
    pub attach_decap: bool,
}

impl Options {
    /// `backends` backends of equal weight, the usual 65,537-slot table and `dsr`.
    pub fn equal(backends: u32) -> Options {
        Options {
            backends,
            weights: Vec::new(),
            table_size: 65_537,
            forwarding: Forwarding::Dsr,
            tunnel_mtu: FABRIC_MTU,
            attach_decap: true,
        }
    }
}

/// One backend host.
#[derive(Clone, Debug)]
pub struct BackendHost {
    /// Its id in the backend map and its index in [`Topology::backends`].
    pub id: u32,
    /// `b{id}`: what its server answers (followed by a newline).
    pub name: String,
    pub ns: Netns,
    pub mac: [u8; 6],
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// A VIP as written into the program's maps.
#[derive(Clone, Debug)]
pub struct Service {
    pub addr: IpAddr,
    pub port: u16,
    pub key: VipKey,
    pub vip: Vip,
    /// The live Maglev table: the backend id of every slot.
    pub table: Vec<u32>,
}

impl Service {
    /// The backend id the program picks for a new TCP connection from `src`:`sport`.
    pub fn predict(&self, src: IpAddr, sport: u16) -> u32 {
        let flow = Flow {
            src,
            dst: self.addr,
            sport,
            dport: self.port,
        };
        self.table[steering::slot(&self.vip, &flow_key(&flow, TCP)) as usize]
    }
}

/// A running topology; dropping it stops the servers, detaches the programs and removes every
/// namespace.
pub struct Topology {
    // Fields drop in order: the servers stop first (their sockets pin the namespaces), the
    // programs detach, and the lab goes last.
    _servers: Servers,
    /// The xlb program attached to the lb's eth0, with its maps.
    pub ebpf: Ebpf,
    /// With `ipip`: the `xlb_decap` program attached to each backend's eth0, indexed by
    /// backend id (empty with `dsr`).
    pub decap: Vec<Ebpf>,
    _bridge_pass: Ebpf,
    pub client: Netns,
    pub lb: Netns,
    pub switch: Netns,
    pub backends: Vec<BackendHost>,
    /// The IPv4 VIP 198.18.1.10:80 and the IPv6 VIP [2001:db8:1::10]:80 (TCP).
    pub v4: Service,
    pub v6: Service,
    /// The upload VIPs: the same addresses on [`UPLOAD_PORT`].
    pub upload_v4: Service,
    pub upload_v6: Service,
    pub forwarding: Forwarding,
    _lab: Lab,
}

/// What an upload through [`Topology::upload`] found.
#[derive(Clone, Copy, Debug)]
pub struct Upload {
    /// The backend that answered.
    pub backend: u32,
    /// How many bytes it says it read.
    pub received: u64,
    /// The client's path MTU towards the VIP while the body was being sent (the route's MTU
    /// unless an ICMP "too big" lowered it).
    pub path_mtu: u32,
}

impl Topology {
    /// Builds the topology; `label` makes its namespace names recognisable.
    pub fn new(label: &str, options: &Options) -> anyhow::Result<Topology> {
        let count = options.backends;
        ensure!(
            (1..=200).contains(&count),
            "Options::backends is {count}: use 1 to 200 backends"
        );
        let weights = if options.weights.is_empty() {
            vec![1; count as usize]
        } else {
            options.weights.clone()
        };
        ensure!(
            weights.len() == count as usize,
            "Options::weights has {} entries for {count} backends: give one per backend \
             (or none for equal weights)",
            weights.len()
        );
        ensure!(
            options.table_size <= V4_TABLES[1] - V4_TABLES[0],
            "Options::table_size {} does not fit between the table copies: use a prime of at \
             most 100,000",
            options.table_size
        );

        let mut lab = Lab::new(label)?;
        let forwarding = options.forwarding;
        let Built {
            switch,
            client,
            balancers,
            backends: hosts,
            ..
        } = Network {
            ipv6: Ipv6::NoDad,
            balancers: Balancers::One,
            backends: count as usize,
            vips: &[IpAddr::V4(VIP_V4), IpAddr::V6(VIP_V6)],
            // Tunnelled frames (see FABRIC_MTU) leave the lb's eth0 by XDP_TX, which a veth
            // drops silently when the frame exceeds its peer's (p-lb's) MTU; the bridge drops
            // frames above the MTU of the port they leave by (p-b{i}); a veth drops frames
            // above its peer's (the backend's eth0) MTU. The client's link stays at CLIENT_MTU.
            fabric_mtu: forwarding.is_ipip().then_some(FABRIC_MTU),
        }
        .build(|name| lab.netns(name))?;
        let lb = balancers.into_iter().next().context("one balancer")?.ns;

        let mut backends = Vec::new();
        for (id, host) in (0..count).zip(hosts) {
            // One [::]:80 socket serves both families.
            host.ns.sysctl("net.ipv6.bindv6only", "0")?;
            backends.push(BackendHost {
                id,
                mac: mac_of(&host.mac)?,
                v6: host.v6.context("a dual-stack lab")?,
                v4: host.address,
                name: host.name,
                ns: host.ns,
            });
        }

        // The backends strip tunnels before xlb sends any.
        let mut decaps = Vec::new();
        if forwarding.is_ipip() && options.attach_decap {
            for host in &backends {
                decaps.push(attach_decap(host)?);
            }
        }

        let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME)?;
        for host in &backends {
            // dsr uses only the MAC; ipip addresses the outer header to the backend itself,
            // which is also the next hop on this L2.
            let addr = match forwarding {
                Forwarding::Dsr | Forwarding::IpipV4 => IpAddr::V4(host.v4),
                Forwarding::IpipV6 => IpAddr::V6(host.v6),
            };
            let (addr, family) = crate::steering::addr_bytes(addr);
            let backend = Backend {
                addr,
                mac: host.mac,
                family,
                flags: BACKEND_ACTIVE,
                ..Backend::default()
            };
            steering::set_backend(&mut ebpf, host.id, &backend)?;
        }
        let flags = if forwarding.is_ipip() {
            steering::set_config(
                &mut ebpf,
                &Config {
                    flags: 0,
                    mtu: options.tunnel_mtu,
                    // Tunnel sources spread over prefixes (receive-side scaling at the
                    // backends): decap and the backends' direct answers must not care.
                    ipip_src_v4: TUNNEL_SOURCES_V4.octets(),
                    ipip_src_v6: TUNNEL_SOURCES_V6.octets(),
                    ipip_src_v4_hosts: [0, 0, 0, 255],
                    ipip_src_v6_hosts: [0, 0, 0, 255],
                },
            )?;
            VIP_FORWARD_IPIP
        } else {
            0
        };
        let table = maglev_table(&weights, options.table_size)?;
        let mut vip = |addr: IpAddr, port, id, tables| {
            service(&mut ebpf, addr, port, id, flags, tables, &table)
        };
        let v4 = vip(IpAddr::V4(VIP_V4), VIP_PORT, 0, V4_TABLES)?;
        let v6 = vip(IpAddr::V6(VIP_V6), VIP_PORT, 1, V6_TABLES)?;
        // Same backends, so the upload VIPs share the live tables of their address's VIP.
        let upload_v4 = vip(IpAddr::V4(VIP_V4), UPLOAD_PORT, 2, V4_TABLES)?;
        let upload_v6 = vip(IpAddr::V6(VIP_V6), UPLOAD_PORT, 3, V6_TABLES)?;
        let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
        lb.run(|| attach::attach(program, "eth0", AttachMode::Native))??;

        let bridge_pass = Switch::pass_xdp(&switch, "lb")?;

        let mut servers = Servers::default();
        for host in &backends {
            servers.start(host)?;
        }
        Ok(Topology {
            _servers: servers,
            ebpf,
            decap: decaps,
            _bridge_pass: bridge_pass,
            client,
            lb,
            switch,
            backends,
            v4,
            v6,
            upload_v4,
            upload_v6,
            forwarding,
            _lab: lab,
        })
    }

    /// The VIP of `addr`'s family.
    pub fn service(&self, addr: IpAddr) -> &Service {
        if addr.is_ipv4() { &self.v4 } else { &self.v6 }
    }

    /// The client's address of the same family as `vip`.
    pub fn client_addr(vip: IpAddr) -> IpAddr {
        match vip {
            IpAddr::V4(_) => IpAddr::V4(CLIENT_V4),
            IpAddr::V6(_) => IpAddr::V6(CLIENT_V6),
        }
    }

    /// Opens one TCP connection from the client to `vip`:80, from source port `sport` (0: any)
    /// and returns the id of the backend that answered.
    pub fn ask(&self, vip: IpAddr, sport: u16) -> anyhow::Result<u32> {
        let local = SocketAddr::new(Topology::client_addr(vip), sport);
        let remote = SocketAddr::new(vip, VIP_PORT);
        let answer = self
            .client
            .run(|| -> std::io::Result<String> {
                let stream = connect_from(local, remote, CONNECT_TIMEOUT)?;
                stream.set_read_timeout(Some(READ_TIMEOUT))?;
                let mut answer = String::new();
                stream.take(64).read_to_string(&mut answer)?;
                Ok(answer)
            })?
            .with_context(|| format!("connecting from {local} to {remote}"))?;
        let name = answer.trim();
        match self.backends.iter().find(|host| host.name == name) {
            Some(host) => Ok(host.id),
            None => bail!("{local} -> {remote}: unexpected answer {answer:?}"),
        }
    }

    /// Opens one TCP connection from the client to `vip`:[`UPLOAD_PORT`] from source port
    /// `sport` (0: any), sends `body` bytes, closes its sending side and returns what the
    /// backend answered.
    pub fn upload(&self, vip: IpAddr, sport: u16, body: usize) -> anyhow::Result<Upload> {
        let local = SocketAddr::new(Topology::client_addr(vip), sport);
        let remote = SocketAddr::new(vip, UPLOAD_PORT);
        let (answer, path_mtu) = self
            .client
            .run(|| -> std::io::Result<(String, u32)> {
                let mut stream = connect_from(local, remote, CONNECT_TIMEOUT)?;
                stream.set_write_timeout(Some(UPLOAD_TIMEOUT))?;
                stream.set_read_timeout(Some(UPLOAD_TIMEOUT))?;
                stream.write_all(&vec![b'x'; body])?;
                // Read while the connection is established: a closed socket has no route.
                let path_mtu = path_mtu(&stream)?;
                stream.shutdown(Shutdown::Write)?;
                let mut answer = String::new();
                stream.take(64).read_to_string(&mut answer)?;
                Ok((answer, path_mtu))
            })?
            .with_context(|| format!("uploading {body} bytes from {local} to {remote}"))?;
        let (name, received) = answer
            .trim()
            .split_once(' ')
            .with_context(|| format!("{local} -> {remote}: unexpected answer {answer:?}"))?;
        let received = received
            .parse()
            .with_context(|| format!("{local} -> {remote}: unexpected answer {answer:?}"))?;
        match self.backends.iter().find(|host| host.name == name) {
            Some(host) => Ok(Upload {
                backend: host.id,
                received,
                path_mtu,
            }),
            None => bail!("{local} -> {remote}: unexpected answer {answer:?}"),
        }
    }

    /// The per-backend counters of backend `id`, summed over CPUs.
    pub fn backend_stats(&self, id: u32) -> anyhow::Result<BackendCounter> {
        backend_counter(&self.ebpf, id)
    }
}

/// Backend `id`'s counters in `XLB_BACKEND_STATS`, summed over every CPU.
pub fn backend_counter(ebpf: &Ebpf, id: u32) -> anyhow::Result<BackendCounter> {
    let name = map_names::BACKEND_STATS;
    let map = ebpf
        .map(name)
        .with_context(|| format!("the XDP object has no map named {name}"))?;
    let stats: PerCpuArray<&MapData, BackendCounter> =
        PerCpuArray::try_from(map).with_context(|| format!("map {name} is not a per-CPU array"))?;
    let per_cpu = stats
        .get(&id, 0)
        .with_context(|| format!("reading backend {id} of map {name}"))?;
    Ok(per_cpu
        .iter()
        .fold(BackendCounter::default(), |sum, c| BackendCounter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
            new_flows: sum.new_flows + c.new_flows,
        }))
}

/// The Maglev table over backends `0..weights.len()` (keyed by id), as backend ids.
fn maglev_table(weights: &[u32], size: u32) -> anyhow::Result<Vec<u32>> {
    let keys: Vec<[u8; 4]> = (0..weights.len() as u32).map(u32::to_be_bytes).collect();
    let backends: Vec<maglev::Backend> = keys
        .iter()
        .zip(weights)
        .map(|(key, &weight)| maglev::Backend { key, weight })
        .collect();
    // The table holds indexes into `backends`, which are the ids.
    Ok(maglev::build(&backends, size)?)
}

/// Writes `table` at `tables[0]` and a TCP VIP on `addr`:`port` with `flags` pointing at it.
fn service(
    ebpf: &mut Ebpf,
    addr: IpAddr,
    port: u16,
    id: u32,
    flags: u32,
    tables: [u32; 2],
    table: &[u32],
) -> anyhow::Result<Service> {
    steering::write_table(ebpf, tables[0], table)?;
    let key = vip_key(&addr.to_string(), port, TCP);
    let vip = Vip {
        id,
        flags,
        table_size: table.len() as u32,
        active: 0,
        tables,
        canary: 0,
    };
    steering::set_vip(ebpf, &key, &vip)?;
    Ok(Service {
        addr,
        port,
        key,
        vip,
        table: table.to_vec(),
    })
}

/// Loads `xlb_decap` for `host`'s own addresses and attaches it natively to its eth0 (from a
/// thread inside its namespace); the returned object keeps it attached.
fn attach_decap(host: &BackendHost) -> anyhow::Result<Ebpf> {
    let mut ebpf = decap::load(&[IpAddr::V4(host.v4), IpAddr::V6(host.v6)])?;
    let program = object::xdp_program(&mut ebpf, DECAP_PROGRAM_NAME)?;
    host.ns
        .run(|| attach::attach(program, "eth0", AttachMode::Native))?
        .with_context(|| format!("attaching {DECAP_PROGRAM_NAME} in {}", host.ns.name))?;
    Ok(ebpf)
}

/// The MAC address `text` (`aa:bb:cc:dd:ee:ff`) as bytes.
fn mac_of(text: &str) -> anyhow::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().with_context(|| format!("bad MAC {text}"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {text}"))?;
    }
    Ok(mac)
}

/// The backends' TCP servers: one thread each, stopped and joined on drop.
#[derive(Default)]
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Listens on [::]:80 and [::]:81 (both families) in `host`'s namespace: answers every
    /// connection to port 80 with the host's name, and every connection to port 81, once the
    /// client has sent all it will, with the host's name and the number of bytes it read.
    fn start(&mut self, host: &BackendHost) -> anyhow::Result<()> {
        let listen = |port: u16| -> anyhow::Result<TcpListener> {
            let listener = host
                .ns
                .run(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))?
                .with_context(|| format!("listening on [::]:{port} in {}", host.ns.name))?;
            // Non-blocking, so a connection reset between poll and accept cannot block the
            // thread.
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let name_listener = listen(VIP_PORT)?;
        let upload_listener = listen(UPLOAD_PORT)?;
        let name = host.name.clone();
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            serve(&name_listener, &upload_listener, &name, &stop)
        }));
        Ok(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(names: &TcpListener, uploads: &TcpListener, name: &str, stop: &AtomicBool) {
    let reply = format!("{name}\n");
    while !stop.load(Ordering::Relaxed) {
        let mut polls = [names, uploads].map(|listener| libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two valid pollfds for sockets this function borrows.
        if unsafe { libc::poll(polls.as_mut_ptr(), 2, ACCEPT_POLL_MS) } <= 0 {
            continue;
        }
        while let Ok((mut stream, _)) = names.accept() {
            // A client that stops reading must not hold up the others.
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(reply.as_bytes());
        }
        while let Ok((stream, _)) = uploads.accept() {
            count_upload(stream, name);
        }
    }
}

/// Reads until the client closes its sending side, then answers `name count`. Bounded by
/// UPLOAD_TIMEOUT, so a client that stalls holds up the other connections only that long.
fn count_upload(mut stream: TcpStream, name: &str) {
    let deadline = Instant::now() + UPLOAD_TIMEOUT;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(UPLOAD_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    loop {
        if Instant::now() >= deadline {
            return;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            // Timed out or reset: no answer, the client reports the failure.
            Err(_) => return,
        }
    }
    let _ = stream.write_all(format!("{name} {received}\n").as_bytes());
}

/// The path MTU the kernel holds for a connected socket's destination (IP_MTU / IPV6_MTU).
fn path_mtu(stream: &TcpStream) -> std::io::Result<u32> {
    let (level, option) = if stream.peer_addr()?.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut size = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: mtu and size point to a c_int and its size.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            level,
            option,
            (&raw mut mtu).cast(),
            &mut size,
        )
    };
    check(got)?;
    Ok(mtu as u32)
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
