//! `xlb status`: what is pinned, where it is attached, which config generation is live, and
//! each VIP's table with a fingerprint that is equal on every node running the same config.

use std::path::Path;

use anyhow::Context as _;
use lb_common::{
    Backend, Vip, VipKey,
    meta::{ATTACH_GENERIC, ATTACH_NATIVE, Meta},
    service::{VIP_FORWARD_IPIP, VIP_HASH_SOURCE_ONLY},
};
use serde::Serialize;

use crate::{
    capacity::Capacity,
    live::{BackendState, Snapshot},
    maps::Maps,
    pins,
    rollout::describe_vip,
    steering,
};

/// Name of the program pin under the pin directory (as `pins::pin` writes it).
const PROGRAM_PIN: &str = "prog";

/// The state of the xlb pinned under `pin_path`, each VIP named as its last apply named it.
pub fn read_named(pin_path: &Path) -> anyhow::Result<Status> {
    let mut status = read(pin_path)?;
    let names = crate::names::read(pin_path);
    for vip in &mut status.vips {
        vip.entry.name_from(&names);
    }
    Ok(status)
}

/// The state of the xlb pinned under one directory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub pin_path: String,
    /// The XDP program is pinned (`xlb run --config` pins it).
    pub program_pinned: bool,
    /// The XDP link is pinned: the program stays attached without a process.
    pub link_pinned: bool,
    /// Interface index the program was attached to by `xlb run`; 0: not attached by it.
    pub ifindex: u32,
    /// The interface's name as `xlb run` recorded it; `None` when not attached.
    pub interface: Option<String>,
    /// `native`, `generic`, or `None` when not attached by `xlb run`.
    pub attach_mode: Option<&'static str>,
    /// 0: nothing applied yet.
    pub generation: u64,
    /// When the generation was applied, RFC 3339 UTC; `None` for generation 0.
    pub applied_at: Option<String>,
    /// The same instant, seconds since the Unix epoch (0 for generation 0).
    pub applied_at_unix: u64,
    /// [`crate::config::hash`] (XXH3-64) of the applied config file, 16 hex digits.
    pub config_hash: String,
    pub capacity: CapacityStatus,
    /// Sorted by VIP key.
    pub vips: Vec<VipStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CapacityStatus {
    pub vips: u32,
    pub backends_per_vip: u32,
    pub table_slots: u32,
}

/// A live VIP entry as the verbs show it (`status` lists them, `explain` names the one a flow
/// matched): one shape, built from the kernel's key and value by [`VipEntry::of`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipEntry {
    /// `address:port/protocol` (port 0 for an all-ports VIP).
    pub vip: String,
    /// The VIP's name in the config last applied (see [`crate::names`]).
    pub name: Option<String>,
    pub id: u32,
    /// `dsr` or `ipip`.
    pub forwarding: &'static str,
    /// `5-tuple` or `source`, as in the config file.
    pub hash: &'static str,
    pub table_size: u32,
    /// Which of the two table copies is live (0 or 1).
    pub active_copy: u32,
}

impl VipEntry {
    /// The entry `vip` stored under `key`; unnamed until [`VipEntry::name_from`].
    pub fn of(key: &VipKey, vip: &Vip) -> VipEntry {
        VipEntry {
            vip: describe_vip(key),
            name: None,
            id: vip.id,
            forwarding: forwarding_name(vip.flags),
            hash: hash_name(vip.flags),
            table_size: vip.table_size,
            active_copy: vip.active,
        }
    }

