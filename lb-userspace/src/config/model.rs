//! The validated config: plain typed values with every default applied, in file order. Only a
//! config without errors becomes a `Model`, so code that programs the kernel can trust it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use lb_common::{
    Config, VipKey, address,
    config::{CONFIG_FLOWS_AT_SYN, CONFIG_FLOWS_FIRST_ACK},
    flow::MAX_FLOW_TABLE_SIZE,
    proto,
    service::{VIP_FORWARD_IPIP, VIP_HASH_SOURCE_ONLY},
};
use serde::Deserialize;

use super::file;
use crate::{attach::AttachMode, capacity::Capacity};

pub use lb_common::flow::DEFAULT_FLOW_TABLE_SIZE;
/// `global.flow_table_size` bounds: at least one flow, at most the data plane's largest. The
/// table holds sets of 8 flows, a power of two of them.
pub const FLOW_TABLE_SIZE_RANGE: RangeInclusive<u32> = 1..=MAX_FLOW_TABLE_SIZE;
pub use crate::pins::{BPFFS_ROOT, DEFAULT_PIN_PATH};
pub const DEFAULT_METRICS_ADDRESS: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100);
pub const DEFAULT_MTU: u32 = Config::DEFAULT_MTU;
/// `global.mtu` bounds: 576 is the smallest datagram every IPv4 host must accept (RFC 791);
/// 9216 is the largest jumbo frame common NICs take.
pub const MTU_RANGE: RangeInclusive<u32> = 576..=9216;
/// How long a drained backend keeps its established flows before the daemon disables it: long
/// enough for most requests and keep-alive connections to finish.
pub const DEFAULT_DRAIN_TIMEOUT_SECONDS: u64 = 300;
/// `global.drain_timeout_seconds` bounds: at least a second, at most a day.
pub const DRAIN_TIMEOUT_SECONDS_RANGE: RangeInclusive<i64> = 1..=86_400;
pub const DEFAULT_MAX_BACKEND_SHARE: f64 = 0.5;
pub const DEFAULT_MIN_BACKENDS: u32 = 2;
/// How often the daemon audits the live maps (drift from its config, and where each VIP's new
/// flows go): a change made behind its back is found within this long.
pub const DEFAULT_AUDIT_INTERVAL_SECONDS: u64 = 60;
/// `audit.interval_seconds` bounds: at least a second, at most a day.
pub const AUDIT_INTERVAL_SECONDS_RANGE: RangeInclusive<i64> = 1..=86_400;
pub use lb_common::service::DEFAULT_TABLE_SIZE;
/// Maglev shares stay within about 1% of the weights with this many slots per backend.
pub const SLOTS_PER_BACKEND: u32 = 100;
pub const DEFAULT_WEIGHT: u32 = 1;
pub const DEFAULT_HTTP_PATH: &str = "/";
pub const DEFAULT_EXPECT_STATUS: u16 = 200;
/// `expect_status` bounds: the statuses HTTP defines (RFC 9110, section 15).
pub const HTTP_STATUS_RANGE: RangeInclusive<u16> = 100..=599;
pub const DEFAULT_INTERVAL_MS: u32 = 1000;
pub const DEFAULT_TIMEOUT_MS: u32 = 500;
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// `[alerts]` defaults. A 10 s window sees enough flows on a busy VIP to judge shares, yet
/// notices a skew within seconds.
pub const DEFAULT_ALERT_WINDOW_SECONDS: u64 = 10;
/// `alerts.window_seconds` bounds: at least a second, at most an hour.
pub const ALERT_WINDOW_SECONDS_RANGE: RangeInclusive<i64> = 1..=3600;
pub const DEFAULT_SKEW_FACTOR: f64 = 1.5;
pub const DEFAULT_MAX_SHARE: f64 = 0.9;
pub const DEFAULT_MIN_HEALTHY: u32 = 1;
/// `alerts.min_healthy` bounds: 0 would never fire; the model holds a `u32`.
pub const MIN_HEALTHY_RANGE: RangeInclusive<i64> = 1..=u32::MAX as i64;
/// Fewer new flows than this in a window say little about shares (a handful of flows is
/// skewed by chance).
pub const DEFAULT_MIN_NEW_FLOWS: u64 = 100;
/// `alerts.min_new_flows` bounds: 0 lets share alerts fire on any traffic.
pub const MIN_NEW_FLOWS_RANGE: RangeInclusive<i64> = 0..=i64::MAX;
/// A SYN flood multiplies a VIP's new flows many times over; ordinary peaks rarely reach 10x
/// the rate learned over the last minutes.
pub const DEFAULT_FLOOD_FACTOR: f64 = 10.0;
/// Below this many new flows per second a VIP's rate is no flood, whatever its normal rate.
pub const DEFAULT_FLOOD_MIN_RATE: u64 = 1000;
/// `alerts.flood_min_rate` bounds: 0 judges any rate against the normal one.
pub const FLOOD_MIN_RATE_RANGE: RangeInclusive<i64> = 0..=i64::MAX;
/// Any proven flow evicted is worth an alert: its connection breaks at the next backend change.
pub const DEFAULT_MAX_EVICTED_PROVEN: u64 = 0;
/// `alerts.max_evicted_proven` bounds.
pub const MAX_EVICTED_PROVEN_RANGE: RangeInclusive<i64> = 0..=i64::MAX;

