//! The backend side of `ipip`: loading the decapsulation program (`xlb_decap`) for this host's
//! outer addresses, attaching it to an interface with everything pinned (so it outlives the
//! command that attached it), reading what is attached, and detaching it. `xlb decap` and the
//! labs both use these functions.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{ProgramInfo, links::FdLink},
};
use lb_common::{DECAP_PROGRAM_NAME, Reason, decap::DecapKey, map_names};
use serde::Serialize;

use crate::{
    attach::{self, AttachMode},
    counters::Totals,
    exit::NotLoaded,
    maps::Pinned,
    netdev, object,
};

/// The map key for `addr`: an IPv4 address fills the first 4 bytes.
pub fn key(addr: IpAddr) -> DecapKey {
    match addr {
        IpAddr::V4(v4) => DecapKey::v4(&v4.octets()),
        IpAddr::V6(v6) => DecapKey::v6(&v6.octets()),
    }
}

/// The address a map key holds.
fn address(key: &DecapKey) -> IpAddr {
    lb_common::address::from_kernel(&key.addr, key.family)
}

/// Makes the decapsulation program in `ebpf` strip tunnelled packets whose outer destination
/// is `addr`.
pub fn accept(ebpf: &mut Ebpf, addr: IpAddr) -> anyhow::Result<()> {
    let name = map_names::DECAP_ADDRS;
    let map = ebpf.map_mut(name).with_context(|| {
        format!("the object has no map named {name}: load the xlb-decap object (DECAP_OBJECT)")
    })?;
    let mut addrs: HashMap<&mut MapData, DecapKey, u32> = HashMap::try_from(map)
        .with_context(|| format!("map {name} is not a hash map of DecapKey to u32"))?;
    addrs.insert(&key(addr), &0, 0).with_context(|| {
        format!(
            "adding {addr} to map {name} failed; if the map is full, load a fresh object or \
             accept fewer addresses"
        )
    })
}

/// Loads `xlb_decap`, unattached, stripping tunnels to `addresses`.
pub fn load(addresses: &[IpAddr]) -> anyhow::Result<Ebpf> {
    let mut ebpf = object::load(object::DECAP_OBJECT, DECAP_PROGRAM_NAME)?;
    for &addr in addresses {
        accept(&mut ebpf, addr)?;
    }
    Ok(ebpf)
}

/// The pin directory of the decapsulation program on `interface` under `pin_root`.
pub fn pin_dir(pin_root: &Path, interface: &str) -> PathBuf {
    pin_root.join(interface)
}

/// What is attached to one interface.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecapStatus {
    pub interface: String,
    pub pin_path: PathBuf,
    /// The outer destinations whose tunnels are stripped.
    pub addresses: Vec<IpAddr>,
    /// The pinned program is the one the interface runs.
    pub attached: bool,
    /// How the interface runs it (`native`, `generic`); `None` when not attached here.
    pub mode: Option<&'static str>,
    pub program_id: u32,
    /// Packets stripped and passed up.
    pub decapsulated: u64,
    /// Packets passed untouched: not a tunnel, or a tunnel to another address.
    pub passed_other: u64,
    /// Tunnels dropped as malformed.
    pub dropped: u64,
}

/// Attaches `xlb_decap` to `interface` of the current network namespace for `addresses`, and
/// pins its maps, program and link under `pin_root/INTERFACE`: it stays attached after this
/// process exits, until [`detach`].
pub fn attach(
    interface: &str,
    addresses: &[IpAddr],
    mode: AttachMode,
    pin_root: &Path,
) -> anyhow::Result<DecapStatus> {
    if addresses.is_empty() {
        bail!(
            "--address is missing: give each outer address this host receives tunnels on \
             (the backend's address in the load balancer's config), e.g. --address 198.18.0.10"
        );
    }
    let dir = pin_dir(pin_root, interface);
    if dir.exists() {
        bail!(
            "the decapsulation program is already attached to `{interface}` (pinned under {}): \
             `xlb decap detach {interface}` first, then attach with the new addresses",
            dir.display()
        );
    }
    let mut ebpf = load(addresses)?;
    let program = object::xdp_program(&mut ebpf, DECAP_PROGRAM_NAME)?;
    let attached = attach::attach(program, interface, mode)?;
    let link = FdLink::try_from(program.take_link(attached.link)?)
        .context("the kernel attached the program without a bpf_link (kernel older than 5.9?)")?;
    let pinned = pin_all(&mut ebpf, link, &dir);
    if pinned.is_err() {
        // Pins made so far would keep a half-attached program: remove them all.
        let _ = crate::pins::remove(&dir);
    }
    pinned?;
    status_of(interface, &dir)
}

