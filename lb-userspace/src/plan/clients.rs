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

use anyhow::{Context as _, bail};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::{DataLink, pcap::PcapReader};

/// Longest client list or capture read: a sample, not an archive.
const MAX_FLOWS: usize = 1_000_000;

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
    let mut clients = Vec::new();
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
        clients.push((address.to_canonical(), count));
        if clients.len() > MAX_FLOWS {
            bail!(
                "{} lists more than {MAX_FLOWS} clients: pass a sample",
                path.display()
            );
        }
    }
    if clients.is_empty() {
        bail!(
            "{} lists no client: write one address per line (`ADDRESS` or `ADDRESS COUNT`)",
            path.display()
        );
    }
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
    let mut flows = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.with_context(|| format!("reading a packet of {}", path.display()))?;
        let Some(flow) = flow_of(link, &packet.data) else {
            continue;
        };
        if seen.insert(flow) {
            flows.push(flow);
            if flows.len() > MAX_FLOWS {
                bail!(
                    "{} holds more than {MAX_FLOWS} flows: pass a sample",
                    path.display()
                );
            }
        }
    }
    if flows.is_empty() {
        bail!(
            "{} holds no TCP or UDP packet over IPv4 or IPv6: capture the VIPs' traffic, e.g. \
             `tcpdump -w FILE -c 100000 dst host VIP`",
            path.display()
        );
    }
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
}