    /// Names the entry as the last apply named its VIP.
    pub fn name_from(&mut self, names: &crate::names::Names) {
        self.name = names.name_of(&self.vip);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipStatus {
    #[serde(flatten)]
    pub entry: VipEntry,
    pub backends: BackendCounts,
    /// [`fingerprint`] of the live table, 16 hex digits.
    pub fingerprint: String,
    /// The canary apply being watched on this VIP: its slice and time left.
    pub canary: Option<crate::canary::VipCanary>,
}

/// A VIP's status reads its entry's fields as its own, as its JSON shows them.
impl std::ops::Deref for VipStatus {
    type Target = VipEntry;

    fn deref(&self) -> &VipEntry {
        &self.entry
    }
}

/// A VIP's backends by operator state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackendCounts {
    pub total: u32,
    pub active: u32,
    pub drained: u32,
    /// Disabled by an operator or a drain timeout (or inactive for no recorded reason).
    pub disabled: u32,
    /// Out after failing health checks.
    pub unhealthy: u32,
}

/// The status of the xlb pinned under `pin_path`; a [`crate::exit::NotLoaded`] error if none is.
pub fn read(pin_path: &Path) -> anyhow::Result<Status> {
    let mut maps = pins::open(pin_path)?;
    collect(&mut maps, pin_path)
}

/// The status of the program behind `maps`, pinned under `pin_path`.
pub fn collect(maps: &mut (impl Maps + ?Sized), pin_path: &Path) -> anyhow::Result<Status> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let meta = snapshot.meta;
    let fingerprints = live_fingerprints(maps, &snapshot)?;
    let mut vips = Vec::new();
    for ((key, vip), fingerprint) in snapshot.vips.iter().zip(fingerprints) {
        let mut backends = BackendCounts::default();
        for backend in live_backends(&snapshot, &capacity, vip.id).map(|(_, b)| b) {
            backends.total += 1;
            match BackendState::of(backend) {
                BackendState::Active => backends.active += 1,
                BackendState::Drained => backends.drained += 1,
                BackendState::Unhealthy => backends.unhealthy += 1,
                BackendState::Disabled | BackendState::Inactive | BackendState::Unused => {
                    backends.disabled += 1
                }
            }
        }
        vips.push(VipStatus {
            entry: VipEntry::of(key, vip),
            backends,
            fingerprint: format!("{fingerprint:016x}"),
            canary: crate::canary::of_vip(&snapshot, vip, crate::canary::now_unix()),
        });
    }
    let attach_mode = match meta.attach_mode {
        ATTACH_NATIVE => Some("native"),
        ATTACH_GENERIC => Some("generic"),
        _ => None,
    };
    Ok(Status {
        pin_path: pin_path.display().to_string(),
        program_pinned: pin_path.join(PROGRAM_PIN).exists(),
        link_pinned: pins::link_path(pin_path).exists(),
        ifindex: meta.ifindex,
        interface: interface_name(&meta),
        attach_mode,
        generation: meta.generation,
        applied_at: (meta.generation > 0).then(|| rfc3339(meta.applied_at)),
        applied_at_unix: meta.applied_at,
        config_hash: format!("{:016x}", meta.config_hash),
        capacity: CapacityStatus {
            vips: capacity.vips,
            backends_per_vip: capacity.backends_per_vip,
            table_slots: capacity.table_slots,
        },
        vips,
    })
}

/// The fingerprint of each live VIP's active table, in the snapshot's order, all read through
/// one mapping of the slot map.
fn live_fingerprints(maps: &(impl Maps + ?Sized), snapshot: &Snapshot) -> anyhow::Result<Vec<u64>> {
    let live: Vec<(u32, u32)> = snapshot
        .vips
        .iter()
        .map(|(_, vip)| vip.live_table())
        .collect();
    steering::map_tables(maps, &live, |_, table| {
        fingerprint(table, &snapshot.backends)
    })
    .context("reading the live tables")
}

/// Each live VIP's `describe_vip` label and table fingerprint.
pub fn fingerprints(maps: &mut (impl Maps + ?Sized)) -> anyhow::Result<Vec<(String, String)>> {
    let snapshot = Snapshot::read(maps)?;
    let labels = snapshot.vips.iter().map(|(key, _)| describe_vip(key));
    Ok(labels
        .zip(live_fingerprints(maps, &snapshot)?)
        .map(|(label, fingerprint)| (label, format!("{fingerprint:016x}")))
        .collect())
}

/// The backends VIP `id` has (non-empty entries of its id range), with their ids.
pub fn live_backends<'a>(
    snapshot: &'a Snapshot,
    capacity: &Capacity,
    id: u32,
) -> impl Iterator<Item = (u32, &'a Backend)> + 'a {
    capacity
        .backend_ids(id)
        .filter_map(|id| Some((id, snapshot.backends.get(id as usize)?)))
        .filter(|(_, backend)| **backend != Backend::default())
}

/// `dsr` or `ipip`, from `Vip::flags`.
pub fn forwarding_name(flags: u32) -> &'static str {
    if flags & VIP_FORWARD_IPIP != 0 {
        "ipip"
    } else {
        "dsr"
    }
}