/// A whole config that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub global: Global,
    pub audit: AuditThresholds,
    /// `[alerts]`, defaults when the table is absent.
    pub alerts: Alerts,
    /// `[bgp]`: none when the table is absent (no announcements).
    pub bgp: Option<Bgp>,
    /// `[capacity]`, defaults when the table is absent: what `xlb run` sizes the maps for.
    pub capacity: Capacity,
    /// In file order; shared with the check that judged them, so that the daemon's next
    /// check of a change to one VIP copies none of the others.
    pub vips: Vec<Arc<VipModel>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    pub interface: String,
    pub xdp_mode: AttachMode,
    pub flow_table_size: u32,
    /// When the flow table remembers a new flow.
    pub flow_admission: FlowAdmission,
    pub pin_path: PathBuf,
    pub metrics_address: SocketAddr,
    /// Largest IP packet `ipip` may emit.
    pub mtu: u32,
    /// Outer source of IPv4 tunnel headers, one address (/32) or a prefix the flows spread
    /// over; set whenever an `ipip` VIP has an IPv4 backend.
    pub ipip_source_v4: Option<Ipv4Net>,
    /// Outer source of IPv6 tunnel headers, likewise (a prefix spreads its last 32 bits).
    pub ipip_source_v6: Option<Ipv6Net>,
    /// How long a drained backend (`xlb backend drain`) keeps its established flows before the
    /// daemon disables it.
    pub drain_timeout: Duration,
}

/// Thresholds of the warnings, and how often the daemon audits the live maps (`[audit]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditThresholds {
    /// Warn (XLB002) when one server takes more than this share of a VIP's new flows.
    pub max_backend_share: f64,
    /// Warn (XLB001) when a VIP's table sends new flows to fewer servers than this.
    pub min_backends: u32,
    /// The daemon's scheduled live audit.
    pub interval: Duration,
}

impl Default for AuditThresholds {
    fn default() -> Self {
        AuditThresholds {
            max_backend_share: DEFAULT_MAX_BACKEND_SHARE,
            min_backends: DEFAULT_MIN_BACKENDS,
            interval: Duration::from_secs(DEFAULT_AUDIT_INTERVAL_SECONDS),
        }
    }
}

