//! The program's run-time settings (`[global]`: flow admission, MTU, tunnel sources), desired
//! against live: compared once, here; `plan` prints the result, `audit` reports it as drift and
//! `apply` writes the settings only when it is not empty.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::Config;
use serde::Serialize;

use crate::config::FlowAdmission;

/// A run-time setting of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    FlowAdmission,
    Mtu,
    IpipSourceV4,
    IpipSourceV6,
}

impl Setting {
    const ALL: [Setting; 4] = [
        Setting::FlowAdmission,
        Setting::Mtu,
        Setting::IpipSourceV4,
        Setting::IpipSourceV6,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Setting::FlowAdmission => "flow_admission",
            Setting::Mtu => "mtu",
            Setting::IpipSourceV4 => "ipip_source_v4",
            Setting::IpipSourceV6 => "ipip_source_v6",
        }
    }

    /// Its value in `config` as the kernel reads it, as text: two configs the kernel reads
    /// alike show the same.
    fn value(self, config: &Config) -> String {
        match self {
            Setting::FlowAdmission => FlowAdmission::from_flags(config.flags).name().to_owned(),
            // The kernel reads an MTU of 0 as the default.
            Setting::Mtu => match config.mtu {
                0 => Config::DEFAULT_MTU,
                mtu => mtu,
            }
            .to_string(),
            Setting::IpipSourceV4 => source(
                Ipv4Addr::from(config.ipip_src_v4).into(),
                config.ipip_src_v4_hosts,
            ),
            Setting::IpipSourceV6 => source(
                Ipv6Addr::from(config.ipip_src_v6).into(),
                config.ipip_src_v6_hosts,
            ),
        }
    }
}

/// A tunnel source: `unset`, one address, or a prefix as its network and length.
fn source(address: IpAddr, hosts: [u8; 4]) -> String {
    let full = if address.is_ipv4() { 32 } else { 128 };
    match u32::from_be_bytes(hosts).count_ones() {
        _ if address.is_unspecified() => "unset".to_owned(),
        0 => address.to_string(),
        bits => format!("{address}/{}", full - bits),
    }
}

/// A setting that differs: live, and as desired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingDiff {
    pub setting: Setting,
    pub live: String,
    pub desired: String,
}

/// The settings that differ between `live` and `desired`. The debug flag is not among them:
/// it is switched at run time and an apply keeps it.
pub fn settings(live: &Config, desired: &Config) -> Vec<SettingDiff> {
    Setting::ALL
        .into_iter()
        .map(|setting| SettingDiff {
            setting,
            live: setting.value(live),
            desired: setting.value(desired),
        })
        .filter(|diff| diff.live != diff.desired)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_compare_as_the_kernel_reads_them() {
        // Test that an MTU of 0 equals the default, and that a tunnel source prefix and a
        // flow admission change are each reported once, with both values.
        let live = Config {
            mtu: 0,
            ..Config::default()
        };
        let same = Config {
            mtu: Config::DEFAULT_MTU,
            ..Config::default()
        };
        assert_eq!(settings(&live, &same), []);
        let desired = Config {
            ipip_src_v4: [198, 18, 0, 0],
            ipip_src_v4_hosts: [0, 0, 0, 3],
            flags: FlowAdmission::FirstAck.flags(),
            ..same
        };
        let diffs = settings(&live, &desired);
        let found: Vec<(Setting, &str, &str)> = diffs
            .iter()
            .map(|d| (d.setting, d.live.as_str(), d.desired.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Setting::FlowAdmission, "protect", "first_ack"),
                (Setting::IpipSourceV4, "unset", "198.18.0.0/30")
            ]
        );
    }
}
