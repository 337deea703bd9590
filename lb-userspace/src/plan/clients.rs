//! Real clients for `plan`: a list of client addresses (`--clients`) or the flows of a packet
//! capture (`--pcap`). With `hash = "source"` the spread of a VIP follows its clients'
//! addresses, so a few NAT or proxy addresses can land every flow on a few servers; random
//! synthetic clients cannot show that, a sample of the real ones can.

use std::{
    collections::BTreeSet,
    fs::File,
    io::BufReader,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::{Context as _, bail, ensure};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::{DataLink, pcap::PcapReader};

/// Longest client list or capture read: a sample, not an archive.
const MAX_FLOWS: usize = 1_000_000;

/// What a client list or capture at `path` gave so far: a sample, so reading stops past
/// [`MAX_FLOWS`], and one that gave nothing is refused. `verb` and `noun` name it in errors
/// (`lists … clients`, `holds … flows`).
struct Bounded<'a, T> {
    path: &'a Path,
    verb: &'static str,
    noun: &'static str,
    items: Vec<T>,
}

impl<'a, T> Bounded<'a, T> {
    fn new(path: &'a Path, verb: &'static str, noun: &'static str) -> Self {
        Bounded {
            path,
            verb,
            noun,
            items: Vec::new(),
        }
    }

    fn push(&mut self, item: T) -> anyhow::Result<()> {
        self.items.push(item);
        ensure!(
            self.items.len() <= MAX_FLOWS,
            "{} {} more than {MAX_FLOWS} {}: pass a sample",
            self.path.display(),
            self.verb,
            self.noun
        );
        Ok(())
    }

    /// The items; an error ending in `none` (what is missing and the fix) if there are none.
    fn finish(self, none: &str) -> anyhow::Result<Vec<T>> {
        ensure!(
            !self.items.is_empty(),
            "{} {} {none}",
            self.path.display(),
            self.verb
        );
        Ok(self.items)
    }
}

/// Where `plan`'s sample flows come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clients {
    /// Random clients from the documentation ranges (the default).
    Synthetic,
    /// Client addresses, each with how many of the sample's flows it sends (its weight).
    Addresses(Vec<(IpAddr, u32)>),
    /// Flows seen in a capture: (source, destination, IP protocol), each once.
    Flows(Vec<(SocketAddr, SocketAddr, u8)>),
}

/// Reads `--clients FILE`: one client per line, `ADDRESS` or `ADDRESS COUNT` (how many flows
/// it sends relative to the others, default 1); blank lines and `#` comments are skipped.
pub fn read_addresses(path: &Path) -> anyhow::Result<Clients> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the client list {}", path.display()))?;
    let mut clients = Bounded::new(path, "lists", "clients");
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let at = || format!("{}:{}", path.display(), number + 1);
        let address = words.next().unwrap_or_default();
        let address: IpAddr = address.parse().with_context(|| {
            format!(
                "{}: `{address}` is not an IP address: write one client per line, `ADDRESS` or \
                 `ADDRESS COUNT`, e.g. `198.51.100.7 250`",
                at()
            )
        })?;
        let count = match words.next() {
            None => 1,
            Some(word) => word
                .parse::<u32>()
                .ok()
                .filter(|c| *c > 0)
                .with_context(|| {
                    format!(
                        "{}: count `{word}` of client {address} is not a whole number above 0",
                        at()
                    )
                })?,
        };
        if let Some(extra) = words.next() {
            bail!(
                "{}: unexpected `{extra}` after client {address}: write `ADDRESS` or `ADDRESS \
                 COUNT`",
                at()
            );
        }
        clients.push((address.to_canonical(), count))?;
    }
    let clients =
        clients.finish("no client: write one address per line (`ADDRESS` or `ADDRESS COUNT`)")?;
    Ok(Clients::Addresses(clients))
}

