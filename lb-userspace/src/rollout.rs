//! Rolling a desired state out to a loaded xlb (what `apply` and the backend verbs do): all or
//! nothing.
//!
//! Everything is planned first (ids, table placement, Maglev tables) and checked against the
//! program's capacity, so most mistakes stop before the first write. Then each VIP's new table
//! goes into its inactive copy and one update of the VIP entry flips to it. If any write fails,
//! the snapshot taken at the start is written back, so the running state stays as it was.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context as _, bail, ensure};
use aya::maps::{HashMap, MapData, PerCpuArray};
use lb_common::{
    Backend, BackendCounter, Config, Vip, VipKey,
    address::{from_kernel, to_kernel},
    config::CONFIG_FLOW_ADMISSION,
    map_names,
    meta::{Meta, ShareBase},
    service::{BACKEND_DISABLED, BACKEND_DRAINED, BACKEND_UNHEALTHY, VipFilter, vip_filter_bit},
};

use crate::{
    capacity::Capacity,
    config::{Model, VipModel},
    diff::{self, Change, Changes, effect},
    live::Snapshot,
    maglev,
    maps::{Maps, array},
    steering, table_record,
};

/// Backend id meaning "no backend": the kernel finds no backend there and drops as no_backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// A backend as the configuration wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredBackend {
    pub address: IpAddr,
    /// 0 keeps the backend loaded (its established flows continue) but out of the table.
    pub weight: u32,
    /// Destination MAC towards the backend: its own (dsr) or the next hop's (ipip).
    pub mac: [u8; 6],
    /// Operator state to set (`BACKEND_DRAINED`, `BACKEND_DISABLED` or 0); `None` keeps what
    /// the live backend has, so a config apply does not undo a drain.
    pub operator: Option<u8>,
    /// Whether the backend failed its health checks; `None` keeps what the live backend has,
    /// so an apply from the command line does not undo the daemon's verdict.
    pub unhealthy: Option<bool>,
}

impl DesiredBackend {
    /// A backend whose operator and health state an apply keeps as they are live.
    pub fn keeping_state(address: IpAddr, weight: u32, mac: [u8; 6]) -> DesiredBackend {
        DesiredBackend {
            address,
            weight,
            mac,
            operator: None,
            unhealthy: None,
        }
    }
}

/// A VIP as the configuration wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredVip {
    pub key: VipKey,
    /// `VIP_*` flags.
    pub flags: u32,
    pub table_size: u32,
    pub backends: Vec<DesiredBackend>,
}

/// The whole desired state.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub vips: Vec<DesiredVip>,
    /// Tunnel sources and MTU; the debug flag of the running program is kept.
    pub config: Config,
    /// Identifies the configuration file (see [`crate::config::hash`]).
    pub config_hash: u64,
    /// The config's `alerts.max_share`, recorded with the live state (see [`Meta`]).
    pub max_share: f64,
}

/// What an apply installed for one VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedVip {
    pub key: VipKey,
    pub vip: Vip,
    /// Backend ids, in the order of [`DesiredVip::backends`].
    pub backend_ids: Vec<u32>,
    /// The new live table (backend ids); empty when not `rebuilt`.
    pub table: Vec<u32>,
    /// [`table_record::inputs`] of the new table; 0 when not `rebuilt`.
    pub inputs: u64,
    /// False when the VIP and its backends were live exactly as wanted: its table (built
    /// from them alone) stands, nothing of it was rebuilt or written, and `vip` is the live
    /// entry.
    pub rebuilt: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub generation: u64,
    pub vips: Vec<AppliedVip>,
}

/// FNV-1a 64 over `bytes`.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Desired {
    /// The desired state of a validated config; `bytes` is the file it came from.
    pub fn from_model(model: &Model, config_hash: u64) -> Desired {
        let vips = model.vips.iter().map(|vip| DesiredVip::of(vip)).collect();
        Desired::of_vips(model, config_hash, vips)
    }

    /// [`Self::from_model`] with `vips` for the model's VIPs (each [`DesiredVip::of`] its VIP,
    /// its backends' state set or kept).
    pub fn of_vips(model: &Model, config_hash: u64, vips: Vec<DesiredVip>) -> Desired {
        Desired {
            vips,
            config: model.global.kernel_config(),
            config_hash,
            max_share: model.alerts.max_share,
        }
    }
}

impl DesiredVip {
    /// The desired state of a validated VIP, each backend keeping the state it has.
    pub fn of(vip: &VipModel) -> DesiredVip {
        DesiredVip {
            key: vip.key(),
            flags: vip.flags(),
            table_size: vip.table_size,
            backends: vip
                .backends
                .iter()
                .map(|b| DesiredBackend::keeping_state(b.address, b.weight, b.mac))
                .collect(),
        }
    }
}

impl Desired {
    /// The desired state that is live now, each backend keeping whatever state it has when
    /// applied: re-applying it changes nothing. Starting point for operator changes (drain,
    /// disable, enable a backend).
    pub fn from_live(snapshot: &Snapshot, capacity: &Capacity) -> Desired {
        let mut live = Desired::observed(snapshot, capacity);
        for backend in live.vips.iter_mut().flat_map(|vip| &mut vip.backends) {
            (backend.operator, backend.unhealthy) = (None, None);
        }
        live
    }

    /// The live state as it is, each backend's operator and health state included: the live
    /// side of the [`diff::diff`] an apply executes. Backends are in id order.
    pub fn observed(snapshot: &Snapshot, capacity: &Capacity) -> Desired {
        Desired::observed_where(snapshot, capacity, |_| true)
    }