/// When the daemon raises an alert (`[alerts]`). Share alerts compare each backend's share of a
/// VIP's new flows over `window` with its expected share (its slots in the live table).
#[derive(Clone, Debug, PartialEq)]
pub struct Alerts {
    /// The sliding window of the skew detector.
    pub window: Duration,
    /// Alert when a backend's observed share exceeds its expected share by this factor; above 1.
    pub skew_factor: f64,
    /// Alert when one backend takes more than this share of a VIP's new flows while other
    /// backends are healthy; in (0, 1].
    pub max_share: f64,
    /// Alert when a VIP has fewer healthy backends than this; at least 1.
    pub min_healthy: u32,
    /// Below this many new flows of a VIP in a window, its share alerts stay quiet.
    pub min_new_flows: u64,
    /// `flood`: a VIP's new flows per second exceed its normal rate by this factor; above 1.
    pub flood_factor: f64,
    /// `flood` stays quiet below this many new flows per second.
    pub flood_min_rate: u64,
    /// `evictions`: more flows that had proved themselves were evicted in a window than this.
    pub max_evicted_proven: u64,
    /// Run with `sh -c` when an alert starts or stops firing; never empty.
    pub command: Option<String>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            window: Duration::from_secs(DEFAULT_ALERT_WINDOW_SECONDS),
            skew_factor: DEFAULT_SKEW_FACTOR,
            max_share: DEFAULT_MAX_SHARE,
            min_healthy: DEFAULT_MIN_HEALTHY,
            min_new_flows: DEFAULT_MIN_NEW_FLOWS,
            flood_factor: DEFAULT_FLOOD_FACTOR,
            flood_min_rate: DEFAULT_FLOOD_MIN_RATE,
            max_evicted_proven: DEFAULT_MAX_EVICTED_PROVEN,
            command: None,
        }
    }
}

/// BIRD's control socket when `[bgp]` names none (Debian's bird2 package uses it).
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";

/// How the daemon announces its VIPs (`[bgp]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Bgp {
    /// The BIRD include file the daemon writes (atomically): the static protocols
    /// `xlb_vips4` and `xlb_vips6`, a `blackhole` route for each announced VIP address.
    pub routes_file: PathBuf,
    /// Run after each rewrite.
    pub reload: Reload,
}

/// How the daemon makes BIRD re-read the routes file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    /// `birdc -s SOCKET configure`, run with an argument vector: no shell ever reads the
    /// socket path.
    Birdc { socket: PathBuf },
    /// The config author's `reload_command`, run with `sh -c`.
    Shell { command: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipModel {
    /// Unique, `[a-z0-9-]+`.
    pub name: String,
    pub address: IpAddr,
    /// 0: every port of `address` and `protocol` not claimed by a more specific VIP.
    pub port: u16,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub hash: HashMode,
    /// Maglev table size: a prime.
    pub table_size: u32,
    /// In file order; at least one has a positive weight.
    pub backends: Vec<BackendModel>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => proto::TCP,
            Protocol::Udp => proto::UDP,
        }
    }
}

/// When the flow table remembers a new flow (`global.flow_admission`; README, "SYN floods").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowAdmission {
    /// At its SYN, but only in a slot no flow that sent more than a SYN holds: a SYN flood
    /// churns those slots and never evicts an established flow.
    #[default]
    Protect,
    /// At its first packet after the SYN: SYNs never write the table.
    FirstAck,
    /// At its SYN, second chance over every slot: the policy before SYN-flood protection.
    Syn,
}

impl FlowAdmission {
    pub const ALL: [FlowAdmission; 3] = [
        FlowAdmission::Protect,
        FlowAdmission::FirstAck,
        FlowAdmission::Syn,
    ];

