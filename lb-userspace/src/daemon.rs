//! The daemon behind `xlb run --config`: keeps the live state in line with the config file and
//! with the backends' health, serves metrics, and raises skew alerts.
//!
//! One task owns the maps; everything that changes them (a health transition, a reload, a
//! drain that timed out, an operator's verb over the control socket) goes through
//! [`rollout::apply`], so each change is all or nothing.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::Ebpf;
use lb_common::{
    VipKey,
    service::{BACKEND_ACTIVE, BACKEND_DRAINED},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    apply::Made,
    args::BackendAction,
    backend,
    bgp::Announcer,
    capacity::Capacity,
    config::{self, HostEnvironment, Model},
    control::{self, Identity, Incoming, Refusal, Request},
    down, exit,
    health::{self, Checker, Health, Probe, Target, Tracker},
    live::{BackendState, Snapshot},
    metrics, pins,
    rollout::{self, Applied, Desired, describe_vip, live_address},
    skew::{self, Detector},
    stats,
};

/// How often the config file is checked for changes and alerts and drains are evaluated.
const TICK: Duration = Duration::from_secs(1);
/// How far apart two ticks may be from exactly [`TICK`].
const TICK_JITTER: Duration = Duration::from_millis(50);

/// What the metrics endpoint shows beyond the maps, updated by the daemon.
type Shared = Arc<Mutex<metrics::Extra>>;

pub struct Daemon {
    file: PathBuf,
    pin_path: PathBuf,
    model: Model,
    /// The config file's bytes as last applied.
    bytes: Vec<u8>,
    targets: Vec<Target>,
    tracker: Tracker,
    checker: Checker,
    probes: mpsc::Receiver<Probe>,
    probe_sender: mpsc::Sender<Probe>,
    detector: Detector,
    /// Drained backends and when the daemon first saw them drained.
    drained_since: BTreeMap<(VipKey, IpAddr), Instant>,
    shared: Shared,
    /// `[bgp]`: announces the VIPs that have a healthy backend.
    announcer: Option<Announcer>,
    /// Operators' requests from the control socket.
    requests: mpsc::Receiver<Incoming>,
}

/// Why the daemon stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C, SIGTERM or the deadline: the pinned data plane forwards on.
    Signal,
    /// `xlb down`: the VIPs are withdrawn and the pins removed.
    Down,
    /// Someone removed the pins: the program is detached once this process exits.
    PinsLost,
}

impl Daemon {
    /// Starts health checks, the metrics endpoint and the server of `control_socket` for
    /// `model`, already applied.
    pub async fn start(
        file: &Path,
        model: Model,
        bytes: Vec<u8>,
        control_socket: tokio::net::UnixListener,
    ) -> anyhow::Result<Daemon> {
        let (probe_sender, probes) = mpsc::channel(1024);
        let targets = health::targets(&model);
        let shared: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind(model.global.metrics_address)
            .await
            .with_context(|| {
                format!(
                    "serving metrics on {} (global.metrics_address) failed: pick a free address",
                    model.global.metrics_address
                )
            })?;
        let pin_path = model.global.pin_path.clone();
        shared
            .lock()
            .map_err(|_| anyhow::anyhow!("metrics state poisoned"))?
            .set_vip_names(&model);
        let render: metrics::RenderFn = {
            let (pin_path, shared) = (pin_path.clone(), Arc::clone(&shared));
            Arc::new(move || {
                let mut maps = pins::open(&pin_path)?;
                let extra = shared
                    .lock()
                    .map_err(|_| anyhow::anyhow!("metrics state poisoned"))?;
                metrics::render(&mut maps, &extra)
            })
        };
        tokio::spawn(async move {
            if let Err(err) = metrics::serve(listener, render).await {
                error!("metrics endpoint stopped: {err:#}");
            }
        });
        info!(address = %model.global.metrics_address, "serving metrics at /metrics");
        let (request_sender, requests) = mpsc::channel(16);
        tokio::spawn(control::serve(control_socket, request_sender));
        let (model_bgp, pin_path_for_bgp) = (model.bgp.clone(), pin_path.clone());
        Ok(Daemon {
            file: file.to_path_buf(),
            pin_path,
            tracker: Tracker::new(&targets),
            checker: Checker::start(targets.clone(), probe_sender.clone()),
            targets,
            detector: Detector::new(alert_settings(&model)),
            model,
            bytes,
            probes,
            probe_sender,
            drained_since: BTreeMap::new(),
            shared,
            announcer: model_announcer(&model_bgp, &pin_path_for_bgp),
            requests,
        })
    }

