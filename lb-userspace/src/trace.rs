//! `xlb trace`: packets as the XDP program leaves them — forwarded (XDP_TX), dropped or passed,
//! which tcpdump never sees for the first two — with the reason, VIP, backend and flow event the
//! program gave each. The program hands them over through a ring buffer while the config's
//! trace flag is set ([`lb_common::config::CONFIG_TRACE`]); VIP, backend and reason filters run
//! in the kernel, the client filter here. Output: one summary line per packet, a pcap file
//! (`--write`) that tcpdump and Wireshark read, or one JSON document.

use std::{
    fs::File,
    io::BufWriter,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::maps::{Map, MapData, RingBuf};
use etherparse::{IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use lb_common::{
    Config, Event, Reason, VipKey,
    config::CONFIG_TRACE,
    map_names,
    trace::{
        TRACE_MATCH_BACKEND, TRACE_MATCH_REASON, TRACE_MATCH_VIP, TRACE_NONE, TraceEvent,
        TraceFilter,
    },
};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    capacity::Capacity,
    exit,
    live::Snapshot,
    maps::{Maps, array},
    pins,
    rollout::{describe_vip, live_address},
    status::live_backends,
};

/// What to trace and for how long: the `xlb trace` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only packets of this VIP (`ADDRESS:PORT/PROTOCOL` or a live VIP's name).
    pub vip: Option<String>,
    /// Only packets steered to the backend with this address.
    pub backend: Option<IpAddr>,
    /// Only packets counted under the reason of this name.
    pub reason: Option<String>,
    /// Only packets from this client address.
    pub client: Option<IpAddr>,
    /// Stop after this many packets.
    pub count: u64,
    /// Stop after this many seconds.
    pub duration: f64,
    /// Also write the packets to this pcap file.
    pub write: Option<PathBuf>,
}

/// One traced packet, decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Traced {
    /// Seconds since the trace started.
    pub time: f64,
    pub reason: &'static str,
    pub verdict: &'static str,
    /// `address:port/protocol` of the VIP it matched.
    pub vip: Option<String>,
    pub vip_name: Option<String>,
    pub backend: Option<IpAddr>,
    /// The flow-table event of a steered packet (`flow_hit`, `flow_miss`, ...).
    pub event: Option<&'static str>,
    /// The client's flow (inside the tunnel of an `ipip` packet).
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// `tcp`, `udp`, `icmp`... or the IP protocol number.
    pub protocol: Option<String>,
    /// The frame's length as the program left it.
    pub length: u32,
}

/// Why a trace stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    Count,
    Duration,
    Signal,
}

/// What a trace caught and why it stopped.
#[derive(Debug, Serialize)]
pub struct Report {
    pub packets: Vec<Traced>,
    pub stopped: Stopped,
    /// The pcap file written, with `write`.
    pub pcap: Option<PathBuf>,
}

/// What the live maps say about ids: VIP and backend of each, for display and filters.
struct Ids {
    vips: Vec<(VipKey, u32)>,
    backends: Vec<IpAddr>,
    names: crate::names::Names,
}

impl Ids {
    fn vip(&self, id: u32) -> Option<String> {
        self.vips
            .iter()
            .find(|(_, vip)| *vip == id)
            .map(|(key, _)| describe_vip(key))
    }
}

