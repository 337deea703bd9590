//! The config file as written: serde types that keep every value's position (`Spanned`), so
//! each finding can point at the line and column of the value it is about.
//!
//! Only the shape is checked here (field names, types, enum values, address and MAC syntax);
//! whether the values make sense together is `audit`'s job. An absent optional field is `None`,
//! and its default is applied by the model.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, de::Error as _};
use toml::Spanned;

use super::model::{FlowAdmission, Forwarding, HashMode, Protocol};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub global: Spanned<GlobalFile>,
    pub audit: Option<Spanned<AuditFile>>,
    pub alerts: Option<Spanned<AlertsFile>>,
    pub bgp: Option<Spanned<BgpFile>>,
    pub capacity: Option<Spanned<CapacityFile>>,
    /// Shared: a reparse keeps the VIPs whose text did not change, and the file it gives
    /// shares them rather than copying their backends (see `reparse`).
    #[serde(default, deserialize_with = "shared")]
    pub vip: Vec<Arc<Spanned<VipFile>>>,
}

/// A list of `T`, each in an [`Arc`]: deserialized exactly as `Vec<T>` is.
fn shared<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<Arc<T>>, D::Error> {
    Ok(Vec::<T>::deserialize(deserializer)?
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// `[capacity]`: what the program's maps are sized for when `xlb run` loads it. Signed, so a
/// negative or oversized value is XLB028 with the range rather than a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityFile {
    pub vips: Option<Spanned<i64>>,
    pub backends_per_vip: Option<Spanned<i64>>,
    pub table_slots: Option<Spanned<i64>>,
}

/// `[bgp]`: announce VIPs through BIRD 2. The daemon writes `routes_file` (a BIRD include file)
/// and runs the reload command whenever the set of announced VIPs changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpFile {
    pub routes_file: Spanned<String>,
    /// BIRD's control socket, for the default reload command `birdc -s SOCKET configure`.
    pub socket: Option<Spanned<String>>,
    /// Run with `sh -c` instead of the default; excludes `socket`.
    pub reload_command: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalFile {
    pub interface: Spanned<String>,
    pub xdp_mode: Option<Spanned<XdpMode>>,
    pub flow_table_size: Option<Spanned<u32>>,
    pub flow_admission: Option<Spanned<FlowAdmission>>,
    pub pin_path: Option<Spanned<String>>,
    /// A string, parsed by the audit: a bad metrics address is XLB014 bad-global, not XLB000.
    pub metrics_address: Option<Spanned<String>>,
    pub mtu: Option<Spanned<u32>>,
    pub ipip_source_v4: Option<Spanned<Ipv4>>,
    pub ipip_source_v6: Option<Spanned<Ipv6>>,
    /// Signed, so a negative value is reported by the audit with the range (XLB014) rather than
    /// as a type error.
    pub drain_timeout_seconds: Option<Spanned<i64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Native,
    Generic,
    Auto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub max_backend_share: Option<Spanned<f64>>,
    pub min_backends: Option<Spanned<u32>>,
    /// Signed, so a negative value is XLB014 with the range rather than a type error.
    pub interval_seconds: Option<Spanned<i64>>,
}

/// `[alerts]`: the daemon's skew and health alerts. The integers are `i64` (any TOML integer) so
/// that every out-of-range value, negative ones included, is XLB015 with the allowed range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    pub window_seconds: Option<Spanned<i64>>,
    pub skew_factor: Option<Spanned<f64>>,
    pub max_share: Option<Spanned<f64>>,
    pub min_healthy: Option<Spanned<i64>>,
    pub min_new_flows: Option<Spanned<i64>>,
    pub flood_factor: Option<Spanned<f64>>,
    pub flood_min_rate: Option<Spanned<i64>>,
    pub max_evicted_proven: Option<Spanned<i64>>,
    pub command: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipFile {
    pub name: Spanned<Name>,
    pub address: Spanned<Ip>,
    pub port: Spanned<u16>,
    pub protocol: Spanned<Protocol>,
    pub forwarding: Option<Spanned<Forwarding>>,
    pub hash: Option<Spanned<HashMode>>,
    pub table_size: Option<Spanned<u32>>,
    /// With `hash = "source"`: the operator checked the spread over the real client mix (`xlb
    /// plan --clients`), which silences XLB027.
    pub source_hash_checked: Option<Spanned<bool>>,
    #[serde(default)]
    pub backend: Vec<Spanned<BackendFile>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub address: Spanned<Ip>,
    pub weight: Option<Spanned<u32>>,
    pub mac: Option<Spanned<Mac>>,
    pub health: Option<Spanned<HealthFile>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub check: Spanned<Check>,
    pub port: Option<Spanned<u16>>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<u16>>,
    pub interval_ms: Option<Spanned<u32>>,
    pub timeout_ms: Option<Spanned<u32>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Tcp,
    Http,
}

/// Deserializes a string with `parse`, or fails with "`"value"` is not `what`".
fn parse_string<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).ok_or_else(|| D::Error::custom(format!("{text:?} is not {what}")))
}

/// A VIP name: what counters, logs and other verbs call the VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(pub String);

/// The longest name: names become metric labels and command-line arguments.
pub const MAX_NAME_LEN: usize = 63;

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Names appear in metric labels, pin paths and command lines: keep them to a set that
        // needs no quoting anywhere.
        parse_string(
            deserializer,
            "a valid name (1 to 63 lowercase letters, digits and '-')",
            |text| {
                let valid = (1..=MAX_NAME_LEN).contains(&text.len())
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                valid.then(|| Name(text.to_owned()))
            },
        )
    }
}

/// An IPv4 or IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "an IPv4 or IPv6 address", |text| {
            text.parse().ok().map(Ip)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4(pub Ipv4Net);

impl<'de> Deserialize<'de> for Ipv4 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "an IPv4 address or prefix", |text| {
            let one = |addr: Ipv4Addr| Ipv4Net::from(addr);
            text.parse()
                .ok()
                .map(one)
                .or_else(|| text.parse().ok())
                .map(Ipv4)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6(pub Ipv6Net);

impl<'de> Deserialize<'de> for Ipv6 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "an IPv6 address or prefix", |text| {
            let one = |addr: Ipv6Addr| Ipv6Net::from(addr);
            text.parse()
                .ok()
                .map(one)
                .or_else(|| text.parse().ok())
                .map(Ipv6)
        })
    }
}

/// An Ethernet address written as six hex bytes separated by colons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_string(deserializer, "a MAC address", parse_mac)
    }
}

/// `02:00:00:00:01:00` (either case; `-` also separates, as some tools print it).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        // from_str_radix alone would take "+2".
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(Mac(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_need_six_two_digit_hex_bytes() {
        // Test that a MAC parses with colons or dashes and nothing short, long or odd does.
        assert_eq!(
            parse_mac("02:00:00:00:01:0a"),
            Some(Mac([2, 0, 0, 0, 1, 10]))
        );
        assert_eq!(
            parse_mac("02-00-00-00-01-0A"),
            Some(Mac([2, 0, 0, 0, 1, 10]))
        );
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:00:00",
            "2:00:00:00:01:00",
            "02:00:00:00:01:0g",
            "+2:00:00:00:01:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