/// `5-tuple` or `source`, from `Vip::flags`.
pub fn hash_name(flags: u32) -> &'static str {
    if flags & VIP_HASH_SOURCE_ONLY != 0 {
        "source"
    } else {
        "5-tuple"
    }
}

/// FNV-1a 64 over each slot's owner: the backend's address bytes and family (17 zero bytes
/// for a slot with no backend). Backend ids are local allocations (two nodes may number the
/// same backend differently); the owner per slot is what decides where a flow goes, so nodes
/// steering alike have equal fingerprints.
pub fn fingerprint(table: &[u32], backends: &[Backend]) -> u64 {
    // Each id's owner compiled once ([`OwnerSteps`]) over the span of ids the table holds (a
    // VIP's own few); ids beyond the backend map own nothing.
    let in_map = || {
        table
            .iter()
            .copied()
            .filter(|&id| (id as usize) < backends.len())
    };
    let low = in_map().min().unwrap_or(0);
    let high = in_map().max().unwrap_or(0);
    let none = OwnerSteps::of(&Backend::default());
    if high - low >= DENSE_SPAN {
        return table.iter().fold(OFFSET_BASIS, |hash, &id| {
            backends.get(id as usize).map_or_else(
                || none.apply(hash),
                |owner| OwnerSteps::of(owner).apply(hash),
            )
        });
    }
    let owners: Vec<OwnerSteps> = backends
        .get(low as usize..=high as usize)
        .unwrap_or_default()
        .iter()
        .map(OwnerSteps::of)
        .collect();
    // An id beyond the map lies beyond `high` too, so outside `owners`.
    table.iter().fold(OFFSET_BASIS, |hash, &id| {
        owners
            .get(id.wrapping_sub(low) as usize)
            .unwrap_or(&none)
            .apply(hash)
    })
}

/// The widest span of ids [`fingerprint`] compiles owners for at once (a VIP owns far fewer).
const DENSE_SPAN: u32 = 1 << 12;
const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

/// A slot owner's 17 bytes as FNV-1a steps `hash = (hash ^ byte) * factor`: XOR with a zero
/// byte changes nothing, so each run of zeros folds into the factor of the step before it
/// (`PRIME` to the run's length + 1). An IPv4 owner takes 5 multiplications instead of 17, and
/// the hash is the same: `fingerprint` costs one dependent multiplication per step.
struct OwnerSteps {
    steps: [(u64, u64); 17],
    len: usize,
}

impl OwnerSteps {
    fn of(owner: &Backend) -> OwnerSteps {
        let mut steps = [(0u64, 0u64); 17];
        let mut len = 0;
        for byte in owner.addr.into_iter().chain([owner.family]) {
            if byte == 0 && len > 0 {
                steps[len - 1].1 = steps[len - 1].1.wrapping_mul(PRIME);
            } else {
                steps[len] = (u64::from(byte), PRIME);
                len += 1;
            }
        }
        OwnerSteps { steps, len }
    }

    fn apply(&self, hash: u64) -> u64 {
        self.steps[..self.len]
            .iter()
            .fold(hash, |hash, &(byte, factor)| {
                (hash ^ byte).wrapping_mul(factor)
            })
    }
}

/// `secs` since the Unix epoch as RFC 3339 UTC, e.g. `2023-11-14T22:13:20Z`. An instant
/// after 9999 (which RFC 3339's four-digit year cannot write) shows as the last one it can.
pub fn rfc3339(secs: u64) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST: i64 = 253_402_300_799;
    let secs = i64::try_from(secs).map_or(LAST, |secs| secs.min(LAST));
    let instant = time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("every instant from 1970 to 9999 is in time's range");
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC instant up to 9999 is an RFC 3339 date")
}

/// The interface name `xlb run` recorded when it attached (an index means nothing outside
/// the network namespace it attached in).
fn interface_name(meta: &Meta) -> Option<String> {
    let len = meta
        .interface
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(meta.interface.len());
    (meta.ifindex != 0 && len > 0)
        .then(|| String::from_utf8_lossy(&meta.interface[..len]).into_owned())
}