/// The kernel-side filter for `args`, resolved against the live maps.
fn filter(
    args: &Options,
    snapshot: &Snapshot,
    capacity: &Capacity,
    ids: &Ids,
) -> anyhow::Result<TraceFilter> {
    let mut filter = TraceFilter::default();
    let mut vip_id = None;
    if let Some(spec) = &args.vip {
        let resolved = ids.names.resolve(spec);
        let key = crate::backend::parse_vip(&resolved).map_err(|err| {
            exit::Coded(
                exit::UNREADABLE,
                format!("--vip: {err:#}, or the name of a live VIP (`xlb status` lists them)"),
            )
        })?;
        let Some((_, vip)) = snapshot.vips.iter().find(|(k, _)| *k == key) else {
            bail!(exit::Coded(
                exit::UNREADABLE,
                format!("--vip {spec}: no such VIP is live (`xlb status` lists them)")
            ));
        };
        filter.flags |= TRACE_MATCH_VIP;
        filter.vip = vip.id;
        vip_id = Some(vip.id);
    }
    if let Some(address) = args.backend {
        let matching: Vec<u32> = snapshot
            .vips
            .iter()
            .filter(|(_, vip)| vip_id.is_none_or(|id| id == vip.id))
            .flat_map(|(_, vip)| live_backends(snapshot, capacity, vip.id))
            .filter(|(_, backend)| live_address(backend) == address)
            .map(|(id, _)| id)
            .collect();
        match matching[..] {
            [id] => {
                filter.flags |= TRACE_MATCH_BACKEND;
                filter.backend = id;
            }
            [] => bail!(exit::Coded(
                exit::UNREADABLE,
                format!(
                    "--backend {address}: no live VIP{} has this backend (`xlb stats` lists them)",
                    if vip_id.is_some() {
                        " given by --vip"
                    } else {
                        ""
                    }
                )
            )),
            _ => bail!(exit::Coded(
                exit::UNREADABLE,
                format!(
                    "--backend {address} serves {} VIPs: add --vip to say which",
                    matching.len()
                )
            )),
        }
    }
    if let Some(name) = &args.reason {
        let Some(reason) = Reason::ALL.iter().find(|r| r.name() == name) else {
            let names: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
            bail!(exit::Coded(
                exit::UNREADABLE,
                format!(
                    "--reason {name}: not a reason; use one of {}",
                    names.join(", ")
                )
            ));
        };
        filter.flags |= TRACE_MATCH_REASON;
        filter.reason = *reason as u32;
    }
    Ok(filter)
}

/// Traces the packets `args` selects at the XDP program pinned under `pin_path`, handing each
/// to `on_packet` as it comes, until `args.count` packets, `args.duration` or a signal.
pub async fn trace(
    pin_path: &Path,
    args: &Options,
    on_packet: impl FnMut(&Traced),
) -> anyhow::Result<Report> {
    let mut maps = pins::open(pin_path)?;
    let snapshot = Snapshot::read(&mut maps)?;
    let capacity = Capacity::read(&maps)?;
    let ids = Ids {
        vips: snapshot.vips.iter().map(|(k, v)| (*k, v.id)).collect(),
        backends: snapshot.backends.iter().map(live_address).collect(),
        names: crate::names::read(pin_path),
    };
    let kernel_filter = filter(args, &snapshot, &capacity, &ids)?;
    let mut writer = match &args.write {
        Some(path) => Some(pcap_writer(path)?),
        None => None,
    };
    let mut ring = open_ring(pin_path)?;
    // What an earlier trace left unread is not this trace's.
    while ring.next().is_some() {}
    array::<TraceFilter>(&mut maps, map_names::TRACE_FILTER)?.set(0, &kernel_filter, 0)?;
    switch(&mut maps, true)?;
    let traced = collect(ring, args, &ids, writer.as_mut(), on_packet).await;
    // Off whatever happened: tracing costs every packet a ring-buffer write.
    let off = switch(&mut maps, false);
    let (packets, stopped) = traced?;
    off?;
    if let Some(writer) = writer {
        writer
            .into_writer()
            .into_inner()
            .context("flushing the pcap file")?;
    }
    Ok(Report {
        packets,
        stopped,
        pcap: args.write.clone(),
    })
}

fn pcap_writer(path: &Path) -> anyhow::Result<PcapWriter<BufWriter<File>>> {
    let file = File::create(path).with_context(|| {
        format!(
            "--write {}: cannot create the file; choose a writable path",
            path.display()
        )
    })?;
    PcapWriter::new(BufWriter::new(file)).context("writing the pcap header")
}

fn open_ring(pin_path: &Path) -> anyhow::Result<RingBuf<MapData>> {
    let path = pin_path.join(map_names::TRACE);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening the trace ring {}: the running xlb predates `xlb trace`; restart it \
             (`xlb run --config FILE` adopts the data plane without a gap)",
            path.display()
        )
    })?;
    RingBuf::try_from(Map::RingBuf(data)).context("the trace map is not a ring buffer")
}

