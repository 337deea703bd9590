//! A load-balancer topology on a [`Lab`]: a client, the xlb program attached in native XDP mode
//! on a load-balancer namespace, and N backends that hold the VIPs on their loopback and answer
//! the client directly (`dsr`), all joined by a bridge; plus real TCP servers on the backends
//! and a client that asks a VIP which backend served it.
//!
//! ```text
//!   client (eth0: .1, ::1) ──┐
//!   lb     (eth0: .2, ::2) ──┼── br0 in sw ── XDP bare_pass on p-lb, so XDP_TX is delivered
//!   b{i}   (eth0: .10+i)   ──┘   (every b{i} holds the VIPs on lo and replies to the client)
//! ```

use std::{
    io::{Read as _, Write as _},
    mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use lb_common::{
    Backend, BackendCounter, PROGRAM_NAME, Vip, VipKey, map_names,
    service::{BACKEND_ACTIVE, FAMILY_IPV4},
};
use lb_userspace::{args::XdpModeArg, attach, maglev, object, steering};

use crate::{
    netns::{Lab, Netns},
    packets::Flow,
    steering::{flow_key, vip_key},
};

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const LB_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const LB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The TCP port of both VIPs, where every backend's server listens.
pub const VIP_PORT: u16 = 80;
const TCP: u8 = 6;
/// Where the VIPs' live tables start in the Maglev slot map (the second copy of each, unused
/// here, would start 100,000 slots later as in [`crate::steering`]).
const V4_TABLES: [u32; 2] = [0, 100_000];
const V6_TABLES: [u32; 2] = [200_000, 300_000];
/// How long the client waits for the handshake, and then for the backend's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a server thread looks at its stop flag while no client connects.
const ACCEPT_POLL_MS: i32 = 50;

/// The shape of a topology.
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of backends (`b0`..), at most 200.
    pub backends: u32,
    /// Maglev weight of each backend; empty means 1 for every backend.
    pub weights: Vec<u32>,
    /// Maglev table size of both VIPs: a prime of at most 100,000.
    pub table_size: u32,
}