fn pin_all(ebpf: &mut Ebpf, link: FdLink, dir: &Path) -> anyhow::Result<()> {
    crate::maps::pin(ebpf, dir, &map_names::DECAP)?;
    crate::pins::pin_program_and_link(ebpf, DECAP_PROGRAM_NAME, link, dir)
}

/// Detaches the decapsulation program from `interface` by removing its pins.
pub fn detach(interface: &str, pin_root: &Path) -> anyhow::Result<PathBuf> {
    crate::privilege::require("detaching the decapsulation program")?;
    let dir = pin_dir(pin_root, interface);
    if !dir.is_dir() {
        return Err(NotLoaded(format!(
            "no decapsulation program is pinned for `{interface}` under {}: `xlb decap status` \
             lists what is attached (pass the same --pin-path as the attach)",
            dir.display()
        ))
        .into());
    }
    let program = ProgramInfo::from_pin(crate::pins::program_path(&dir))
        .ok()
        .map(|info| info.id());
    crate::pins::remove(&dir)?;
    // The kernel releases a link whose last reference went a moment later: wait for it, so
    // that what follows a detach sees the interface without the program.
    let deadline = Instant::now() + DETACH_WAIT;
    while let Some(xdp) = netdev::link(interface).ok().and_then(|link| link.xdp) {
        if Some(xdp.program_id) != program {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "removed the pins under {} but `{interface}` still runs program {} after                  {DETACH_WAIT:?}: another process holds its link (find it with `bpftool link                  show` and stop it)",
                dir.display(),
                xdp.program_id
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(dir)
}

/// How long [`detach`] waits for the kernel to detach the program.
const DETACH_WAIT: Duration = Duration::from_secs(2);

/// Every decapsulation program pinned under `pin_root`, by interface.
pub fn status(pin_root: &Path) -> anyhow::Result<Vec<DecapStatus>> {
    crate::privilege::require("reading the decapsulation program")?;
    let Ok(entries) = std::fs::read_dir(pin_root) else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", pin_root.display()))?;
        if entry.path().is_dir() {
            let interface = entry.file_name().to_string_lossy().into_owned();
            all.push(status_of(&interface, &entry.path())?);
        }
    }
    all.sort_by(|a, b| a.interface.cmp(&b.interface));
    Ok(all)
}

/// The program pinned in `dir` for `interface`: its addresses, counters and whether the
/// interface (in the current network namespace) runs it.
fn status_of(interface: &str, dir: &Path) -> anyhow::Result<DecapStatus> {
    let mut maps = Pinned::open(dir, &map_names::DECAP)?;
    let program_id = ProgramInfo::from_pin(crate::pins::program_path(dir))
        .with_context(|| format!("reading the pinned program under {}", dir.display()))?
        .id();
    let map = crate::maps::Maps::map_mut(&mut maps, map_names::DECAP_ADDRS)?;
    let addrs: HashMap<&mut MapData, DecapKey, u32> = HashMap::try_from(map)
        .with_context(|| format!("map {} is not a hash map", map_names::DECAP_ADDRS))?;
    let mut addresses: Vec<IpAddr> = addrs
        .keys()
        .map(|key| key.map(|key| address(&key)))
        .collect::<Result<_, _>>()
        .context("reading the decapsulation addresses")?;
    addresses.sort();
    let running = netdev::link(interface).ok().and_then(|link| link.xdp);
    let attached = running
        .as_ref()
        .is_some_and(|xdp| xdp.program_id == program_id);
    let totals = Totals::read(&maps)?;
    let dropped = Reason::ALL
        .iter()
        .filter(|r| r.verdict() == lb_common::Verdict::Drop)
        .map(|&r| totals.reason(r).packets)
        .sum();
    let decapsulated = totals.reason(Reason::Decapsulated).packets;
    Ok(DecapStatus {
        interface: interface.to_owned(),
        pin_path: dir.to_path_buf(),
        addresses,
        attached,
        mode: running.filter(|_| attached).map(|xdp| xdp.mode.name()),
        program_id,
        decapsulated,
        passed_other: totals.verdict(lb_common::Verdict::Pass).packets - decapsulated,
        dropped,
    })
}