    /// [`Desired::observed`] of the live VIPs whose key passes `keep`.
    fn observed_where(
        snapshot: &Snapshot,
        capacity: &Capacity,
        keep: impl Fn(&VipKey) -> bool,
    ) -> Desired {
        let vips = snapshot
            .vips
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, vip)| DesiredVip {
                key: *key,
                flags: vip.flags,
                table_size: vip.table_size,
                backends: effect::live_entries(snapshot, capacity, vip)
                    .iter()
                    .map(|(_, b)| observed_backend(b))
                    .collect(),
            })
            .collect();
        Desired {
            vips,
            config: snapshot.config,
            config_hash: snapshot.meta.config_hash,
            max_share: max_share(&snapshot.meta),
        }
    }
}

/// The `alerts.max_share` the live state was applied with (the default if none was recorded).
pub fn max_share(meta: &Meta) -> f64 {
    if meta.max_share_ppm == 0 {
        crate::config::Alerts::default().max_share
    } else {
        f64::from(meta.max_share_ppm) / 1e6
    }
}

/// A live backend entry read as a desired backend, its operator and health state included.
fn observed_backend(backend: &Backend) -> DesiredBackend {
    DesiredBackend {
        operator: Some(backend.flags & (BACKEND_DRAINED | BACKEND_DISABLED)),
        unhealthy: Some(backend.flags & BACKEND_UNHEALTHY != 0),
        ..DesiredBackend::keeping_state(live_address(backend), backend.weight, backend.mac)
    }
}

/// The address of a backend entry.
pub fn live_address(backend: &Backend) -> IpAddr {
    from_kernel(&backend.addr, backend.family)
}

/// Applies `desired` to the program behind `maps`.
pub fn apply(maps: &mut (impl Maps + ?Sized), desired: &Desired) -> anyhow::Result<Applied> {
    apply_with_fault_injection(maps, desired, None)
}

/// [`apply`] over `live`, the live state as the caller last read or wrote it, without reading
/// the VIP and backend entries again: the caller vouches that nothing wrote them since (the
/// daemon, their one writer, while the generation in the meta map is still its own). The run-time
/// settings are read again: `xlb trace` switches its flag there without a new generation.
/// Returns the state the apply leaves, what [`Snapshot::read`] would find, for the next apply to
/// start from.
pub fn apply_over(
    maps: &mut (impl Maps + ?Sized),
    live: Snapshot,
    desired: &Desired,
) -> anyhow::Result<(Applied, Snapshot)> {
    let capacity = Capacity::read(maps)?;
    Planned::over(maps, live, &capacity, desired)?.write(maps, desired)
}

/// An apply over the live state (as [`apply_over`] takes it), planned, every table it rebuilds
/// built, and not yet written: the outage guards judge those tables
/// ([`crate::diff::effect::concentrated_in`]) and then the same tables are written, not built
/// again.
pub struct Planned {
    live: Snapshot,
    plan: Plan,
}

impl Planned {
    /// `desired` planned over `live`, on a program of `capacity`.
    pub fn over(
        maps: &mut (impl Maps + ?Sized),
        mut live: Snapshot,
        capacity: &Capacity,
        desired: &Desired,
    ) -> anyhow::Result<Planned> {
        live.config = crate::live::settings(maps)?;
        let compared = compare(&live, capacity, desired, Scope::Changed);
        let plan = plan(&live, capacity, desired, &compared)?;
        Ok(Planned { live, plan })
    }

    /// What the apply installs for each desired VIP, the rebuilt tables included.
    pub fn vips(&self) -> &[AppliedVip] {
        &self.plan.vips
    }

    /// The live state it was planned over.
    pub fn live(&self) -> &Snapshot {
        &self.live
    }

    /// Writes the plan of `desired` (the state it was planned for), as [`apply_over`] does.
    pub fn write(
        self,
        maps: &mut (impl Maps + ?Sized),
        desired: &Desired,
    ) -> anyhow::Result<(Applied, Snapshot)> {
        write_plan(maps, self.live, self.plan, desired, None)
    }

    /// The live state it was planned over, nothing written.
    pub fn into_live(self) -> Snapshot {
        self.live
    }
}

/// How much of the traffic an apply gives its new tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// Every new flow: the new tables become the live copies.
    Whole,
    /// A canary: new flows whose hash is below `threshold` take the new tables (written into
    /// the inactive copies), the rest the live ones, until `ends` (Unix seconds). Nothing is
    /// retired and the program's settings stay, so the live tables keep working.
    Canary { threshold: u32, ends: u32 },
}

/// Starts a canary of `desired`: each VIP whose table changes keeps its live table for most
/// new flows and gives the hashes below `threshold` ([`lb_common::canary::threshold`]) the new
/// one, until [`end_canary`] and a whole apply (of `desired` to promote it, of the previous
/// state to roll it back). Only tables can be tried this way: a change that adds or removes a
/// VIP, or changes a VIP's table size, forwarding or hashing, is refused with nothing written.
/// Returns the applied state and the keys of the VIPs under canary.
pub fn apply_canary(
    maps: &mut (impl Maps + ?Sized),
    desired: &Desired,
    threshold: u32,
    ends: u32,
) -> anyhow::Result<(Applied, Vec<VipKey>)> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    ensure!(
        !snapshot.vips.iter().any(|(_, vip)| vip.canary != 0),
        "a canary is running already: promote or abort it first (`xlb canary promote|abort`)"
    );
    ensure!(
        snapshot.vips.len() == desired.vips.len(),
        "a canary tries new tables for the VIPs that run now; this config has {} VIPs where {} \
         run: add or remove VIPs with a plain apply",
        desired.vips.len(),
        snapshot.vips.len()
    );
    let compared = compare(&snapshot, &capacity, desired, Scope::All);
    // With as many VIPs on both sides, a VIP added comes before the one it replaces.
    for vip in &compared.changes.vips {
        ensure!(
            vip.change != Change::Added,
            "VIP {} is not running: a canary cannot add VIPs; add it with a plain apply",
            vip.vip
        );
        ensure!(
            vip.table_size.is_none() && vip.flags.is_none(),
            "VIP {}: a canary keeps each VIP's table size, forwarding and hashing (both table \
             copies share them); change those with a plain apply",
            vip.vip
        );
    }
    let plan = plan(&snapshot, &capacity, desired, &compared)?;
    // Every VIP runs already (checked above), so the old tables line up with the plan's.
    let old_tables = live_tables(maps, &snapshot, &plan)?;
    let tried: Vec<VipKey> = plan
        .vips
        .iter()
        .zip(&old_tables)
        .filter(|(applied, old)| applied.table != **old)
        .map(|(applied, _)| applied.key)
        .collect();
    ensure!(
        !tried.is_empty(),
        "the config changes no VIP's table: there is nothing to try on a slice; apply it plainly"
    );
    let reach = Reach::Canary { threshold, ends };
    let result = write(maps, &snapshot, &plan, desired, reach, &tried, &mut || {
        Ok(())
    });
    match result {
        Ok(_) => Ok((
            Applied {
                generation: snapshot.meta.generation + 1,
                vips: plan.vips,
            },
            tried,
        )),
        Err(err) => match snapshot.restore(maps) {
            Ok(()) => {
                Err(err.context("the canary failed to start; the previous state was restored"))
            }
            Err(restore) => Err(err.context(format!(
                "the canary failed to start, and restoring the previous state failed too \
                 ({restore:#}): re-apply the last good configuration"
            ))),
        },
    }
}