impl Options {
    /// `backends` backends of equal weight and the usual 65,537-slot table.
    pub fn equal(backends: u32) -> Options {
        Options {
            backends,
            weights: Vec::new(),
            table_size: 65_537,
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
            dport: VIP_PORT,
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
    _bridge_pass: Ebpf,
    pub client: Netns,
    pub lb: Netns,
    pub switch: Netns,
    pub backends: Vec<BackendHost>,
    /// The IPv4 VIP 198.18.1.10:80 and the IPv6 VIP [2001:db8:1::10]:80 (TCP).
    pub v4: Service,
    pub v6: Service,
    _lab: Lab,
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
        let switch = lab.netns("sw")?;
        let client = lab.netns("client")?;
        let lb = lab.netns("lb")?;
        let mut hosts = Vec::new();
        for id in 0..count {
            hosts.push((id, lab.netns(&format!("b{id}"))?));
        }
        // IPv6 duplicate address detection would hold back every link-local address for a
        // second or two, and neighbour solicitations need one: turn it off before any link
        // exists, so the defaults apply to the new veths.
        for ns in [&switch, &client, &lb]
            .into_iter()
            .chain(hosts.iter().map(|h| &h.1))
        {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }

        let mut ports = vec!["p-client".to_owned(), "p-lb".to_owned()];
        lab.veth((&client, "eth0"), (&switch, "p-client"))?;
        lab.veth((&lb, "eth0"), (&switch, "p-lb"))?;
        for (id, ns) in &hosts {
            let port = format!("p-b{id}");
            lab.veth((ns, "eth0"), (&switch, &port))?;
            ports.push(port);
        }
        let port_refs: Vec<&str> = ports.iter().map(String::as_str).collect();
        lab.bridge(&switch, "br0", &port_refs)?;
        // Frames XDP forwards keep whatever checksum they arrived with: let every sender
        // compute full checksums instead of leaving them to an offload that never happens.
        for port in &port_refs {
            tx_checksum_off(&switch, port)?;
        }
        for ns in [&client, &lb].into_iter().chain(hosts.iter().map(|h| &h.1)) {
            tx_checksum_off(ns, "eth0")?;
        }

        lab.addr(&client, "eth0", &format!("{CLIENT_V4}/24"))?;
        lab.addr(&client, "eth0", &format!("{CLIENT_V6}/64"))?;
        lab.addr(&lb, "eth0", &format!("{LB_V4}/24"))?;
        lab.addr(&lb, "eth0", &format!("{LB_V6}/64"))?;
        client.ip(&[
            "route",
            "add",
            &format!("{VIP_V4}/32"),
            "via",
            &LB_V4.to_string(),
        ])?;
        client.ip(&[
            "-6",
            "route",
            "add",
            &format!("{VIP_V6}/128"),
            "via",
            &LB_V6.to_string(),
        ])?;

        let mut backends = Vec::new();
        for (id, ns) in hosts {
            let v4 = Ipv4Addr::new(198, 18, 0, 10 + id as u8);
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + id as u16);
            lab.addr(&ns, "eth0", &format!("{v4}/24"))?;
            lab.addr(&ns, "eth0", &format!("{v6}/64"))?;
            lab.addr(&ns, "lo", &format!("{VIP_V4}/32"))?;
            lab.addr(&ns, "lo", &format!("{VIP_V6}/128"))?;
            // The VIP is on lo, so: never answer ARP for it on eth0 (arp_ignore), never use it
            // as the source of our own ARP requests (arp_announce), and accept packets whose
            // reply leaves by another route than the request came in (rp_filter).
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
            for dev in ["all", "default", "lo", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
            }
            // One [::]:80 socket serves both families.
            ns.sysctl("net.ipv6.bindv6only", "0")?;
            let mac = mac_of(&ns, "eth0")?;
            backends.push(BackendHost {
                id,
                name: format!("b{id}"),
                ns,
                mac,
                v4,
                v6,
            });
        }

        let mut ebpf = object::load(object::XDP_OBJECT, PROGRAM_NAME)?;
        for host in &backends {
            let (addr, _) = crate::steering::addr_bytes(IpAddr::V4(host.v4));
            let backend = Backend {
                addr,
                mac: host.mac,
                family: FAMILY_IPV4,
                flags: BACKEND_ACTIVE,
            };
            steering::set_backend(&mut ebpf, host.id, &backend)?;
        }
        let table = maglev_table(&weights, options.table_size)?;
        let v4 = service(&mut ebpf, IpAddr::V4(VIP_V4), 0, V4_TABLES, &table)?;
        let v6 = service(&mut ebpf, IpAddr::V6(VIP_V6), 1, V6_TABLES, &table)?;
        let program = object::xdp_program(&mut ebpf, PROGRAM_NAME)?;
        lb.run(|| attach::attach(program, "eth0", XdpModeArg::Native))??;

        // Native XDP_TX on a veth reaches the peer only if the peer runs an XDP program.
        let mut bridge_pass = object::load(object::BASELINE_OBJECT, "bare_pass")?;
        let pass = object::xdp_program(&mut bridge_pass, "bare_pass")?;
        switch.run(|| attach::attach(pass, "p-lb", XdpModeArg::Native))??;

        let mut servers = Servers::default();
        for host in &backends {
            servers.start(host)?;
        }
        Ok(Topology {
            _servers: servers,
            ebpf,
            _bridge_pass: bridge_pass,
            client,
            lb,
            switch,
            backends,
            v4,
            v6,
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

/// Writes `table` at `tables[0]` and a TCP VIP on `addr`:80 pointing at it.
fn service(
    ebpf: &mut Ebpf,
    addr: IpAddr,
    id: u32,
    tables: [u32; 2],
    table: &[u32],
) -> anyhow::Result<Service> {
    steering::write_table(ebpf, tables[0], table)?;
    let key = vip_key(&addr.to_string(), VIP_PORT, TCP);
    let vip = Vip {
        id,
        flags: 0,
        table_size: table.len() as u32,
        active: 0,
        tables,
    };
    steering::set_vip(ebpf, &key, &vip)?;
    Ok(Service {
        addr,
        key,
        vip,
        table: table.to_vec(),
    })
}

fn tx_checksum_off(ns: &Netns, dev: &str) -> anyhow::Result<()> {
    let mut command = ns.command("ethtool");
    command.args(["-K", dev, "tx", "off"]);
    let out = command
        .output()
        .with_context(|| format!("running {command:?} (is ethtool installed?)"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The MAC address of `dev` in `ns`. Read with `ip -j`: /sys/class/net shows the namespace
/// sysfs was mounted in, whatever namespace the reading thread is in.
fn mac_of(ns: &Netns, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-j", "link", "show", dev])
        .output()
        .context("running ip -j link show")?;
    ensure!(
        out.status.success(),
        "ip -n {} link show {dev} failed: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = links[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {dev} in {}: {links}", ns.name))?;
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
    /// Listens on [::]:80 (both families) in `host`'s namespace and answers every connection
    /// with the host's name.
    fn start(&mut self, host: &BackendHost) -> anyhow::Result<()> {
        let listener = host
            .ns
            .run(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, VIP_PORT)))?
            .with_context(|| format!("listening on [::]:{VIP_PORT} in {}", host.ns.name))?;
        // Non-blocking, so a connection reset between poll and accept cannot block the thread.
        listener.set_nonblocking(true)?;
        let reply = format!("{}\n", host.name);
        let stop = Arc::clone(&self.stop);
        self.threads
            .push(std::thread::spawn(move || serve(&listener, &reply, &stop)));
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

fn serve(listener: &TcpListener, reply: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a socket this function borrows.
        if unsafe { libc::poll(&mut poll, 1, ACCEPT_POLL_MS) } <= 0 {
            continue;
        }
        while let Ok((mut stream, _)) = listener.accept() {
            // A client that stops reading must not hold up the others.
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(reply.as_bytes());
        }
    }
}

/// A TCP connection from `local` (bound before connecting, so the caller picks the source
/// port) to `remote`, given up after `timeout`.
fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let domain = if remote.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket has no memory preconditions; the fd is owned right below.
    let fd = unsafe { libc::socket(domain, kind, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a c_int of the given size.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(set)?;
    let (addr, len) = sockaddr(local);
    // SAFETY: addr is a valid sockaddr of length len.
    check(unsafe { libc::bind(fd, (&raw const addr).cast(), len) })?;
    let (addr, len) = sockaddr(remote);
    // SAFETY: addr is a valid sockaddr of length len.
    if unsafe { libc::connect(fd, (&raw const addr).cast(), len) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, ms) };
        check(ready)?;
        if ready == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no handshake with {remote} within {timeout:?}"),
            ));
        }
        let mut error: libc::c_int = 0;
        let mut size = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: error and size point to a c_int and its size.
        let got = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut error).cast(),
                &mut size,
            )
        };
        check(got)?;
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error));
        }
    }
    let stream = TcpStream::from(socket);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