    /// As in the config file.
    pub fn name(self) -> &'static str {
        match self {
            FlowAdmission::Protect => "protect",
            FlowAdmission::FirstAck => "first_ack",
            FlowAdmission::Syn => "syn",
        }
    }

    /// Its `CONFIG_FLOWS_*` bits of `Config::flags`.
    pub fn flags(self) -> u32 {
        match self {
            FlowAdmission::Protect => 0,
            FlowAdmission::FirstAck => CONFIG_FLOWS_FIRST_ACK,
            FlowAdmission::Syn => CONFIG_FLOWS_AT_SYN,
        }
    }

    /// The policy the kernel follows under config `flags` (`syn` wins if both bits are set, as
    /// in [`lb_common::flow::admission`]).
    pub fn from_flags(flags: u32) -> FlowAdmission {
        if flags & CONFIG_FLOWS_AT_SYN != 0 {
            FlowAdmission::Syn
        } else if flags & CONFIG_FLOWS_FIRST_ACK != 0 {
            FlowAdmission::FirstAck
        } else {
            FlowAdmission::Protect
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Rewrite the destination MAC; the backend answers the client directly.
    #[default]
    Dsr,
    /// Encapsulate in an IP tunnel to the backend.
    Ipip,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum HashMode {
    /// Source and destination address and port and the protocol.
    #[default]
    #[serde(rename = "5-tuple")]
    FiveTuple,
    /// The source address only: a client sticks to one backend across connections.
    #[serde(rename = "source")]
    Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendModel {
    pub address: IpAddr,
    /// Relative share of the VIP's table; 0 drains the backend from the table.
    pub weight: u32,
    /// Destination MAC: the backend's own (`dsr`) or the next hop's towards it (`ipip`).
    pub mac: [u8; 6],
    pub health: Option<HealthCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub check: CheckKind,
    /// The VIP's port unless given (always given for a port-0 VIP).
    pub port: u16,
    pub interval: Duration,
    /// Below `interval`.
    pub timeout: Duration,
    /// Consecutive successes that bring a backend up.
    pub rise: u32,
    /// Consecutive failures that take a backend down.
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// A GET of `path` answers `expect_status`.
    Http { path: String, expect_status: u16 },
}

impl VipModel {
    /// The key of this VIP in the service map.
    pub fn key(&self) -> VipKey {
        let (addr, family) = address::to_kernel(self.address);
        VipKey {
            addr,
            port: self.port.to_be(),
            proto: self.protocol.number(),
            family,
        }
    }

    /// The `VIP_*` flags of this VIP.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.hash == HashMode::Source {
            flags |= VIP_HASH_SOURCE_ONLY;
        }
        if self.forwarding == Forwarding::Ipip {
            flags |= VIP_FORWARD_IPIP;
        }
        flags
    }
}

impl Global {
    /// The data plane's run-time settings (debug logging off).
    pub fn kernel_config(&self) -> Config {
        Config {
            flags: self.flow_admission.flags(),
            mtu: self.mtu,
            ipip_src_v4: self.ipip_source_v4.map_or([0; 4], |n| n.network().octets()),
            ipip_src_v6: self
                .ipip_source_v6
                .map_or([0; 16], |n| n.network().octets()),
            ipip_src_v4_hosts: self
                .ipip_source_v4
                .map_or([0; 4], |n| n.hostmask().octets()),
            ipip_src_v6_hosts: self
                .ipip_source_v6
                .map_or([0; 4], |n| n.hostmask().octets()[12..].try_into().unwrap()),
        }
    }
}

/// The attach mode `global.xdp_mode` asks for (native unless given).
pub(crate) fn xdp_mode(mode: Option<file::XdpMode>) -> AttachMode {
    match mode {
        None | Some(file::XdpMode::Native) => AttachMode::Native,
        Some(file::XdpMode::Generic) => AttachMode::Generic,
        Some(file::XdpMode::Auto) => AttachMode::Auto,
    }
}

/// `[capacity]` bounds. VIPs and backends per VIP up to 65,536 each, at most 2^24 backends
/// in all; a table of at most the data plane's largest, and all the tables' copies together at
/// most 2^32 slots (16 GiB).
pub const CAPACITY_VIPS_RANGE: RangeInclusive<i64> = 1..=65_536;
pub const CAPACITY_BACKENDS_PER_VIP_RANGE: RangeInclusive<i64> = 1..=65_536;
pub const CAPACITY_TABLE_SLOTS_RANGE: RangeInclusive<i64> =
    1..=lb_common::service::MAX_TABLE_SIZE as i64;
pub const CAPACITY_MAX_BACKENDS: u64 = 1 << 24;
pub const CAPACITY_MAX_SLOTS: u64 = 1 << 32;

/// The value of an optional field, if given.
pub(crate) fn value<T: Copy>(field: &Option<toml::Spanned<T>>) -> Option<T> {
    field.as_ref().map(|spanned| *spanned.get_ref())
}