    /// Runs until Ctrl-C or SIGTERM (or `deadline`), `xlb down`, or the pins vanish. Every
    /// other error is logged; none stops it.
    pub async fn run(
        mut self,
        ebpf: &mut Ebpf,
        deadline: Option<Duration>,
    ) -> anyhow::Result<Stopped> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut ticker = tokio::time::interval(TICK);
        let stop = async {
            match deadline {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        let stopped = loop {
            tokio::select! {
                _ = &mut stop => break Stopped::Signal,
                _ = tokio::signal::ctrl_c() => break Stopped::Signal,
                _ = terminate.recv() => break Stopped::Signal,
                _ = hangup.recv() => {
                    info!(file = %self.file.display(), "SIGHUP: reloading");
                    let _ = self.reload(ebpf, &[]);
                }
                Some(probe) = self.probes.recv() => self.probed(ebpf, &probe),
                Some((request, mut stream)) = self.requests.recv() => {
                    let down = matches!(request, Request::Down);
                    let outcome = self.serve(ebpf, request);
                    let done = outcome.is_ok();
                    if let Err(err) = control::answer(&mut stream, outcome).await {
                        warn!("answering on the control socket failed: {err:#}");
                    }
                    if down && done {
                        break Stopped::Down;
                    }
                }
                _ = ticker.tick() => {
                    if !pins::exist(&self.pin_path) || !pins::link_path(&self.pin_path).exists() {
                        error!(pin_path = %self.pin_path.display(),
                            "the pins are gone (removed by something other than `xlb down`): \
                             this daemon no longer reaches a data plane that outlives it; \
                             stopping, and the program is detached as it exits");
                        break Stopped::PinsLost;
                    }
                    self.tick(ebpf);
                }
            }
        };
        self.checker.stop();
        if let Some(announcer) = &mut self.announcer {
            match announcer.withdraw_all() {
                Ok(()) => info!("stopping: every VIP withdrawn from BGP"),
                Err(err) => error!("withdrawing the VIPs from BGP failed: {err:#}"),
            }
        }
        Ok(stopped)
    }

    /// Does what an operator's verb asked; the daemon records the change (in the maps, which
    /// every later reconcile keeps: see [`Desired::from_model`]).
    fn serve(&mut self, ebpf: &mut Ebpf, request: Request) -> Result<serde_json::Value, Refusal> {
        let failed = |err: anyhow::Error| Refusal {
            code: exit::code_of(&err),
            message: format!("{err:#}"),
        };
        let value = match request {
            Request::Identify => serde_json::to_value(Identity {
                config: self.file.clone(),
            }),
            Request::Apply { file, overrides } => {
                if !same_file(&file, &self.file) {
                    return Err(Refusal {
                        code: exit::FAILED,
                        message: format!(
                            "it owns {} and keeps it in line with its config {}; {} would be \
                             undone at its next reload, so nothing was changed: put the change \
                             into {} and run `xlb apply {}` (or let the daemon reload it within \
                             a second), or stop the daemon and apply {} directly",
                            self.pin_path.display(),
                            self.file.display(),
                            file.display(),
                            self.file.display(),
                            self.file.display(),
                            file.display()
                        ),
                    });
                }
                info!(file = %self.file.display(), "xlb apply: reloading");
                let applied = self.reload(ebpf, &overrides)?;
                serde_json::to_value(Made::of(&applied))
            }
            Request::Backend {
                vip,
                backend,
                action,
            } => {
                let report = backend::parse_vip(&vip)
                    .and_then(|key| backend::change(ebpf, &key, backend, action))
                    .map_err(failed)?;
                warn!(vip = %report.vip, backend = %backend, generation = report.generation,
                    "xlb backend: {}", report.state);
                serde_json::to_value(report)
            }
            Request::Down => {
                // No health change may touch the maps between the withdrawal and the exit.
                let idle = Checker::start(Vec::new(), self.probe_sender.clone());
                std::mem::replace(&mut self.checker, idle).stop();
                let announcer = self.announcer.take();
                let report = down::take_down(&self.pin_path, || match announcer {
                    Some(mut announcer) => announcer
                        .withdraw_all()
                        .map(|()| Some(announcer.settings().routes_file.clone())),
                    None => Ok(None),
                })
                .map_err(failed)?;
                warn!(pin_path = %self.pin_path.display(),
                    "xlb down: VIPs withdrawn, pins removed; stopping (the program detaches)");
                serde_json::to_value(report)
            }
        };
        value.map_err(|err| failed(err.into()))
    }

    fn probed(&mut self, ebpf: &mut Ebpf, probe: &Probe) {
        let Some(target) = self.targets.get(probe.target_index) else {
            return;
        };
        let check = &target.check;
        let transition = self.tracker.record(probe, check.rise, check.fall);
        if let Ok(mut extra) = self.shared.lock() {
            extra.record_check(&target.vip, target.backend, probe.duration);
            let up = self.tracker.health(probe.target_index) == Health::Up;
            extra.set_health(&target.vip, target.backend, up);
        }
        let Some(transition) = transition else { return };
        match transition.health {
            Health::Down => warn!(vip = %target.vip, backend = %target.backend,
                reason = %transition.reason, "backend down: taking it out of the table"),
            Health::Up => info!(vip = %target.vip, backend = %target.backend,
                reason = %transition.reason, "backend up: putting it back"),
        }
        let _ = self.reconcile(ebpf, "health change");
    }

    fn tick(&mut self, ebpf: &mut Ebpf) {
        if let Ok(bytes) = config::read_bytes(&self.file)
            && bytes != self.bytes
        {
            info!(file = %self.file.display(), "config file changed: reloading");
            let _ = self.reload(ebpf, &[]);
        }
        self.expire_drains(ebpf);
        self.check_alerts(ebpf);
        self.announce();
    }

    /// The VIP addresses to announce: those with at least one backend that takes traffic
    /// (weight above 0) and is not down by its health checks. A VIP failing open (every
    /// checked backend down) is withdrawn, so the routers send its flows to other nodes.
    pub fn announced_vips(&self) -> std::collections::BTreeSet<IpAddr> {
        self.model
            .vips
            .iter()
            .filter(|vip| {
                vip.backends.iter().any(|b| {
                    b.weight > 0
                        && !self
                            .targets
                            .iter()
                            .position(|t| t.vip == vip.name && t.backend == b.address)
                            .is_some_and(|i| self.tracker.health(i) == Health::Down)
                })
            })
            .map(|vip| vip.address)
            .collect()
    }

    /// Brings BGP in line with [`Daemon::announced_vips`] (a failure is retried next tick).
    fn announce(&mut self) {
        let vips = self.announced_vips();
        let Some(announcer) = &mut self.announcer else {
            return;
        };
        match announcer.update(&vips) {
            Ok(true) => info!(
                vips = ?vips,
                routes_file = %announcer.settings().routes_file.display(),
                "BGP: announcing {} VIP addresses",
                vips.len()
            ),
            Ok(false) => {}
            Err(err) => error!("updating the BGP announcements failed (retrying): {err:#}"),
        }
    }

    /// Validates the file (with the findings of `overrides` as warnings) and, if it is valid,
    /// makes it live; an invalid file is logged and the running config stays in force.
    fn reload(&mut self, ebpf: &mut Ebpf, overrides: &[String]) -> Result<Applied, Refusal> {
        let bytes = match config::read_bytes(&self.file) {
            Ok(bytes) => bytes,
            Err(err) => {
                error!(file = %self.file.display(), "cannot read the config ({err}); keeping the running one");
                return Err(Refusal {
                    code: exit::UNREADABLE,
                    message: format!("cannot read {}: {err}", self.file.display()),
                });
            }
        };
        match config::load_overriding(&self.file, &HostEnvironment, overrides) {
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    error!("{diagnostic}");
                }
                error!(file = %self.file.display(), "the new config is invalid; keeping the running one");
                // Remember it so the same bad file is not re-read every second.
                self.bytes = bytes;
                let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                Err(Refusal {
                    code: exit::INVALID,
                    message: format!(
                        "{} is invalid; the running config stays:\n{}",
                        self.file.display(),
                        rendered.join("\n")
                    ),
                })
            }
            Ok((model, warnings)) => {
                for warning in &warnings {
                    warn!("{warning}");
                }
                if model.global.pin_path != self.pin_path
                    || model.global.interface != self.model.global.interface
                {
                    let message = "the pin path and the interface cannot change while running; \
                                   restart xlb to change them";
                    error!("{message}");
                    self.bytes = bytes;
                    return Err(Refusal {
                        code: exit::FAILED,
                        message: message.to_owned(),
                    });
                }
                let targets = health::targets(&model);
                if targets != self.targets {
                    // New checks start from "up", as at start-up.
                    let idle = Checker::start(Vec::new(), self.probe_sender.clone());
                    std::mem::replace(&mut self.checker, idle).stop();
                    // Probes the old checker queued carry the old target indices.
                    while self.probes.try_recv().is_ok() {}
                    self.checker = Checker::start(targets.clone(), self.probe_sender.clone());
                    self.tracker = Tracker::new(&targets);
                    self.targets = targets;
                }
                self.detector = Detector::new(alert_settings(&model));
                if let Ok(mut extra) = self.shared.lock() {
                    extra.set_vip_names(&model);
                }
                if model.bgp != self.model.bgp {
                    if let Some(old) = &mut self.announcer
                        && model
                            .bgp
                            .as_ref()
                            .is_none_or(|b| b.routes_file != old.settings().routes_file)
                        && let Err(err) = old.withdraw_all()
                    {
                        error!(
                            "withdrawing the VIPs from the old [bgp] routes file failed: {err:#}"
                        );
                    }
                    self.announcer = model_announcer(&model.bgp, &self.pin_path);
                }
                if let Err(err) = crate::names::record(&self.pin_path, &model) {
                    warn!("{err:#}");
                }
                self.model = model;
                self.bytes = bytes;
                self.reconcile(ebpf, "reload").map_err(|err| Refusal {
                    code: exit::FAILED,
                    message: format!("{err:#}"),
                })
            }
        }
    }

    /// Applies the config with the backends' health. When every checked backend of a VIP is
    /// down, the VIP fails open: all its backends stay in the table (a health-check outage
    /// must not take the service down), and the few_healthy alert says so.
    fn reconcile(&mut self, ebpf: &mut Ebpf, why: &str) -> anyhow::Result<Applied> {
        let mut desired = Desired::from_model(&self.model, &self.bytes);
        for (vip, wanted) in self.model.vips.iter().zip(&mut desired.vips) {
            let down: Vec<bool> = vip
                .backends
                .iter()
                .map(|b| {
                    self.targets
                        .iter()
                        .position(|t| t.vip == vip.name && t.backend == b.address)
                        .is_some_and(|i| self.tracker.health(i) == Health::Down)
                })
                .collect();
            let all_down = down.iter().all(|d| *d);
            if all_down {
                warn!(vip = %vip.name, "every backend is failing its health checks: failing open (all stay in the table)");
            }
            for (backend, down) in wanted.backends.iter_mut().zip(down) {
                backend.unhealthy = Some(down && !all_down);
            }
        }
        let started = Instant::now();
        let result = rollout::apply(ebpf, &desired);
        match &result {
            Ok(applied) => {
                let seconds = started.elapsed().as_secs_f64();
                if let Ok(mut extra) = self.shared.lock() {
                    extra.last_apply_seconds = seconds;
                }
                info!(generation = applied.generation, seconds, "applied ({why})");
            }
            Err(err) => error!("apply after {why} failed, the previous state stays: {err:#}"),
        }
        self.announce();
        result
    }

    /// Disables drained backends whose drain timeout passed: their established flows move.
    fn expire_drains(&mut self, ebpf: &mut Ebpf) {
        let (snapshot, capacity) = match (Snapshot::read(ebpf), Capacity::read(ebpf)) {
            (Ok(snapshot), Ok(capacity)) => (snapshot, capacity),
            (Err(err), _) | (_, Err(err)) => return error!("reading the live state: {err:#}"),
        };
        let now = Instant::now();
        let mut draining = BTreeMap::new();
        for (key, vip) in &snapshot.vips {
            for id in capacity.backend_ids(vip.id) {
                let Some(b) = snapshot.backends.get(id as usize) else {
                    continue;
                };
                if b.flags & (BACKEND_DRAINED | BACKEND_ACTIVE) == BACKEND_DRAINED | BACKEND_ACTIVE
                {
                    let since = self.drained_since.get(&(*key, live_address(b))).copied();
                    draining.insert((*key, live_address(b)), since.unwrap_or(now));
                }
            }
        }
        self.drained_since = draining;
        let timeout = self.model.global.drain_timeout;
        let expired: Vec<(VipKey, IpAddr)> = self
            .drained_since
            .iter()
            // Ticks are 1 s ± a few ms apart: without the slack a drain noticed on one tick
            // could miss its deadline by a hair and wait a whole extra tick.
            .filter(|(_, since)| now.duration_since(**since) + TICK_JITTER >= timeout)
            .map(|(key, _)| *key)
            .collect();
        for (key, address) in expired {
            match backend::change(ebpf, &key, address, BackendAction::Disable) {
                Ok(_) => warn!(vip = %describe_vip(&key), backend = %address,
                    "drain timeout ({timeout:?}) passed: disabled, its remaining flows move"),
                Err(err) => error!("disabling drained backend {address}: {err:#}"),
            }
            self.drained_since.remove(&(key, address));
        }
    }

    fn check_alerts(&mut self, ebpf: &mut Ebpf) {
        let stats = match stats::collect(ebpf, None, self.detector.settings().factor) {
            Ok(stats) => stats,
            Err(err) => return error!("reading counters for alerts: {err:#}"),
        };
        let samples = skew::samples(&stats, |_, backend| backend.state == BackendState::Active);
        for alert in self.detector.observe(Instant::now(), &samples) {
            if alert.firing {
                warn!(kind = alert.kind.name(), vip = %alert.vip, "ALERT: {}", alert.message);
            } else {
                info!(kind = alert.kind.name(), vip = %alert.vip, "alert cleared: {}", alert.message);
            }
            if let Some(command) = &self.model.alerts.command {
                run_alert_command(command, &alert);
            }
        }
        if let Ok(mut extra) = self.shared.lock() {
            extra.alerts = self.detector.firing();
        }
    }
}

/// Whether `a` and `b` name the same file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn model_announcer(bgp: &Option<config::Bgp>, pin_path: &Path) -> Option<Announcer> {
    bgp.clone().map(|bgp| Announcer::new(bgp, pin_path))
}

fn alert_settings(model: &Model) -> skew::Settings {
    let alerts = &model.alerts;
    skew::Settings {
        window: alerts.window,
        factor: alerts.skew_factor,
        max_share: alerts.max_share,
        min_healthy: alerts.min_healthy,
        min_new_flows: alerts.min_new_flows,
    }
}

/// Runs the configured alert command with the alert in its environment, without waiting.
fn run_alert_command(command: &str, alert: &skew::Alert) {
    let spawned = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env("XLB_ALERT_KIND", alert.kind.name())
        .env("XLB_ALERT_VIP", &alert.vip)
        .env(
            "XLB_ALERT_BACKEND",
            alert.backend.map(|b| b.to_string()).unwrap_or_default(),
        )
        .env("XLB_ALERT_FIRING", if alert.firing { "1" } else { "0" })
        .env("XLB_ALERT_MESSAGE", &alert.message)
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(err) => error!("running the alert command failed: {err}"),
    }
}