/// Sets or clears the trace flag in the live config, keeping every other setting.
fn switch(maps: &mut (impl Maps + ?Sized), on: bool) -> anyhow::Result<()> {
    let mut configs = array::<Config>(maps, map_names::CONFIG)?;
    let mut config = configs.get(&0, 0).context("reading the config map")?;
    if on {
        config.flags |= CONFIG_TRACE;
    } else {
        config.flags &= !CONFIG_TRACE;
    }
    configs
        .set(0, &config, 0)
        .context("switching the trace flag in the config map")
}

/// Reads events until `--count` matching packets, `--duration` or a signal.
async fn collect(
    ring: RingBuf<MapData>,
    args: &Options,
    ids: &Ids,
    mut writer: Option<&mut PcapWriter<BufWriter<File>>>,
    mut on_packet: impl FnMut(&Traced),
) -> anyhow::Result<(Vec<Traced>, Stopped)> {
    // SAFETY: the ring buffer owns its map's descriptor and keeps it open while registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|err| anyhow::anyhow!("watching the trace ring: {err}"))?;
    let mut terminate = signal(SignalKind::terminate())?;
    let deadline = tokio::time::sleep(Duration::from_secs_f64(args.duration));
    tokio::pin!(deadline);
    let clock = Clock::now();
    let mut packets = Vec::new();
    loop {
        if packets.len() as u64 >= args.count {
            return Ok((packets, Stopped::Count));
        }
        let mut ready = tokio::select! {
            _ = &mut deadline => return Ok((packets, Stopped::Duration)),
            _ = tokio::signal::ctrl_c() => return Ok((packets, Stopped::Signal)),
            _ = terminate.recv() => return Ok((packets, Stopped::Signal)),
            ready = ring.readable_mut() => ready.context("waiting on the trace ring")?,
        };
        let ring = ready.get_inner_mut();
        while packets.len() < args.count as usize {
            let Some(item) = ring.next() else { break };
            let Some(event) = read_event(&item) else {
                continue;
            };
            drop(item);
            let traced = decode(&event, ids, &clock);
            if args
                .client
                .is_some_and(|client| traced.source.map(|s| s.ip()) != Some(client))
            {
                continue;
            }
            if let Some(writer) = writer.as_deref_mut() {
                let data = &event.data[..event.captured as usize];
                writer
                    .write_packet(&PcapPacket::new(
                        clock.wall(event.time_ns),
                        event.frame_len,
                        data,
                    ))
                    .context("writing to the pcap file")?;
            }
            on_packet(&traced);
            packets.push(traced);
        }
        ready.clear_ready();
    }
}

fn read_event(item: &[u8]) -> Option<TraceEvent> {
    if item.len() < size_of::<TraceEvent>() {
        return None;
    }
    // SAFETY: the item holds a whole TraceEvent (checked above), plain data written by the
    // program; read_unaligned makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<TraceEvent>()) })
}

/// Converts the program's monotonic timestamps to wall-clock time and to time since start.
struct Clock {
    start_ns: u64,
    wall_offset: Duration,
}