/// Ends a running canary at once, each VIP in one map update: rolled back (`promote` false),
/// the threshold goes to 0, so every new flow takes the live (old) table again; promoted, the
/// copy the slice used (the new table) also becomes the active one. Established flows keep
/// their backends. Returns the VIPs that were under canary. A whole apply follows, to clean up
/// (it finds a promoted VIP's entries and table already as the config wants them).
pub fn end_canary(maps: &mut (impl Maps + ?Sized), promote: bool) -> anyhow::Result<Vec<VipKey>> {
    let snapshot = Snapshot::read(maps)?;
    let map = maps.map_mut(map_names::VIPS)?;
    let mut vips: HashMap<&mut MapData, VipKey, Vip> =
        HashMap::try_from(map).context("the VIP map has an unexpected type")?;
    let mut ended = Vec::new();
    for (key, vip) in snapshot.vips.iter().filter(|(_, vip)| vip.canary != 0) {
        let active = if promote { vip.active ^ 1 } else { vip.active };
        vips.insert(
            key,
            &Vip {
                canary: 0,
                active,
                ..*vip
            },
            0,
        )
        .with_context(|| format!("ending the canary of VIP {}", describe_vip(key)))?;
        ended.push(*key);
    }
    Ok(ended)
}

/// [`apply`], failing on purpose at fault point `fail_before` (0-based) when given: lets
/// tests prove that a failure part-way leaves the old state in place. The fault points lie
/// between the write steps and inside them: before each backend, VIP and retired backend
/// written, and half-way through each table.
pub fn apply_with_fault_injection(
    maps: &mut (impl Maps + ?Sized),
    desired: &Desired,
    fail_before: Option<usize>,
) -> anyhow::Result<Applied> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let compared = compare(&snapshot, &capacity, desired, Scope::Changed);
    let plan = plan(&snapshot, &capacity, desired, &compared)?;
    write_plan(maps, snapshot, plan, desired, fail_before).map(|(applied, _)| applied)
}

/// [`apply`], once `guard` has seen what it would install (each VIP's new table and backend
/// ids, planned over the live state) and found nothing to refuse: a check of the plan that
/// needs no second planning. A refusal (`Some`) is returned with nothing written.
pub fn apply_guarded<M: Maps + ?Sized, R>(
    maps: &mut M,
    desired: &Desired,
    guard: impl FnOnce(&M, &Snapshot, &Capacity, &[AppliedVip]) -> anyhow::Result<Option<R>>,
) -> anyhow::Result<Result<Applied, R>> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let compared = compare(&snapshot, &capacity, desired, Scope::Changed);
    let plan = plan(&snapshot, &capacity, desired, &compared)?;
    if let Some(refusal) = guard(maps, &snapshot, &capacity, &plan.vips)? {
        return Ok(Err(refusal));
    }
    write_plan(maps, snapshot, plan, desired, None).map(|(applied, _)| Ok(applied))
}

/// Writes `plan`, restoring `snapshot` if a write fails (or the fault point `fail_before` is
/// reached); returns what it applied and the state it left.
fn write_plan(
    maps: &mut (impl Maps + ?Sized),
    snapshot: Snapshot,
    plan: Plan,
    desired: &Desired,
    fail_before: Option<usize>,
) -> anyhow::Result<(Applied, Snapshot)> {
    let mut step = 0;
    let result = write(
        maps,
        &snapshot,
        &plan,
        desired,
        Reach::Whole,
        &[],
        &mut || {
            if fail_before == Some(step) {
                bail!("fault injected at fault point {step}");
            }
            step += 1;
            Ok(())
        },
    );
    match result {
        Ok(settings) => {
            let left = written(snapshot, &plan, settings);
            let applied = Applied {
                generation: left.meta.generation,
                vips: plan.vips,
            };
            Ok((applied, left))
        }
        Err(err) => match snapshot.restore(maps) {
            Ok(()) => Err(err.context("apply failed; the previous state was restored")),
            Err(restore) => Err(err.context(format!(
                "apply failed, and restoring the previous state failed too ({restore:#}): \
                 re-apply the last good configuration"
            ))),
        },
    }
}

/// Which VIPs a plan builds tables for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Only those whose VIP entry or backend entries change: an apply writes nothing else.
    Changed,
    /// Every VIP: what the tables should be, to compare with the live ones.
    All,
}

/// The writes that execute a [`Changes`]: one step per kind of change.
struct Plan {
    /// The desired VIPs in their order: those rebuilt get a new entry and table.
    vips: Vec<AppliedVip>,
    /// Backend entries added or changed, by id.
    backends: Vec<(u32, Backend)>,
    /// Live VIPs the desired state does not have.
    removed: Vec<VipKey>,
    /// Backend ids in use before and no longer after: cleared once no table points at them.
    retired: Vec<u32>,
    /// VIPs are added or removed: the address filter and VIP addresses change.
    vip_set: bool,
    /// The run-time settings change.
    settings: bool,
}