/// `status` for people: the facts, one per line, then a table of VIPs.
pub fn render(status: &Status) -> String {
    let pinned = |yes: bool| if yes { "pinned" } else { "not pinned" };
    let attached = match (status.ifindex, &status.interface) {
        (0, _) => "not attached by xlb run".to_owned(),
        (index, Some(name)) => format!(
            "{name} (ifindex {index}), {} mode",
            status.attach_mode.unwrap_or("unknown")
        ),
        (index, None) => format!("ifindex {index} (name not recorded)"),
    };
    let generation = match &status.applied_at {
        None => "0 (no config applied yet: run `xlb apply FILE`)".to_owned(),
        Some(at) => format!("{}, applied {at}", status.generation),
    };
    let capacity = &status.capacity;
    let facts = [
        ("pin path", status.pin_path.clone()),
        ("program", pinned(status.program_pinned).to_owned()),
        ("link", pinned(status.link_pinned).to_owned()),
        ("attached", attached),
        ("generation", generation),
        ("config hash", status.config_hash.clone()),
        (
            "capacity",
            format!(
                "{} VIPs, {} backends per VIP, tables up to {} slots",
                capacity.vips, capacity.backends_per_vip, capacity.table_slots
            ),
        ),
    ];
    let mut out = String::new();
    for (name, value) in facts {
        out += &format!("{name:<12} {value}\n");
    }
    if status.vips.is_empty() {
        out += "no VIPs\n";
        return out;
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = status
        .vips
        .iter()
        .map(|vip| {
            let b = &vip.backends;
            vec![
                crate::names::label(&vip.vip, vip.name.as_deref()),
                vip.forwarding.to_owned(),
                vip.hash.to_owned(),
                vip.table_size.to_string(),
                vip.active_copy.to_string(),
                b.total.to_string(),
                format!("{}/{}/{}/{}", b.active, b.drained, b.disabled, b.unhealthy),
                vip.fingerprint.clone(),
                vip.canary
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
            ]
        })
        .collect();
    out += &table(
        &[
            ("vip", false),
            ("forwarding", false),
            ("hash", false),
            ("table", true),
            ("copy", true),
            ("backends", true),
            ("act/drn/dis/unh", true),
            ("fingerprint", false),
            ("canary", false),
        ],
        &rows,
    );
    out
}

/// Rows under a header, each column as wide as its widest cell; `(title, right_aligned)`.
pub(crate) fn table(columns: &[(&str, bool)], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(String::len)
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            if columns.get(i).is_some_and(|(_, right)| *right) {
                text += &format!("{cell:>width$}");
            } else {
                text += &format!("{cell:<width$}");
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&mut columns.iter().map(|(title, _)| *title));
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fnv1a;

    /// Test that a VIP entry reads forwarding and hash from the kernel's flags, and that a VIP's
    /// status shows the entry's fields at its own top level, in their order (as `explain` does).
    #[test]
    fn a_vip_entry_reads_the_flags_and_flattens_into_the_status() {
        let key = VipKey {
            addr: [198, 18, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 80u16.to_be(),
            proto: 6,
            family: lb_common::service::FAMILY_IPV4,
        };
        let vip = Vip {
            id: 3,
            flags: VIP_FORWARD_IPIP | VIP_HASH_SOURCE_ONLY,
            table_size: 13,
            active: 1,
            ..Vip::default()
        };
        let status = VipStatus {
            entry: VipEntry::of(&key, &vip),
            backends: BackendCounts::default(),
            fingerprint: "0".into(),
            canary: None,
        };
        let json = serde_json::to_string(&status).expect("json");
        assert!(
            json.starts_with(
                "{\"vip\":\"198.18.1.10:80/tcp\",\"name\":null,\"id\":3,\"forwarding\":\"ipip\",\
                 \"hash\":\"source\",\"table_size\":13,\"active_copy\":1,\"backends\":"
            ),
            "{json}"
        );
    }

    /// Test that timestamps render as RFC 3339 UTC, across a leap day and a year boundary.
    #[test]
    fn rfc3339_renders_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    /// Backend 198.18.0.`last`.
    fn backend(last: u8) -> Backend {
        Backend {
            addr: [198, 18, 0, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            family: 4,
            ..Backend::default()
        }
    }

    /// Test that the fingerprint follows the backends that own the slots, not their ids.
    #[test]
    fn fingerprint_follows_owners_not_ids() {
        let numbered = [backend(10), backend(11)];
        let renumbered = [backend(11), backend(10)];
        assert_eq!(
            fingerprint(&[0, 1, 0], &numbered),
            fingerprint(&[1, 0, 1], &renumbered)
        );
        assert_ne!(
            fingerprint(&[0, 1, 0], &numbered),
            fingerprint(&[1, 0, 1], &numbered)
        );
        assert_ne!(
            fingerprint(&[0, 1], &numbered),
            fingerprint(&[0, 1, 1], &numbered)
        );
    }

    /// Test that the fingerprint is pinned to known answers (FNV-1a 64 over each slot's owner
    /// address and family, computed independently): nodes of different builds must print the
    /// same fingerprint for the same steering, or `audit --peer` would cry wolf (or miss a real
    /// difference).
    #[test]
    fn fingerprint_matches_known_answers() {
        let backends = [backend(10), backend(11)];
        assert_eq!(
            fingerprint(&[0, 1, 0, 1, 1], &backends),
            0xf0dc_a2fb_2e38_6178
        );
        // An id with no backend (an unfilled slot) is 17 zero bytes.
        assert_eq!(fingerprint(&[0, 1, 7], &backends), 0x37d9_de66_7d50_60d4);
    }

    /// Test that folding zero bytes into the steps gives FNV-1a over every byte: IPv6 owners
    /// with zeros leading, inside and trailing, no owner, ids beyond the map, and tables
    /// whose ids span too wide for the compiled owners.
    #[test]
    fn fingerprint_is_fnv1a_over_every_owner_byte() {
        let mut v6 = Backend {
            family: 6,
            ..Backend::default()
        };
        v6.addr[1] = 0xdb;
        v6.addr[15] = 1;
        let backends: Vec<Backend> = (0..5000u32)
            .map(|i| match i % 3 {
                0 => backend(i as u8),
                1 => v6,
                _ => Backend::default(),
            })
            .collect();
        let reference = |table: &[u32]| {
            let none = Backend::default();
            fnv1a(table.iter().flat_map(|id| {
                let owner = backends.get(*id as usize).unwrap_or(&none);
                owner.addr.into_iter().chain([owner.family])
            }))
        };
        for table in [
            vec![],
            vec![7, 3, 4, 5, 3, 0, u32::MAX, 5000],
            vec![100, 101, 102, 4999, 100],
            (0..300).map(|i| i * 7 % 5003).collect(),
        ] {
            assert_eq!(
                fingerprint(&table, &backends),
                reference(&table),
                "{table:?}"
            );
        }
    }

    /// Test that the text view aligns the VIP table under its header and says when nothing
    /// was applied.
    #[test]
    fn render_aligns_columns() {
        let status = Status {
            pin_path: "/sys/fs/bpf/xlb".into(),
            program_pinned: true,
            link_pinned: false,
            ifindex: 0,
            interface: None,
            attach_mode: None,
            generation: 2,
            applied_at: Some(rfc3339(1_700_000_000)),
            applied_at_unix: 1_700_000_000,
            config_hash: format!("{:016x}", 42),
            capacity: CapacityStatus {
                vips: 64,
                backends_per_vip: 256,
                table_slots: 65_537,
            },
            vips: vec![VipStatus {
                entry: VipEntry {
                    vip: "198.18.1.10:80/tcp".into(),
                    name: None,
                    id: 0,
                    forwarding: "dsr",
                    hash: "5-tuple",
                    table_size: 65_537,
                    active_copy: 1,
                },
                backends: BackendCounts {
                    total: 3,
                    active: 2,
                    drained: 1,
                    disabled: 0,
                    unhealthy: 0,
                },
                fingerprint: format!("{:016x}", 7),
                canary: Some(crate::canary::VipCanary {
                    percent: 10,
                    seconds_left: Some(25),
                }),
            }],
        };
        let text = render(&status);
        assert!(
            text.contains("attached     not attached by xlb run\n"),
            "{text}"
        );
        assert!(
            text.contains("generation   2, applied 2023-11-14T22:13:20Z\n"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let header = lines[lines.len() - 2];
        let row = lines[lines.len() - 1];
        assert!(header.starts_with("vip "), "{text}");
        assert_eq!(
            header.find("fingerprint"),
            row.find("0000000000000007"),
            "{text}"
        );
        assert!(row.contains("  65537  "), "{text}");
        assert!(row.contains("2/1/0"), "{text}");
        assert_eq!(header.find("canary"), row.find("10% 25s left"), "{text}");
    }
}