impl Clock {
    fn now() -> Clock {
        let monotonic = monotonic_ns();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start_ns: monotonic,
            wall_offset: wall.saturating_sub(Duration::from_nanos(monotonic)),
        }
    }

    fn wall(&self, time_ns: u64) -> Duration {
        self.wall_offset + Duration::from_nanos(time_ns)
    }

    fn since_start(&self, time_ns: u64) -> f64 {
        time_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime writes only into it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn decode(event: &TraceEvent, ids: &Ids, clock: &Clock) -> Traced {
    let reason = Reason::ALL.iter().find(|r| **r as u32 == event.reason);
    let vip = (event.vip != TRACE_NONE)
        .then(|| ids.vip(event.vip))
        .flatten();
    let flow = client_flow(&event.data[..event.captured as usize]);
    Traced {
        time: clock.since_start(event.time_ns),
        reason: reason.map_or("unknown", |r| r.name()),
        verdict: reason.map_or("unknown", |r| r.verdict().name()),
        vip_name: vip.as_deref().and_then(|v| ids.names.name_of(v)),
        vip,
        backend: ids.backends.get(event.backend as usize).copied(),
        event: Event::ALL
            .iter()
            .find(|e| **e as u32 == event.event)
            .map(|e| e.name()),
        source: flow.map(|f| f.0),
        destination: flow.map(|f| f.1),
        protocol: flow.map(|f| protocol_name(f.2)),
        length: event.frame_len,
    }
}

fn protocol_name(number: IpNumber) -> String {
    match number {
        IpNumber::TCP => "tcp".to_owned(),
        IpNumber::UDP => "udp".to_owned(),
        IpNumber::ICMP => "icmp".to_owned(),
        IpNumber::IPV6_ICMP => "icmpv6".to_owned(),
        other => other.0.to_string(),
    }
}

/// The client's flow in a captured frame (possibly cut at the snap length): the inner packet's
/// for an IP-in-IP tunnel, else the frame's own.
fn client_flow(data: &[u8]) -> Option<(SocketAddr, SocketAddr, IpNumber)> {
    let outer = LaxSlicedPacket::from_ethernet(data).ok()?;
    let payload = outer.net.as_ref()?.ip_payload_ref()?;
    if matches!(payload.ip_number, IpNumber::IPV4 | IpNumber::IPV6) {
        let inner = LaxSlicedPacket::from_ip(payload.payload).ok()?;
        return flow_of(&inner);
    }
    flow_of(&outer)
}

fn flow_of(packet: &LaxSlicedPacket) -> Option<(SocketAddr, SocketAddr, IpNumber)> {
    let (source, destination, number): (IpAddr, IpAddr, IpNumber) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number,
        ),
        LaxNetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
            ip.payload().ip_number,
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    let (sport, dport) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => (tcp.source_port(), tcp.destination_port()),
        Some(TransportSlice::Udp(udp)) => (udp.source_port(), udp.destination_port()),
        _ => (0, 0),
    };
    Some((
        SocketAddr::new(source, sport),
        SocketAddr::new(destination, dport),
        number,
    ))
}

/// One summary line: time, verdict and reason, flow, VIP, backend and flow event.
pub fn line(traced: &Traced) -> String {
    let flow = match (traced.source, traced.destination, &traced.protocol) {
        (Some(source), Some(destination), Some(protocol)) => {
            format!("{source} > {destination} {protocol}")
        }
        _ => "(not IP)".to_owned(),
    };
    let mut text = format!(
        "{:>10.6} {:<4} {:<16} {flow} len {}",
        traced.time, traced.verdict, traced.reason, traced.length
    );
    if let Some(vip) = &traced.vip {
        text += &format!(
            " vip {}",
            crate::names::label(vip, traced.vip_name.as_deref())
        );
    }
    if let Some(backend) = traced.backend {
        text += &format!(" backend {backend}");
    }
    if let Some(event) = traced.event {
        text += &format!(" {event}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the client flow of a tunnelled frame is the inner packet's, and that a frame
    /// cut at the snap length still yields its flow.
    #[test]
    fn client_flow_looks_inside_tunnels_and_truncated_frames() {
        let inner = etherparse::PacketBuilder::ipv4([198, 18, 0, 1], [198, 18, 1, 10], 64)
            .tcp(40_000, 80, 1, 1024);
        let mut inner_bytes = Vec::new();
        inner.write(&mut inner_bytes, &[0u8; 1400]).unwrap();
        let outer = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(
            [198, 18, 0, 2],
            [198, 18, 0, 10],
            64,
        );
        let mut frame = Vec::new();
        outer
            .write(&mut frame, IpNumber::IPV4, &inner_bytes)
            .unwrap();
        let (source, destination, protocol) =
            client_flow(&frame[..256]).expect("flow of a truncated tunnel");
        assert_eq!(source, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(destination, "198.18.1.10:80".parse().unwrap());
        assert_eq!(protocol, IpNumber::TCP);
    }
}