/// What an apply compares of `desired` with the live state it writes over.
struct Compared {
    scope: Scope,
    /// What differs, for every VIP but the settled ones.
    changes: Changes,
    /// By desired index: the live backend ids (in the desired order) of each VIP found running
    /// exactly as wanted ([`settled`]), which the diff leaves out. Only a [`Scope::Changed`]
    /// comparison settles VIPs: the other needs every VIP's inputs.
    settled: Vec<Option<Vec<u32>>>,
}

/// Compares `desired` with the live state in `snapshot`: under [`Scope::Changed`], the desired
/// VIPs that run exactly as wanted are settled in place (nothing of them is copied or diffed:
/// one changed VIP among 1,000 costs one VIP's diff), the rest go through [`diff::diff`].
fn compare(snapshot: &Snapshot, capacity: &Capacity, desired: &Desired, scope: Scope) -> Compared {
    let settled: Vec<Option<Vec<u32>>> = desired
        .vips
        .iter()
        .map(|want| match scope {
            Scope::Changed => settled(snapshot, capacity, want),
            Scope::All => None,
        })
        .collect();
    // The desired index of each VIP the diff compares.
    let unsettled: Vec<usize> = (0..desired.vips.len())
        .filter(|&i| settled[i].is_none())
        .collect();
    let mut settled_keys: Vec<VipKey> = (0..desired.vips.len())
        .filter(|&i| settled[i].is_some())
        .map(|i| desired.vips[i].key)
        .collect();
    settled_keys.sort_unstable();
    let is_settled = |key: &VipKey| settled_keys.binary_search(key).is_ok();
    let rest = Desired {
        vips: unsettled.iter().map(|&i| desired.vips[i].clone()).collect(),
        config: desired.config,
        config_hash: desired.config_hash,
        max_share: desired.max_share,
    };
    let live = Desired::observed_where(snapshot, capacity, |key| !is_settled(key));
    let mut changes = diff::diff(&rest, &live);
    // Back to indices among all the VIPs of each side.
    let live_index: Vec<usize> = (0..snapshot.vips.len())
        .filter(|&j| !is_settled(&snapshot.vips[j].0))
        .collect();
    for vip in &mut changes.vips {
        vip.desired = vip.desired.map(|i| unsettled[i]);
        vip.live = vip.live.map(|j| live_index[j]);
    }
    Compared {
        scope,
        changes,
        settled,
    }
}

/// The live backend ids of `want` when it runs exactly as wanted, its backends live in the
/// desired order (as an apply finds its own last write): what [`diff::diff`] finds unchanged,
/// pairing the backends by position. `None` otherwise.
fn settled(snapshot: &Snapshot, capacity: &Capacity, want: &DesiredVip) -> Option<Vec<u32>> {
    let live = snapshot.vip(&want.key)?;
    if live.flags != want.flags || live.table_size != want.table_size {
        return None;
    }
    // Compared in place: copying 1,000 VIPs' entries was most of an apply's comparison.
    let mut wanted = want.backends.iter();
    let mut ids = Vec::with_capacity(want.backends.len());
    for (id, have) in effect::live_entries_of(snapshot, capacity, live) {
        if !diff::backend_unchanged(wanted.next()?, &observed_backend(have)) {
            return None;
        }
        ids.push(id);
    }
    wanted.next().is_none().then_some(ids)
}

/// The writes that execute `changes` (of `desired` over `snapshot`), every table built.
fn plan(
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    compared: &Compared,
) -> anyhow::Result<Plan> {
    let (mut plan, builds) = plan_entries(snapshot, capacity, desired, compared)?;
    for ((index, eligible, size), table) in builds.iter().zip(build_tables(&builds)) {
        let applied = &mut plan.vips[*index];
        applied.inputs = table_record::inputs(eligible, *size);
        applied.table = table.with_context(|| {
            format!(
                "building the Maglev table of VIP {}",
                describe_vip(&applied.key)
            )
        })?;
    }
    Ok(plan)
}

