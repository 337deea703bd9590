//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers") as `VipKey::proto`,
//! `FlowKey::proto` and the headers carry them.

pub const ICMP: u8 = 1;
/// An IPv4 packet inside IP (RFC 2003).
pub const IPIP: u8 = 4;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
/// An IPv6 packet inside IP (RFC 2473, 4213).
pub const IPV6: u8 = 41;
/// The IPv6 fragment extension header.
pub const FRAGMENT: u8 = 44;
pub const ICMPV6: u8 = 58;

/// The protocols a VIP may have, by the lowercase names the config and the CLI give them.
pub const VIP_PROTOCOLS: [(&str, u8); 2] = [("tcp", TCP), ("udp", UDP)];

/// The name of a VIP protocol number.
pub fn name(proto: u8) -> Option<&'static str> {
    VIP_PROTOCOLS
        .iter()
        .find(|&&(_, number)| number == proto)
        .map(|&(name, _)| name)
}

/// The number of a VIP protocol name.
pub fn number(name: &str) -> Option<u8> {
    VIP_PROTOCOLS
        .iter()
        .find(|&&(known, _)| known == name)
        .map(|&(_, number)| number)
}
