//! Addresses as map keys and values hold them: 16 bytes in network order with the IPv4
//! address in the first 4, beside a `FAMILY_*` byte; and MAC addresses as xlb prints them.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

use crate::service::{FAMILY_IPV4, FAMILY_IPV6};

/// The kernel's form of `address`: its 16 address bytes and its family.
pub fn to_kernel(address: IpAddr) -> ([u8; 16], u8) {
    match address {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (bytes, FAMILY_IPV4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_IPV6),
    }
}

/// The address the kernel's `bytes` of `family` hold (anything but [`FAMILY_IPV4`] is IPv6).
pub fn from_kernel(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_IPV4 {
        let [a, b, c, d, ..] = *bytes;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    } else {
        IpAddr::from(*bytes)
    }
}

/// Shows a MAC address in lowercase colon-separated form: `02:00:00:00:01:0a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv6Addr;

    #[test]
    fn kernel_form_round_trips_both_families() {
        // Test that IPv4 fills the first 4 bytes with the rest zero, and both families come
        // back unchanged.
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
        let (bytes, family) = to_kernel(v4);
        assert_eq!(family, FAMILY_IPV4);
        assert_eq!(bytes[..4], [198, 18, 0, 10]);
        assert!(bytes[4..].iter().all(|&b| b == 0));
        assert_eq!(from_kernel(&bytes, family), v4);
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let (bytes, family) = to_kernel(v6);
        assert_eq!(family, FAMILY_IPV6);
        assert_eq!(from_kernel(&bytes, family), v6);
    }
}