/// [`plan`] with no table built: the plan (tables empty) and what to build them from.
fn plan_entries(
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    compared: &Compared,
) -> anyhow::Result<(Plan, Vec<Build>)> {
    let Compared {
        scope,
        changes,
        settled,
    } = compared;
    let short = capacity.shortfalls(&Capacity::needed(&desired.vips));
    ensure!(short.is_empty(), "{}", short.join("; "));
    let keys: BTreeSet<VipKey> = desired.vips.iter().map(|vip| vip.key).collect();
    ensure!(
        keys.len() == desired.vips.len(),
        "two VIPs share an address, port and protocol"
    );
    let mut taken: BTreeSet<u32> = snapshot.vips.iter().map(|(_, vip)| vip.id).collect();
    let mut next_free = 0;
    // By desired index; a settled VIP keeps its live entry and table.
    let mut vips: Vec<Option<AppliedVip>> = desired
        .vips
        .iter()
        .zip(settled)
        .map(|(want, ids)| {
            let vip = *snapshot.vip(&want.key)?;
            Some(AppliedVip {
                key: want.key,
                vip,
                backend_ids: ids.clone()?,
                table: Vec::new(),
                inputs: 0,
                rebuilt: false,
            })
        })
        .collect();
    let mut backends = Vec::new();
    let mut removed = Vec::new();
    let mut retired = Vec::new();
    // Tables are built once every VIP is planned, in parallel: (desired index, eligible
    // backends, size).
    let mut builds = Vec::new();
    let fresh_cookie = (snapshot.meta.generation.wrapping_add(1) as u32).max(1);
    let owned = |id: u32| {
        snapshot
            .backends
            .get(id as usize)
            .copied()
            .unwrap_or_default()
    };
    for change in &changes.vips {
        let live = snapshot.vip(&change.key);
        // The ids of the live backends, in the order the diff's live side lists them.
        let live_ids: Vec<u32> = live.map_or_else(Vec::new, |vip| {
            effect::live_entries(snapshot, capacity, vip)
                .iter()
                .map(|(id, _)| *id)
                .collect()
        });
        let Some(index) = change.desired else {
            // Removed: its entry goes after the flips, then its backends.
            removed.push(change.key);
            retired.extend(live_ids);
            continue;
        };
        let want = &desired.vips[index];
        let describe = || describe_vip(&want.key);
        ensure!(
            want.table_size <= capacity.table_slots && maglev::is_prime(want.table_size),
            "VIP {}: table size {} must be a prime no larger than {} (the running program's \
             capacity)",
            describe(),
            want.table_size,
            capacity.table_slots
        );
        ensure!(
            want.backends.len() <= capacity.backends_per_vip as usize,
            "VIP {}: {} backends do not fit: the running program holds {} per VIP",
            describe(),
            want.backends.len(),
            capacity.backends_per_vip
        );
        let id = match live {
            Some(vip) => vip.id,
            None => {
                while taken.contains(&next_free) {
                    next_free += 1;
                }
                taken.insert(next_free);
                next_free
            }
        };
        ensure!(
            id < capacity.vips,
            "VIP {}: id {id} is beyond the program's capacity",
            describe()
        );
        // New forwarding or hashing: every flow remembered under the old binding is re-hashed.
        let rebind_all = change.flags.is_some();
        let range = capacity.backend_ids(id);
        let mut used: BTreeSet<u32> = live_ids.iter().copied().collect();
        let mut backend_ids = Vec::new();
        let mut eligible = Vec::new();
        for backend in &change.backends {
            let existing = backend.live.map(|j| live_ids[j]);
            let Some(wanted) = backend.desired.map(|i| &want.backends[i]) else {
                retired.extend(existing);
                continue;
            };
            let backend_id = match existing {
                Some(b) => b,
                None => {
                    let free = range.clone().find(|b| !used.contains(b)).with_context(|| {
                        format!(
                            "VIP {}: no free backend id for {}: too many backends replaced at \
                             once; apply the change in two steps",
                            describe(),
                            wanted.address
                        )
                    })?;
                    used.insert(free);
                    free
                }
            };
            let flags = diff::backend_flags(wanted, owned(backend_id).flags);
            // An entry the diff leaves alone (address, weight, MAC, state and cookie as live)
            // is not written.
            if backend.change != Change::Unchanged || rebind_all {
                let (addr, family) = to_kernel(wanted.address);
                let cookie = diff::cookie(existing.map(owned).as_ref(), rebind_all, fresh_cookie);
                let entry = Backend {
                    addr,
                    mac: wanted.mac,
                    family,
                    flags,
                    weight: wanted.weight,
                    cookie,
                };
                backends.push((backend_id, entry));
            }
            backend_ids.push(backend_id);
            if diff::in_table(flags, wanted.weight) {
                eligible.push((backend_id, wanted.weight, wanted.address));
            }
        }
        // A VIP the diff leaves alone keeps its table, which depends on nothing else.
        if let Some(vip) =
            live.filter(|_| *scope == Scope::Changed && change.change == Change::Unchanged)
        {
            vips[index] = Some(AppliedVip {
                key: want.key,
                vip: *vip,
                backend_ids,
                table: Vec::new(),
                inputs: 0,
                rebuilt: false,
            });
            continue;
        }
        builds.push((index, eligible, want.table_size));
        let active = live.map_or(0, |vip| 1 - vip.active.min(1));
        let vip = Vip {
            id,
            flags: want.flags,
            table_size: want.table_size,
            active,
            tables: [capacity.table_base(id, 0), capacity.table_base(id, 1)],
            canary: 0,
        };
        vips[index] = Some(AppliedVip {
            key: want.key,
            vip,
            backend_ids,
            table: Vec::new(),
            inputs: 0,
            rebuilt: true,
        });
    }
    let plan = Plan {
        vip_set: changes
            .vips
            .iter()
            .any(|vip| matches!(vip.change, Change::Added | Change::Removed)),
        // Every desired VIP is settled or in the diff.
        vips: vips.into_iter().flatten().collect(),
        backends,
        removed,
        retired,
        settings: !changes.settings.is_empty(),
    };
    Ok((plan, builds))
}

/// What an apply of `desired` would install over the live state in `snapshot` (ids, tables),
/// planned by the same rules and Maglev builder and written nowhere: `audit` compares the live
/// tables with it. Each table is built when asked for ([`ExpectedTable::build`]), so a caller
/// holds one at a time rather than all of them.
pub fn expected_tables(
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
) -> anyhow::Result<Vec<ExpectedTable>> {
    let compared = compare(snapshot, capacity, desired, Scope::All);
    let (plan, builds) = plan_entries(snapshot, capacity, desired, &compared)?;
    // Every VIP of an `All` plan is built, in the plan's order.
    Ok(plan
        .vips
        .into_iter()
        .zip(builds)
        .map(|(applied, (_, eligible, _))| ExpectedTable {
            key: applied.key,
            vip: applied.vip,
            eligible,
        })
        .collect())
}

/// A VIP's entry as an apply would write it, and what its table is built from.
pub struct ExpectedTable {
    pub key: VipKey,
    pub vip: Vip,
    /// (id, weight, address) of the backends in the table.
    eligible: Vec<(u32, u32, IpAddr)>,
}

impl ExpectedTable {
    /// [`table_record::inputs`] of the table.
    pub fn inputs(&self) -> u64 {
        table_record::inputs(&self.eligible, self.vip.table_size)
    }

