//! `xlb backend drain|disable|enable VIP BACKEND`: change one backend of a running VIP. The
//! VIP's table is rebuilt from the live state (weights are kept in the backend map) and
//! flipped like an apply, all or nothing; the operator state survives later applies. With an
//! `xlb run --config` daemon owning the pins, the daemon makes the change (see
//! [`crate::owner`]).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use lb_common::{
    VipKey,
    address::to_kernel,
    service::{BACKEND_DISABLED, BACKEND_DRAINED},
};
use serde::{Deserialize, Serialize};

use crate::{
    capacity::Capacity,
    control,
    diff::effect,
    exit,
    live::Snapshot,
    maps::Maps,
    owner::{self, Writer},
    pins,
    rollout::{self, Desired, describe_vip},
};

/// What `xlb backend` does to one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendAction {
    /// No new flows; established flows stay until they end.
    Drain,
    /// Out of the table and inactive: its established flows move to other backends.
    Disable,
    /// Back in the table with its configured weight.
    Enable,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendReport {
    pub vip: String,
    pub backend: IpAddr,
    /// "drained", "disabled" or "enabled".
    pub state: String,
    pub generation: u64,
    /// The pid of the `xlb run` daemon that made the change, when one owns the pins.
    #[serde(default)]
    pub daemon: Option<u32>,
}

/// Applies `action` to `backend` of `vip` (`ADDRESS:PORT/PROTOCOL` or a live VIP's name) on the
/// xlb pinned under `pin_path`: through its daemon when one owns the pins, else here.
pub fn change_live(
    pin_path: &std::path::Path,
    vip: &str,
    backend: IpAddr,
    action: BackendAction,
    force: bool,
) -> anyhow::Result<BackendReport> {
    let spec = crate::names::read(pin_path).resolve(vip);
    // A VIP that does not parse is a wrong command line.
    let vip = parse_vip(&spec).map_err(|err| {
        exit::Coded(
            exit::UNREADABLE,
            format!("{err:#}, or the name of a live VIP (`xlb status` lists them)"),
        )
    })?;
    let report = match owner::writer(pin_path)? {
        Writer::Daemon(daemon) => {
            let request = control::Request::Backend {
                vip: spec,
                backend,
                action,
                force,
            };
            let (pid, report) = daemon.ask::<BackendReport>(&request)?;
            BackendReport {
                daemon: Some(pid),
                ..report
            }
        }
        // A refusal by the guard is exit 1 (see exit::code_of), in text or JSON.
        Writer::Direct(_lock) => change(&mut pins::open(pin_path)?, &vip, backend, action, force)?,
    };
    Ok(report)
}

/// What `xlb backend` prints.
pub fn render(r: &BackendReport) -> String {
    format!(
        "xlb: backend {} of {} {} (generation {}){}\n",
        r.backend,
        r.vip,
        r.state,
        r.generation,
        r.daemon
            .map(|pid| format!(" through xlb run (pid {pid}), which keeps it"))
            .unwrap_or_default()
    )
}

/// Parses `ADDRESS:PORT/PROTOCOL` (`198.18.1.10:80/tcp`, `[2001:db8:1::10]:443/udp`).
pub fn parse_vip(text: &str) -> anyhow::Result<VipKey> {
    let usage = || {
        format!(
            "VIP `{text}` is not ADDRESS:PORT/PROTOCOL, e.g. 198.18.1.10:80/tcp or \
             [2001:db8:1::10]:443/udp"
        )
    };
    let (socket, protocol) = text.rsplit_once('/').with_context(usage)?;
    let socket: SocketAddr = socket.parse().ok().with_context(usage)?;
    let Some(proto) = lb_common::proto::number(protocol) else {
        bail!("{}: the protocol must be tcp or udp", usage());
    };
    let (addr, family) = to_kernel(socket.ip());
    Ok(VipKey {
        addr,
        port: socket.port().to_be(),
        proto,
        family,
    })
}

/// A change the outage guard refused; nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Applies `action` to `backend` of `vip` on the live state behind `maps`. Unless `force`, a
/// change that would leave one server with more of the VIP's new flows than the recorded
/// `alerts.max_share` (and no less than before) is refused with [`Refused`].
pub fn change(
    maps: &mut (impl Maps + ?Sized),
    vip: &VipKey,
    backend: IpAddr,
    action: BackendAction,
    force: bool,
) -> anyhow::Result<BackendReport> {
    let snapshot = Snapshot::read(maps)?;
    let capacity = Capacity::read(maps)?;
    let name = describe_vip(vip);
    if snapshot.vip(vip).is_none() {
        bail!("no VIP {name} is live; `xlb status` lists the live VIPs");
    }
    let mut desired = Desired::from_live(&snapshot, &capacity);
    let Some(target) = desired.vips.iter_mut().find(|v| v.key == *vip) else {
        bail!("no VIP {name} is live; `xlb status` lists the live VIPs");
    };
    let known: Vec<String> = target
        .backends
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    let Some(entry) = target.backends.iter_mut().find(|b| b.address == backend) else {
        bail!(
            "VIP {name} has no backend {backend}; its backends are: {}",
            known.join(", ")
        );
    };
    let (operator, state) = match action {
        BackendAction::Drain => (BACKEND_DRAINED, "drained"),
        BackendAction::Disable => (BACKEND_DISABLED, "disabled"),
        BackendAction::Enable => (0, "enabled"),
    };
    entry.operator = Some(operator);
    if !force {
        guard(maps, &snapshot, &capacity, &desired, vip, backend, state)?;
    }
    let applied = rollout::apply(maps, &desired)?;
    Ok(BackendReport {
        vip: name,
        backend,
        state: state.into(),
        generation: applied.generation,
        daemon: None,
    })
}

/// Refuses (with [`Refused`]) a change of `backend` to `state` that would leave one server of
/// `vip` with more than the recorded max share of its new flows (see
/// [`effect::concentrated`]).
fn guard(
    maps: &(impl Maps + ?Sized),
    snapshot: &Snapshot,
    capacity: &Capacity,
    desired: &Desired,
    vip: &VipKey,
    backend: IpAddr,
    state: &str,
) -> anyhow::Result<()> {
    let max_share = rollout::max_share(&snapshot.meta);
    let found = effect::concentrated(maps, snapshot, capacity, desired, max_share, Some(vip))?;
    let Some((_, server)) = found.first() else {
        return Ok(());
    };
    let name = describe_vip(vip);
    let named = desired
        .vips
        .iter()
        .find(|v| v.key == *vip)
        .map_or(0, |v| v.backends.len());
    Err(Refused(format!(
        "refused: with {backend} {state}, {} of the new flows of {name} would go to one server, \
         {} ({named} backends named; at most {} allowed by alerts.max_share): that is how the \
         outage xlb was born from starts. Nothing was changed. Bring another backend back \
         first (`xlb backend enable {name} ADDRESS`), or pass --force if this is really meant",
        effect::percent(server.share, 0),
        server.address,
        effect::percent(max_share, 0)
    ))
    .into())
}