/// Reads `--pcap FILE` (pcap, as `tcpdump -w` writes it; Ethernet, raw IP or Linux cooked
/// captures): every distinct TCP or UDP 5-tuple in it, in order of first appearance.
pub fn read_pcap(path: &Path) -> anyhow::Result<Clients> {
    let file =
        File::open(path).with_context(|| format!("opening the capture {}", path.display()))?;
    let mut reader = PcapReader::new(BufReader::new(file)).with_context(|| {
        format!(
            "{} is not a pcap capture (write one with `tcpdump -w FILE`; pcapng is not read: \
             convert it with `editcap -F pcap`)",
            path.display()
        )
    })?;
    let link = reader.header().datalink;
    let mut seen = BTreeSet::new();
    let mut flows = Bounded::new(path, "holds", "flows");
    while let Some(packet) = reader.next_packet() {
        let packet = packet.with_context(|| format!("reading a packet of {}", path.display()))?;
        let Some(flow) = flow_of(link, &packet.data) else {
            continue;
        };
        if seen.insert(flow) {
            flows.push(flow)?;
        }
    }
    let flows = flows.finish(
        "no TCP or UDP packet over IPv4 or IPv6: capture the VIPs' traffic, e.g. `tcpdump -w \
         FILE -c 100000 dst host VIP`",
    )?;
    Ok(Clients::Flows(flows))
}

/// The 5-tuple of one captured frame, if it is TCP or UDP over IP.
fn flow_of(link: DataLink, data: &[u8]) -> Option<(SocketAddr, SocketAddr, u8)> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data).ok()?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data).ok()?,
        // Linux cooked capture (`tcpdump -i any`): a 16-byte header before the IP packet.
        DataLink::LINUX_SLL => SlicedPacket::from_ip(data.get(16..)?).ok()?,
        _ => return None,
    };
    let (source, destination): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let (sport, dport, proto) = match sliced.transport? {
        TransportSlice::Tcp(tcp) => (tcp.source_port(), tcp.destination_port(), 6),
        TransportSlice::Udp(udp) => (udp.source_port(), udp.destination_port(), 17),
        _ => return None,
    };
    Some((
        SocketAddr::new(source, sport),
        SocketAddr::new(destination, dport),
        proto,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that a client list takes addresses with optional counts and comments, folds
    /// IPv4-mapped addresses, and refuses a bad line naming the file, line and form.
    #[test]
    fn client_lists_are_read_with_counts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clients.txt");
        std::fs::write(
            &path,
            "# NAT pools\n198.51.100.7 250\n\n::ffff:198.51.100.8\n",
        )
        .unwrap();
        assert_eq!(
            read_addresses(&path).unwrap(),
            Clients::Addresses(vec![
                ("198.51.100.7".parse().unwrap(), 250),
                ("198.51.100.8".parse().unwrap(), 1)
            ])
        );
        std::fs::write(&path, "198.51.100.7\nnat-gw-1\n").unwrap();
        let err = format!("{:#}", read_addresses(&path).unwrap_err());
        assert!(
            err.contains("clients.txt:2") && err.contains("ADDRESS COUNT"),
            "{err}"
        );
        std::fs::write(&path, "198.51.100.7 0\n").unwrap();
        assert!(read_addresses(&path).is_err());
    }

    /// Test that a list or capture past `MAX_FLOWS` stops the read, and one that gives nothing
    /// is refused, each naming the file and the fix.
    #[test]
    fn samples_stop_past_the_limit_and_refuse_nothing() {
        let path = Path::new("capture.pcap");
        let mut flows = Bounded::new(path, "holds", "flows");
        for _ in 0..MAX_FLOWS {
            flows.push(()).expect("within the limit");
        }
        let err = flows.push(()).expect_err("past the limit").to_string();
        assert_eq!(
            err,
            format!("capture.pcap holds more than {MAX_FLOWS} flows: pass a sample")
        );
        let empty = Bounded::<()>::new(path, "holds", "flows").finish("no flow: capture some");
        assert_eq!(
            empty.expect_err("empty").to_string(),
            "capture.pcap holds no flow: capture some"
        );
    }
}