    /// Each of `backends` (the VIP's entries: id and entry) with its weight in the table, 0
    /// for one not in it.
    pub fn weights(&self, backends: &[(u32, Backend)]) -> Vec<(IpAddr, u32)> {
        backends
            .iter()
            .map(|(id, backend)| {
                let weight = self.eligible.iter().find(|(eligible, ..)| eligible == id);
                (
                    live_address(backend),
                    weight.map_or(0, |(_, weight, _)| *weight),
                )
            })
            .collect()
    }

    /// The table (backend ids), as an apply builds it.
    pub fn build(&self) -> anyhow::Result<Vec<u32>> {
        build_table(&self.eligible, self.vip.table_size).with_context(|| {
            format!(
                "building the Maglev table of VIP {}",
                describe_vip(&self.key)
            )
        })
    }
}

/// What an apply of `desired` would rebuild over the live state in `snapshot`: every VIP, with
/// a table only where [`AppliedVip::rebuilt`] (the VIPs the change touches).
pub fn changed_tables(
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
) -> anyhow::Result<Vec<AppliedVip>> {
    let compared = compare(snapshot, capacity, desired, Scope::Changed);
    Ok(plan(snapshot, capacity, desired, &compared)?.vips)
}

/// A table to build: index into the plan's VIPs, eligible (id, weight, address) backends, size.
type Build = (usize, Vec<(u32, u32, IpAddr)>, u32);

/// The tables of `builds` (index, eligible backends, size), on as many threads as the host has
/// CPUs: each table depends on its own inputs only.
fn build_tables(builds: &[Build]) -> Vec<anyhow::Result<Vec<u32>>> {
    crate::parallel::map(builds, |(_, eligible, size)| {
        // One result per build, in order, whatever happens to another build.
        std::panic::catch_unwind(|| build_table(eligible, *size))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a table build panicked")))
    })
}

/// A Maglev table over `eligible` (id, weight, address) backends; all [`NO_BACKEND`] when none.
fn build_table(eligible: &[(u32, u32, IpAddr)], size: u32) -> anyhow::Result<Vec<u32>> {
    let backends: Vec<(IpAddr, u32)> = eligible.iter().map(|(_, w, a)| (*a, *w)).collect();
    Ok(match effect::weighted_table(&backends, size)? {
        Some(built) => (built.table.iter())
            .map(|&slot| eligible[built.members[slot as usize]].0)
            .collect(),
        None => vec![NO_BACKEND; size as usize],
    })
}

/// The single-entry maps a write set: the filter and config if it wrote them, and the meta.
struct Settings {
    filter: Option<VipFilter>,
    config: Option<Config>,
    meta: Meta,
}

/// `snapshot` once `plan` is written whole with `settings`: what a read of the maps finds
/// then, built without reading them.
fn written(mut snapshot: Snapshot, plan: &Plan, settings: Settings) -> Snapshot {
    let retired = plan.retired.iter().map(|&id| (id, Backend::default()));
    for (id, backend) in plan.backends.iter().copied().chain(retired) {
        if let Some(slot) = snapshot.backends.get_mut(id as usize) {
            *slot = backend;
        }
    }
    for applied in plan.vips.iter().filter(|applied| applied.rebuilt) {
        match snapshot
            .vips
            .binary_search_by_key(&applied.key, |(key, _)| *key)
        {
            Ok(i) => snapshot.vips[i].1 = applied.vip,
            Err(i) => snapshot.vips.insert(i, (applied.key, applied.vip)),
        }
    }
    let mut removed = plan.removed.clone();
    removed.sort_unstable();
    snapshot
        .vips
        .retain(|(key, _)| removed.binary_search(key).is_err());
    snapshot.filter = settings.filter.unwrap_or(snapshot.filter);
    snapshot.config = settings.config.unwrap_or(snapshot.config);
    snapshot.meta = settings.meta;
    snapshot
}

/// Writes `plan`; under a canary, the VIPs in `tried` keep their live copy with the
/// canary's threshold, the others flip as in a whole apply (their tables are unchanged).
/// Returns the settings it left (under a canary, only the meta is of use).
fn write(
    maps: &mut (impl Maps + ?Sized),
    snapshot: &Snapshot,
    plan: &Plan,
    desired: &Desired,
    reach: Reach,
    tried: &[VipKey],
    step: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Settings> {
    // New and changed backends first: no live table points at a new id yet.
    step()?;
    let mut backends = array::<Backend>(maps, map_names::BACKENDS)?;
    for (id, backend) in &plan.backends {
        step()?;
        backends
            .set(*id, backend, 0)
            .with_context(|| format!("writing backend {id}"))?;
    }
    // Each VIP's new table into its inactive copy.
    step()?;
    let tables: Vec<(u32, &[u32])> = plan
        .vips
        .iter()
        .filter(|applied| applied.rebuilt)
        .map(|applied| (applied.vip.live_table().0, applied.table.as_slice()))
        .collect();
    steering::write_tables_halfway(maps, &tables, step)?;
    table_record::write(
        maps,
        plan.vips
            .iter()
            .filter(|applied| applied.rebuilt)
            .map(|applied| (&applied.vip, applied.inputs, applied.table.as_slice())),
    )?;
    // Filter bits and addresses before the VIPs they admit.
    step()?;
    if plan.vip_set {
        let mut filter = snapshot.filter;
        for applied in &plan.vips {
            set_bit(&mut filter, &applied.key);
        }
        array::<VipFilter>(maps, map_names::VIP_FILTER)?.set(0, &filter, 0)?;
        let old_keys = snapshot.vips.iter().map(|(key, _)| key);
        steering::set_vip_addrs(maps, old_keys.chain(plan.vips.iter().map(|a| &a.key)))?;
    }
    // The flips: one atomic update per VIP.
    step()?;
    let map = maps.map_mut(map_names::VIPS)?;
    let mut vips: HashMap<&mut MapData, VipKey, Vip> =
        HashMap::try_from(map).context("the VIP map has an unexpected type")?;
    for applied in plan.vips.iter().filter(|applied| applied.rebuilt) {
        step()?;
        let vip = match reach {
            Reach::Canary { threshold, .. } if tried.contains(&applied.key) => Vip {
                active: applied.vip.active ^ 1,
                canary: threshold,
                ..applied.vip
            },
            _ => applied.vip,
        };
        vips.insert(&applied.key, &vip, 0)
            .with_context(|| format!("writing VIP {}", describe_vip(&applied.key)))?;
    }
    step()?;
    for key in &plan.removed {
        step()?;
        vips.remove(key)
            .with_context(|| format!("removing VIP {}", describe_vip(key)))?;
    }
    let canary_ends = match reach {
        Reach::Canary { ends, .. } => {
            // The live tables still point at every backend, and the settings stay the live
            // ones until the promotion.
            let meta = Meta {
                generation: snapshot.meta.generation + 1,
                canary_ends: ends,
                ..snapshot.meta
            };
            array::<Meta>(maps, map_names::META)?.set(0, &meta, 0)?;
            return Ok(Settings {
                filter: None,
                config: None,
                meta,
            });
        }
        Reach::Whole => 0,
    };
    mark_table_changes(maps, snapshot, plan)?;
    // Nothing points at retired backends any more.
    step()?;
    let mut backends = array::<Backend>(maps, map_names::BACKENDS)?;
    for id in &plan.retired {
        step()?;
        backends
            .set(*id, &Backend::default(), 0)
            .with_context(|| format!("clearing backend {id}"))?;
    }
    step()?;
    let filter = if plan.vip_set {
        let mut filter = [0u64; 64];
        for applied in &plan.vips {
            set_bit(&mut filter, &applied.key);
        }
        array::<VipFilter>(maps, map_names::VIP_FILTER)?.set(0, &filter, 0)?;
        steering::set_vip_addrs(maps, plan.vips.iter().map(|applied| &applied.key))?;
        Some(filter)
    } else {
        None
    };
    step()?;
    let config = if plan.settings {
        // Debug logging is switched at run time and stays; the flow admission is the config's.
        let config = Config {
            flags: snapshot.config.flags & !CONFIG_FLOW_ADMISSION
                | desired.config.flags & CONFIG_FLOW_ADMISSION,
            ..desired.config
        };
        array::<Config>(maps, map_names::CONFIG)?.set(0, &config, 0)?;
        Some(config)
    } else {
        None
    };
    step()?;
    let meta = Meta {
        generation: snapshot.meta.generation + 1,
        applied_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        config_hash: desired.config_hash,
        max_share_ppm: (desired.max_share * 1e6).round() as u32,
        canary_ends,
        ..snapshot.meta
    };
    array::<Meta>(maps, map_names::META)?.set(0, &meta, 0)?;
    Ok(Settings {
        filter,
        config,
        meta,
    })
}

/// The new flows counted for each backend of `ids`, summed over CPUs: an entry at a time for a
/// few, the whole map in one pass for many.
fn backend_new_flows(maps: &(impl Maps + ?Sized), ids: &[u32]) -> anyhow::Result<Vec<u64>> {
    const ONE_BY_ONE: usize = 1024;
    if ids.len() > ONE_BY_ONE {
        let all = crate::batch::per_cpu_sums(
            maps,
            map_names::BACKEND_STATS,
            |sum, c: &BackendCounter| {
                sum.new_flows += c.new_flows;
            },
        )?;
        return Ok(ids
            .iter()
            .map(|&id| all.get(id as usize).map_or(0, |c| c.new_flows))
            .collect());
    }
    let counters: PerCpuArray<&MapData, BackendCounter> =
        PerCpuArray::try_from(maps.map(map_names::BACKEND_STATS)?)
            .context("the backend counter map is not a per-CPU array of backend counters")?;
    ids.iter()
        .map(|&id| {
            Ok(counters
                .get(&id, 0)
                .with_context(|| format!("reading the counters of backend {id}"))?
                .iter()
                .map(|c| c.new_flows)
                .sum())
        })
        .collect()
}

/// Records, for every VIP whose table this apply changed (or added), each of its backends'
/// new-flow count now: `stats` judges shares over what is counted from here on.
fn mark_table_changes(
    maps: &mut (impl Maps + ?Sized),
    snapshot: &Snapshot,
    plan: &Plan,
) -> anyhow::Result<()> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut changed = Vec::new();
    {
        // The old copies are intact: the new tables went into the other ones.
        let rebuilt = || plan.vips.iter().filter(|applied| applied.rebuilt);
        let (live, new): (Vec<(u32, u32)>, Vec<&[u32]>) = rebuilt()
            .filter_map(|applied| Some((snapshot.vip(&applied.key)?, applied.table.as_slice())))
            .map(|(vip, new)| (vip.live_table(), new))
            .unzip();
        let mut same = steering::read_tables_with(maps, &live, |i, old| old == new[i])?.into_iter();
        for applied in rebuilt() {
            let unchanged = match snapshot.vip(&applied.key) {
                Some(_) => same.next().unwrap_or(false),
                None => false,
            };
            if !unchanged {
                changed.extend_from_slice(&applied.backend_ids);
            }
        }
    }
    let new_flows = backend_new_flows(maps, &changed)?;
    let bases = changed
        .iter()
        .zip(new_flows)
        .map(|(&id, new_flows)| (id, ShareBase { new_flows, since }));
    let mut map = array::<ShareBase>(maps, map_names::SHARE_BASE)?;
    for (id, base) in bases {
        map.set(id, &base, 0)
            .with_context(|| format!("recording the share base of backend {id}"))?;
    }
    Ok(())
}

/// The live tables of the VIPs of `plan` that run in `snapshot`, in the plan's order.
fn live_tables(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    plan: &Plan,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let live: Vec<(u32, u32)> = plan
        .vips
        .iter()
        .filter_map(|applied| snapshot.vip(&applied.key))
        .map(|vip| vip.live_table())
        .collect();
    steering::read_tables(maps, &live)
}

fn set_bit(filter: &mut VipFilter, key: &VipKey) {
    let bit = vip_filter_bit(&key.addr, key.family);
    filter[(bit / 64) as usize] |= 1 << (bit % 64);
}

/// `address:port/protocol` of a VIP key, for messages.
pub fn describe_vip(key: &VipKey) -> String {
    let socket =
        std::net::SocketAddr::new(from_kernel(&key.addr, key.family), u16::from_be(key.port));
    match lb_common::proto::name(key.proto) {
        Some(protocol) => format!("{socket}/{protocol}"),
        None => format!("{socket}/proto {}", key.proto),
    }
}

#[cfg(test)]
mod tests {
    use lb_common::service::FAMILY_IPV4;

    use super::*;

    const CAPACITY: Capacity = Capacity {
        vips: 4,
        backends_per_vip: 4,
        table_slots: 13,
    };

    fn key(port: u16) -> VipKey {
        VipKey {
            addr: to_kernel(IpAddr::from([198, 18, 0, 10])).0,
            port: port.to_be(),
            proto: 6,
            family: FAMILY_IPV4,
        }
    }

    fn vip(port: u16, weights: &[u32]) -> DesiredVip {
        DesiredVip {
            key: key(port),
            flags: 0,
            table_size: 13,
            backends: (1..)
                .zip(weights)
                .map(|(last, &weight)| {
                    let address = IpAddr::from([198, 18, 1, last]);
                    DesiredBackend::keeping_state(address, weight, [2, 0, 0, 0, 0, last])
                })
                .collect(),
        }
    }

    fn desired(vips: Vec<DesiredVip>) -> Desired {
        Desired {
            vips,
            config: Config::default(),
            config_hash: 1,
            max_share: 0.5,
        }
    }

    /// The plan of `desired` over `snapshot`, and the same planned from the whole diff (no VIP
    /// settled).
    fn both_plans(snapshot: &Snapshot, desired: &Desired) -> (Plan, Plan) {
        let settling = compare(snapshot, &CAPACITY, desired, Scope::Changed);
        let whole = Compared {
            scope: Scope::Changed,
            changes: diff::diff(desired, &Desired::observed(snapshot, &CAPACITY)),
            settled: vec![None; desired.vips.len()],
        };
        let plan = |compared| {
            plan_entries(snapshot, &CAPACITY, desired, compared)
                .expect("plan")
                .0
        };
        (plan(&settling), plan(&whole))
    }

    /// `snapshot` with `plan` written into it, as an apply writes it.
    fn written(mut snapshot: Snapshot, plan: &Plan) -> Snapshot {
        for (id, backend) in &plan.backends {
            snapshot.backends[*id as usize] = *backend;
        }
        for applied in &plan.vips {
            match snapshot
                .vips
                .binary_search_by_key(&applied.key, |(k, _)| *k)
            {
                Ok(i) => snapshot.vips[i].1 = applied.vip,
                Err(i) => snapshot.vips.insert(i, (applied.key, applied.vip)),
            }
        }
        snapshot
    }

    /// Test that settling the VIPs that run as wanted plans exactly what the whole diff plans
    /// (entries, ids, which VIPs are rebuilt, backends written), and settles only those: for a
    /// change of one weight, a backend drained live, backends reordered, a VIP added and one
    /// removed.
    #[test]
    fn settled_vips_plan_as_the_whole_diff() {
        let empty = Snapshot {
            vips: Vec::new(),
            backends: vec![Backend::default(); 16],
            config: Config::default(),
            filter: [0; 64],
            meta: Meta::default(),
        };
        let first = desired(vec![vip(80, &[1, 1, 1]), vip(81, &[1, 2]), vip(82, &[3])]);
        let (plan, _) = both_plans(&empty, &first);
        let mut live = written(empty, &plan);
        assert_eq!(
            compare(&live, &CAPACITY, &first, Scope::Changed)
                .settled
                .iter()
                .filter(|ids| ids.is_some())
                .count(),
            3,
            "an apply over its own write settles every VIP"
        );
        let drained = live_id(&live, 81, 1);
        live.backends[drained as usize].flags |= BACKEND_DRAINED;
        let mut reordered = vip(82, &[3]);
        reordered
            .backends
            .insert(0, vip(82, &[1, 1]).backends[1].clone());
        let cases = [
            desired(vec![vip(80, &[1, 5, 1]), vip(81, &[1, 2]), vip(82, &[3])]),
            desired(vec![vip(80, &[1, 1, 1]), vip(81, &[1, 2]), reordered]),
            desired(vec![vip(80, &[1, 1, 1]), vip(83, &[1]), vip(82, &[3])]),
        ];
        for want in &cases {
            let (settling, whole) = both_plans(&live, want);
            assert_eq!(settling.vips, whole.vips);
            assert_eq!(settling.backends, whole.backends);
            assert_eq!(settling.removed, whole.removed);
            assert_eq!(settling.retired, whole.retired);
            assert_eq!(
                (settling.vip_set, settling.settings),
                (whole.vip_set, whole.settings)
            );
            let settled = compare(&live, &CAPACITY, want, Scope::Changed).settled;
            let rebuilt: Vec<bool> = settling.vips.iter().map(|v| v.rebuilt).collect();
            let unsettled: Vec<bool> = settled.iter().map(Option::is_none).collect();
            assert!(
                rebuilt.iter().zip(&unsettled).all(|(r, u)| !r || *u),
                "a settled VIP is never rebuilt"
            );
            assert_ne!(unsettled, [false; 3], "the change is not settled away");
        }
    }

    /// The id of backend `index` (in id order) of the live VIP on `port`.
    fn live_id(snapshot: &Snapshot, port: u16, index: usize) -> u32 {
        let vip = snapshot.vip(&key(port)).expect("live VIP");
        effect::live_entries(snapshot, &CAPACITY, vip)[index].0
    }
}
