//! The daemon behind `xlb run --config`: keeps the live state in line with the config file and
//! with the backends' health, serves metrics, and raises skew alerts.
//!
//! One task owns the maps; everything that changes them (a health transition, a reload, a
//! drain that timed out, an operator's verb over the control socket) goes through
//! [`rollout::apply`], so each change is all or nothing.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
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
    apply::{self, ApplyReport, Made},
    audit,
    backend::{self, BackendAction},
    bgp::Announcer,
    capacity::Capacity,
    config::{self, ConfigText, HostEnvironment, Model, VipModel},
    control::{self, Identity, Incoming, Refusal, Request},
    diff::effect::KnownCounts,
    down, exit, flood,
    health::{self, Checker, Health, Probe, ProbeRuntime, Target, Tracker},
    live::{BackendState, Snapshot},
    metrics,
    notify::Notifier,
    pins,
    rollout::{self, Applied, Desired, DesiredVip, Planned, describe_vip, live_address},
    skew::{self, Detector},
};

mod canary;
mod shares;
mod watch;

/// How often the config file is checked for changes and alerts and drains are evaluated.
const TICK: Duration = Duration::from_secs(1);
/// How far apart two ticks may be from exactly [`TICK`].
const TICK_JITTER: Duration = Duration::from_millis(50);
/// How long apart the two reads of a changed config file are: a file being rewritten in place
/// (truncated, half written, paused) is applied only once both reads agree.
const SETTLE: Duration = Duration::from_millis(200);
/// How long the loop lets a round of probe outcomes gather before acting on them: the probes
/// of a round start together and end within a few milliseconds, so the loop wakes once per
/// round rather than once per probe (10,000 wake-ups a second at scale), and a round that
/// changes many backends is one apply. The loop serves requests meanwhile.
const GATHER: Duration = Duration::from_millis(10);
/// Probe outcomes the channel holds: a whole round at 10,000 probes gathers without making
/// the probes wait for room.
const QUEUED_PROBES: usize = 16_384;

/// What the metrics endpoint shows beyond the maps, updated by the daemon.
type Shared = Arc<Mutex<metrics::Extra>>;

pub struct Daemon {
    file: PathBuf,
    pin_path: PathBuf,
    model: Model,
    /// The config file's bytes as last applied (the text its check kept, shared).
    bytes: Arc<str>,
    /// [`config::hash`] of `bytes`, taken once when they were checked: hashing 10 MB costs
    /// milliseconds, and every apply records it.
    hash: u64,
    /// The slot counts of the tables the running config was judged on: a reload builds only
    /// the tables of the VIPs its change touches to check them.
    counts: KnownCounts,
    /// The VIPs of the last file checked, parsed and judged: a reload parses and checks only
    /// the VIPs that changed.
    recheck: config::Recheck,
    /// A changed file waiting [`SETTLE`] for its second read.
    settling: Option<Settling>,
    /// The bytes of the last file found invalid, so the watch does not re-check them every
    /// second (a SIGHUP does).
    rejected: Option<Vec<u8>>,
    /// The file's metadata when the bytes above were read: the tick reads the file only when
    /// that moved.
    watch: watch::Watch,
    /// Keeps the XDP link open and puts back pins removed while the daemon runs.
    keeper: pins::Keeper,
    /// Operators' requests from the control socket.
    requests: mpsc::Receiver<Incoming>,
    targets: Vec<Target>,
    /// The probes the targets share, each probe's tracks and each track's targets.
    shared_probes: health::Probes,
    /// Each target's index by VIP name and backend address.
    target_index: TargetIndex,
    /// The health of each track (a target's is its track's).
    tracker: Tracker,
    /// Moves whenever a backend's health may have changed (a transition, a reload): the
    /// alarms judge each backend's health again only then.
    health_epoch: u64,
    /// Counts the health transitions and restarts of the checks: a VIP's desired state is
    /// built again only when this moved (or the VIP changed).
    health_changes: u64,
    /// What each VIP's desired state was last built from.
    desired_vips: RefCell<Vec<VipWithHealth>>,
    /// The desired state last built, shared with whoever asked for it: the next build moves
    /// each VIP's state that still holds out of it (100,000 backends are not copied), once
    /// that user let it go.
    last_desired: RefCell<Option<Arc<Desired>>>,
    /// The VIPs whose every backend fails its checks, as the last desired state found them
    /// (logged when that changes).
    failing_open: RefCell<BTreeSet<String>>,
    /// Runs one task per shared probe: its outcomes carry the probe's index.
    checker: Checker,
    /// The thread the checker's tasks run on.
    probe_runtime: ProbeRuntime,
    probes: mpsc::Receiver<Probe>,
    /// A round of probe outcomes being gathered: until when, and whether one changed a
    /// backend's health so far.
    gathering: Option<(tokio::time::Instant, bool)>,
    probe_sender: mpsc::Sender<Probe>,
    detector: Detector,
    /// The alarms' counters and expected shares, the tables counted once per change.
    shares: shares::Shares,
    /// The live state as the daemon's last apply left it: the next apply starts from it rather
    /// than reading 100,000 entries again, while the generation is still that apply's (any
    /// other writer through xlb moves it, and the apply reads the maps afresh: repair on apply
    /// as before). An edit behind xlb's back that keeps the generation (bpftool) is repaired
    /// by the first apply after the scheduled audit, which drops this.
    written: Option<Snapshot>,
    /// `flood` and `evictions` alerts.
    flood: flood::Detector,
    /// Drained backends and when the daemon first saw them drained.
    drained_since: BTreeMap<(VipKey, IpAddr), Instant>,
    shared: Shared,
    /// `[bgp]`: announces the VIPs that have a healthy backend.
    announcer: Option<Announcer>,
    /// When the next scheduled audit of the live maps is due.
    next_audit: Instant,
    /// The generation of the daemon's own last change: any other one in the meta map means
    /// someone else changed the live state, and the daemon audits at once.
    own_generation: u64,
    /// Audit alerts firing, by VIP (`global` for program-wide findings).
    audit_alerts: BTreeMap<String, skew::Alert>,
    /// The canary apply being watched, if any.
    canary: Option<canary::Running>,
}

/// Why the daemon stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C, SIGTERM or the deadline: the pinned data plane forwards on.
    Signal,
    /// `xlb down`: the VIPs are withdrawn and the pins removed.
    Down,
}

/// SIGTERM and SIGHUP, taken over from their default actions before the daemon changes
/// anything: a SIGTERM while it starts stops it cleanly once it runs, instead of killing it.
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn take() -> anyhow::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

impl Daemon {
    /// Starts health checks, the metrics endpoint and the server of `control_socket` for
    /// `model`, already applied from `text` (whose tables were judged on `counts`, and whose
    /// VIPs `recheck` parsed and judged) in `first_apply`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is one part of the state `xlb run` hands over"
    )]
    pub async fn start(
        file: &Path,
        model: Model,
        text: ConfigText,
        counts: KnownCounts,
        recheck: config::Recheck,
        keeper: pins::Keeper,
        control_socket: tokio::net::UnixListener,
        first_apply: Duration,
    ) -> anyhow::Result<Daemon> {
        let (probe_sender, probes) = mpsc::channel(QUEUED_PROBES);
        let probe_runtime =
            ProbeRuntime::start().context("starting the health checks' thread failed")?;
        let targets = health::targets(&model);
        let shared_probes = health::Probes::of(&targets);
        let shared: Shared = Arc::default();
        let listener = metrics::listen(model.global.metrics_address).with_context(|| {
            format!(
                "serving metrics on {} (global.metrics_address) failed: pick a free address",
                model.global.metrics_address
            )
        })?;
        let pin_path = model.global.pin_path.clone();
        {
            let mut extra = shared
                .lock()
                .map_err(|_| anyhow::anyhow!("metrics state poisoned"))?;
            extra.set_vip_names(&model);
            extra.set_targets(shared_probes.rows(&targets));
            extra.interface = Some(model.global.interface.clone());
            extra.apply_seconds.observe(first_apply);
        }
        let render: metrics::RenderFn = {
            // Opened once: a scrape costs no open, and a removed pin cannot blind the metrics.
            let maps = Mutex::new(pins::open(&pin_path)?);
            let shared = Arc::clone(&shared);
            Arc::new(move || {
                let mut maps = maps
                    .lock()
                    .map_err(|_| anyhow::anyhow!("metrics maps poisoned"))?;
                let extra = shared
                    .lock()
                    .map_err(|_| anyhow::anyhow!("metrics state poisoned"))?
                    .clone();
                metrics::render(&mut *maps, &extra)
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
            tracker: Tracker::new(shared_probes.tracks.len()),
            health_epoch: 0,
            health_changes: 0,
            desired_vips: RefCell::default(),
            last_desired: RefCell::default(),
            failing_open: RefCell::default(),
            checker: Checker::start(
                probe_runtime.handle(),
                shared_probes.probes.clone(),
                probe_sender.clone(),
            ),
            probe_runtime,
            gathering: None,
            target_index: target_index(&targets),
            shared_probes,
            targets,
            detector: Detector::new(skew::Settings::from(&model.alerts)),
            shares: shares::Shares::default(),
            written: None,
            flood: flood::Detector::new(flood::Settings::from(&model.alerts)),
            model,
            bytes: text.text,
            hash: text.hash,
            counts,
            recheck,
            settling: None,
            rejected: None,
            watch: watch::Watch::default(),
            keeper,
            requests,
            probes,
            probe_sender,
            drained_since: BTreeMap::new(),
            shared,
            announcer: model_announcer(&model_bgp, &pin_path_for_bgp),
            next_audit: Instant::now(),
            own_generation: 0,
            audit_alerts: BTreeMap::new(),
            canary: None,
        })
    }

    /// Runs until Ctrl-C or SIGTERM (or `deadline`), or `xlb down`. Every other error is
    /// logged; none stops it.
    pub async fn run(
        mut self,
        ebpf: &mut Ebpf,
        deadline: Option<Duration>,
        signals: Signals,
    ) -> anyhow::Result<Stopped> {
        let Signals {
            mut terminate,
            mut hangup,
        } = signals;
        info!("running: SIGHUP reloads the config, SIGTERM stops the daemon");
        let mut ticker = tokio::time::interval(TICK);
        self.own_generation = generation(ebpf);
        let notifier = Notifier::from_env();
        notifier.ready(&format!(
            "generation {} of {} live",
            self.own_generation,
            self.file.display()
        ));
        // Without a watchdog the branch is disabled; the period only has to be valid.
        let mut watchdog = tokio::time::interval(
            notifier
                .ping_interval()
                .unwrap_or(Duration::from_secs(3600)),
        );
        let stop = async {
            match deadline {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        let stopped = loop {
            let settle_at = self.settling.as_ref().map(|settling| settling.at);
            let gathered_at = self.gathering.map(|(at, _)| at);
            tokio::select! {
                _ = &mut stop => break Stopped::Signal,
                _ = tokio::signal::ctrl_c() => break Stopped::Signal,
                _ = terminate.recv() => break Stopped::Signal,
                _ = hangup.recv() => {
                    info!(file = %self.file.display(), "SIGHUP: reloading");
                    self.reload(Trigger::Signal);
                }
                Some(probe) = self.probes.recv(), if gathered_at.is_none() => self.probed(&probe),
                _ = tokio::time::sleep_until(gathered_at.unwrap_or_else(tokio::time::Instant::now)),
                    if gathered_at.is_some() => self.gathered(ebpf),
                Some(probe) = canary_probe(&mut self.canary) => self.canary_probed(ebpf, &probe),
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
                _ = ticker.tick() => self.tick(ebpf).await,
                _ = tokio::time::sleep_until(settle_at.unwrap_or_else(tokio::time::Instant::now)),
                    if settle_at.is_some() => self.settled(ebpf),
                // Pinged from this loop, so a loop stuck in a map update or a probe stops the
                // pings and systemd restarts the daemon (which adopts the pinned data plane).
                _ = watchdog.tick(), if notifier.ping_interval().is_some() => {
                    match readable_generation(ebpf) {
                        Ok(_) => notifier.ping(),
                        Err(err) => error!("the maps do not answer ({err:#}): no watchdog ping"),
                    }
                }
            }
        };
        notifier.stopping();
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
        let value = match request {
            // Absolute: the asker's working directory may be another.
            Request::Identify => serde_json::to_value(Identity {
                config: std::path::absolute(&self.file).unwrap_or_else(|_| self.file.clone()),
            }),
            Request::Apply {
                file,
                shown,
                options,
            } => {
                if !control::same_file(&file, &self.file) {
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
                // The operator's apply checks the file as it is now.
                self.settling = None;
                serde_json::to_value(self.apply_requested(ebpf, &shown, &options)?)
            }
            Request::Canary {
                file,
                overrides,
                percent,
                watch_ms,
            } => {
                let started = self.start_canary(
                    ebpf,
                    &file,
                    overrides,
                    percent,
                    Duration::from_millis(watch_ms),
                )?;
                serde_json::to_value(started)
            }
            Request::CanaryEnd { action } => {
                serde_json::to_value(self.end_canary_by_hand(ebpf, action)?)
            }
            Request::Backend { .. } if self.canary.is_some() => {
                return Err(Refusal {
                    code: exit::FAILED,
                    message: "a canary apply is being watched: `xlb canary promote|abort` \
                              ends it, then change the backend"
                        .to_owned(),
                });
            }
            Request::Backend {
                vip,
                backend,
                action,
                force,
            } => {
                let report = backend::parse_vip(&vip)
                    .and_then(|key| backend::change(ebpf, &key, backend, action, force))
                    .map_err(failed)?;
                // The daemon's own change: not someone else's for the scheduled audit.
                self.own_generation = report.generation;
                warn!(vip = %report.vip, backend = %backend, generation = report.generation,
                    "xlb backend: {}", report.state);
                serde_json::to_value(report)
            }
            Request::Down => {
                // No health change may touch the maps between the withdrawal and the exit.
                std::mem::replace(&mut self.checker, Checker::idle()).stop();
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

    /// Counts `probe`, the first of a round, and gathers the rest of the round for
    /// [`GATHER`].
    fn probed(&mut self, probe: &Probe) {
        let changed = self.record_probe(probe);
        self.gathering = Some((tokio::time::Instant::now() + GATHER, changed));
    }

    /// Counts the round's probes queued since its first, then rebuilds the tables of all the
    /// targets that changed health in one apply: a round of probes that takes down many
    /// backends is one apply, not one per backend.
    fn gathered(&mut self, ebpf: &mut Ebpf) {
        let Some((_, mut changed)) = self.gathering.take() else {
            return;
        };
        while let Ok(next) = self.probes.try_recv() {
            changed |= self.record_probe(&next);
        }
        if changed {
            let _ = self.reconcile(ebpf, "health change");
        }
    }

    /// One outcome of a shared probe counts once for each of its tracks, and so for every
    /// target it serves; whether any of them changed health.
    fn record_probe(&mut self, probe: &Probe) -> bool {
        let Some(tracks) = self.shared_probes.members.get(probe.target_index) else {
            return false;
        };
        let mut changed = false;
        let mut extra = self.shared.lock().ok();
        if let Some(extra) = extra.as_mut() {
            extra.record_check(probe.target_index, probe.duration);
        }
        for &t in tracks {
            let track = &self.shared_probes.tracks[t];
            let Some(transition) = self.tracker.record(t, probe, track.rise, track.fall) else {
                continue;
            };
            changed = true;
            self.health_epoch += 1;
            self.health_changes += 1;
            let up = transition.health == Health::Up;
            for &index in &track.targets {
                let Some(target) = self.targets.get(index) else {
                    continue;
                };
                if let Some(extra) = extra.as_mut() {
                    extra.set_up(index, up);
                }
                if up {
                    info!(vip = %target.vip, backend = %target.backend,
                        reason = %transition.reason, "backend up: putting it back");
                } else {
                    warn!(vip = %target.vip, backend = %target.backend,
                        reason = %transition.reason, "backend down: taking it out of the table");
                }
            }
        }
        changed
    }

    /// Whether `backend` of the VIP named `vip` is down by its health checks.
    fn down(&self, vip: &str, backend: IpAddr) -> bool {
        self.down_in(self.target_index.get(vip), backend)
    }

    /// Whether `backend` is down by its health checks, `targets` being its VIP's targets (one
    /// lookup of the name per VIP, not per backend).
    fn down_in(&self, targets: Option<&Targets>, backend: IpAddr) -> bool {
        targets
            .and_then(|backends| backends.get(&backend))
            .and_then(|&i| self.shared_probes.track_of.get(i))
            .is_some_and(|&track| self.tracker.health(track) == Health::Down)
    }

    async fn tick(&mut self, ebpf: &mut Ebpf) {
        self.reload(Trigger::Watch);
        self.judge_canary(ebpf);
        self.restore_pins(ebpf);
        self.expire_drains(ebpf);
        self.check_alerts(ebpf);
        self.audit_if_due(ebpf);
        self.announce();
    }

    /// The scheduled audit: every `audit.interval_seconds`, and at once when the live state
    /// changed behind the daemon's back (another generation in the meta map), the live maps
    /// are audited against the config and the health the daemon holds (drift) and for where
    /// each VIP's new flows really go (outage); findings become metrics and the `audit` alert.
    /// A map edited without a new generation (bpftool) is found at the next scheduled run.
    fn audit_if_due(&mut self, ebpf: &mut Ebpf) {
        // The tried tables' backends are not in the config yet: audit once it is over.
        if self.canary.is_some() {
            return;
        }
        let now = Instant::now();
        let live_generation = generation(ebpf);
        let foreign = live_generation != self.own_generation;
        if now < self.next_audit && !foreign {
            return;
        }
        if foreign {
            warn!(
                expected = self.own_generation,
                found = live_generation,
                "the live state was changed by someone else: auditing it now"
            );
            self.own_generation = live_generation;
        }
        self.next_audit = now + self.model.audit.interval;
        // The alarms too judge against the live tables again, and the next apply starts from
        // them, whoever edited them.
        self.shares.forget();
        self.written = None;
        let findings = match audit::against_config(ebpf, &self.model, self.hash, &self.file) {
            Ok(findings) => findings,
            Err(err) => return error!("the scheduled audit failed: {err:#}"),
        };
        let mut by_vip: BTreeMap<String, Vec<&audit::Finding>> = BTreeMap::new();
        for finding in findings
            .iter()
            .filter(|f| f.severity == audit::Severity::Drift)
        {
            let vip = finding.vip.clone().unwrap_or_else(|| "global".to_owned());
            by_vip.entry(vip).or_default().push(finding);
        }
        let mut changes = Vec::new();
        for (vip, found) in &by_vip {
            let message = format!(
                "vip {vip}: the scheduled audit found {}: {} (`xlb audit {}` lists them with \
                 their fixes)",
                if found.len() == 1 {
                    "1 problem".to_owned()
                } else {
                    format!("{} problems", found.len())
                },
                found
                    .iter()
                    .map(|f| format!(
                        "{}{}: expected {}, found {}",
                        f.kind.name(),
                        f.backend
                            .as_ref()
                            .map(|b| format!(" {b}"))
                            .unwrap_or_default(),
                        f.expected,
                        f.actual
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                self.file.display()
            );
            // An outage names the server that takes everything, as the dominant alert does.
            let backend = found
                .iter()
                .find(|f| f.kind == audit::Kind::Outage)
                .and_then(|f| f.backend.as_deref()?.parse().ok());
            let alert = skew::Alert {
                kind: skew::AlertKind::Audit,
                vip: vip.clone(),
                backend,
                message,
                firing: true,
            };
            if !self.audit_alerts.contains_key(vip) {
                changes.push(alert.clone());
            }
            self.audit_alerts.insert(vip.clone(), alert);
        }
        let cleared: Vec<String> = self
            .audit_alerts
            .keys()
            .filter(|vip| !by_vip.contains_key(*vip))
            .cloned()
            .collect();
        for vip in cleared {
            if let Some(alert) = self.audit_alerts.remove(&vip) {
                changes.push(skew::Alert {
                    firing: false,
                    message: format!("vip {vip}: the scheduled audit finds no problem any more"),
                    ..alert
                });
            }
        }
        for alert in &changes {
            self.raise(alert);
        }
        if let Ok(mut extra) = self.shared.lock() {
            extra.audit.runs += 1;
            extra.audit.last_run = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            extra.audit.findings = BTreeMap::new();
            for finding in &findings {
                *extra
                    .audit
                    .findings
                    .entry((finding.kind.name(), finding.severity.name()))
                    .or_default() += 1;
            }
            extra.alerts = self.firing_alerts();
        }
    }

    /// Every alert firing: the skew detector's and the audit's.
    fn firing_alerts(&self) -> Vec<skew::Alert> {
        let mut alerts = self.detector.firing();
        alerts.extend(self.audit_alerts.values().cloned());
        alerts.extend(self.flood.firing());
        alerts
    }

    /// Logs an alert that started or stopped firing and runs the alert command for it.
    fn raise(&self, alert: &skew::Alert) {
        if alert.firing {
            warn!(kind = alert.kind.name(), vip = %alert.vip, "ALERT: {}", alert.message);
        } else {
            info!(kind = alert.kind.name(), vip = %alert.vip, "alert cleared: {}", alert.message);
        }
        if let Some(command) = &self.model.alerts.command {
            run_alert_command(command, alert);
        }
    }

    /// The VIP addresses to announce: those with at least one backend that takes traffic
    /// (weight above 0) and is not down by its health checks. A VIP failing open (every
    /// checked backend down) is withdrawn, so the routers send its flows to other nodes.
    pub fn announced_vips(&self) -> std::collections::BTreeSet<IpAddr> {
        self.model
            .vips
            .iter()
            .filter(|vip| {
                vip.backends
                    .iter()
                    .any(|b| b.weight > 0 && !self.down(&vip.name, b.address))
            })
            .map(|vip| vip.address)
            .collect()
    }

    /// Brings BGP in line with [`Daemon::announced_vips`] (a failure is retried next tick).
    fn announce(&mut self) {
        // Without [bgp] nothing is announced: no need to judge every backend each tick.
        if self.announcer.is_none() {
            return;
        }
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

    /// Validates the file and, if it is valid and differs from the running config, makes it
    /// live; an invalid file is logged and the running config stays in force. The bytes
    /// checked are the bytes applied (and hashed), and only once the file stopped changing:
    /// a changed file is read again [`SETTLE`] later ([`Self::settled`]) and applied only if
    /// both reads agree. The loop goes on meanwhile: an `xlb apply` of the file does not wait.
    fn reload(&mut self, trigger: Trigger) {
        // Taken before the read: a change after it moves the stamp again.
        let stamp = watch::Stamp::of(&self.file);
        if trigger == Trigger::Watch && self.watch.unchanged(stamp) {
            return;
        }
        let Some(bytes) = self.read_config() else {
            return self.record_reload(Some(metrics::ReloadFailure::Unreadable));
        };
        if bytes == self.bytes.as_bytes() {
            if trigger == Trigger::Signal {
                info!(file = %self.file.display(), "the config file is unchanged: nothing to apply");
            }
            return self.watch.saw(stamp);
        }
        if trigger == Trigger::Watch && Some(&bytes) == self.rejected.as_ref() {
            return self.watch.saw(stamp);
        }
        // A tick while the same bytes settle does not put their second read off.
        if self.settling.as_ref().is_some_and(|s| s.bytes == bytes) {
            return;
        }
        self.settling = Some(Settling {
            bytes,
            stamp,
            trigger,
            at: tokio::time::Instant::now() + SETTLE,
        });
    }

    /// The second read of a changed file, [`SETTLE`] after the first: applied if both agree.
    fn settled(&mut self, ebpf: &mut Ebpf) {
        let Some(Settling {
            bytes,
            stamp,
            trigger,
            at: _,
        }) = self.settling.take()
        else {
            return;
        };
        match self.read_config() {
            Some(again) if again == bytes => {}
            Some(_) => {
                return info!(file = %self.file.display(), "the config file is still being \
                    written: it is applied once two reads {SETTLE:?} apart agree");
            }
            None => return,
        }
        if trigger == Trigger::Watch {
            info!(file = %self.file.display(), "config file changed: reloading");
        }
        // Applied or rejected, these bytes are dealt with.
        let _ = self.adopt(ebpf, bytes, &[]);
        self.watch.saw(stamp);
    }

    /// The config file's bytes, or `None` (logged) if it cannot be read.
    fn read_config(&self) -> Option<Vec<u8>> {
        config::read_bytes(&self.file)
            .inspect_err(|err| {
                error!(file = %self.file.display(), "cannot read the config ({err}); keeping \
                    the running one");
            })
            .ok()
    }

    /// Counts a reload's outcome in the metrics: `None` if it made the file live.
    fn record_reload(&self, failure: Option<metrics::ReloadFailure>) {
        if let Ok(mut extra) = self.shared.lock() {
            extra.record_reload(failure);
        }
    }

    /// `xlb apply` of the daemon's config file: checked once here, with the VIPs parsed and
    /// the tables counted last time (its findings naming the file `shown`, as the operator
    /// spelled it), refused unless `options` accept its warnings and what it does to the live
    /// state, else made live as a reload would. A refusal changes nothing, not the reload
    /// metrics either: the operator is told why, as when the verb checked the file itself.
    fn apply_requested(
        &mut self,
        ebpf: &mut Ebpf,
        shown: &Path,
        options: &apply::Options,
    ) -> Result<ApplyReport, Refusal> {
        let mut report = ApplyReport::new(shown, &self.pin_path);
        report.daemon = Some(std::process::id());
        let checked = config::read_bytes(&self.file)
            .map_err(|err| config::unreadable_file(shown, err))
            .and_then(|bytes| Ok((self.check(&bytes, shown, &options.overrides)?, bytes)));
        let (loaded, bytes) = match checked {
            Ok(checked) => checked,
            Err(rejected) => {
                report.reject(&rejected);
                return Ok(report);
            }
        };
        if !report.accept(&loaded.warnings, options) {
            return Ok(report);
        }
        let desired = self.desired_with_health(&loaded.model, loaded.text.hash);
        let capacity = Capacity::read(ebpf).map_err(failed)?;
        let live = Snapshot::read_unless_kept(ebpf, self.written.take()).map_err(failed)?;
        if let Some(shortfall) = apply::shortfall_refusal(&capacity, &desired) {
            self.written = Some(live);
            report.refused = Some(shortfall);
            return Ok(report);
        }
        // Planned once: the guard judges the tables the apply then writes.
        let planned = Planned::over(ebpf, live, &capacity, &desired).map_err(failed)?;
        let refusal = apply::planned_refusal(
            ebpf,
            &planned,
            &capacity,
            &desired,
            loaded.model.alerts.max_share,
            options,
        );
        match refusal {
            Ok(None) => {}
            refused => {
                // Read at the live generation: the next apply starts from it.
                self.written = Some(planned.into_live());
                report.refused = refused.map_err(failed)?;
                return Ok(report);
            }
        }
        report.made(Made::of(&self.commit(
            ebpf,
            bytes,
            loaded,
            Some((desired, planned)),
        )?));
        Ok(report)
    }

    /// Validates `bytes` (the config file's, with the findings of `overrides` as warnings)
    /// and, if they are valid, makes them live; invalid ones are logged and the running config
    /// stays in force.
    fn adopt(
        &mut self,
        ebpf: &mut Ebpf,
        bytes: Vec<u8>,
        overrides: &[String],
    ) -> Result<Applied, Refusal> {
        let file = self.file.clone();
        match self.check(&bytes, &file, overrides) {
            Err(rejected) => {
                for diagnostic in &rejected.diagnostics {
                    error!("{diagnostic}");
                }
                error!(file = %self.file.display(), "the new config is invalid; keeping the running one");
                self.record_reload(Some(metrics::ReloadFailure::Invalid));
                self.rejected = Some(bytes);
                let rendered: Vec<String> = rejected
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Err(Refusal {
                    code: exit::INVALID,
                    message: format!(
                        "{} is invalid; the running config stays:\n{}",
                        self.file.display(),
                        rendered.join("\n")
                    ),
                })
            }
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    warn!("{warning}");
                }
                self.commit(ebpf, bytes, loaded, None)
            }
        }
    }

    /// Checks `bytes` (the config file's, named `file` in the findings), parsing and judging
    /// only the VIPs that changed and counting only the tables not counted before; logs how
    /// long that took.
    fn check(&mut self, bytes: &[u8], file: &Path, overrides: &[String]) -> config::Checked {
        let started = Instant::now();
        let parsed = config::parse_bytes_reusing(bytes, file, &mut self.recheck.reparse);
        let parse_seconds = started.elapsed().as_secs_f64();
        let checked = parsed.and_then(|parsed| {
            config::check_parsed_reusing(
                parsed,
                &HostEnvironment,
                overrides,
                &self.counts,
                &mut self.recheck,
            )
        });
        let check_seconds = started.elapsed().as_secs_f64() - parse_seconds;
        let vips_judged = self.recheck.vips.judged();
        match self.recheck.reparse.parsed() {
            Some(vips_parsed) => info!(
                vips_parsed,
                vips_judged,
                parse_seconds,
                check_seconds,
                "config checked: only the VIPs that changed parsed"
            ),
            None => info!(
                vips_judged,
                parse_seconds, check_seconds, "config checked: parsed whole"
            ),
        }
        checked
    }

    /// Makes `loaded` (checked from `bytes`, the config file's) the running config and applies
    /// it; a change of pin path or interface is refused (those need a restart). `prepared` is
    /// its desired state and the apply of it planned, if the caller made them (for the outage
    /// guards) with the health the daemon holds now: they are written unless new checks
    /// restart that health.
    fn commit(
        &mut self,
        ebpf: &mut Ebpf,
        bytes: Vec<u8>,
        config::Loaded {
            model,
            warnings: _,
            counts,
            text,
        }: config::Loaded,
        prepared: Option<(Arc<Desired>, Planned)>,
    ) -> Result<Applied, Refusal> {
        if model.global.pin_path != self.pin_path
            || model.global.interface != self.model.global.interface
        {
            let message = "the pin path and the interface cannot change while running; \
                           restart xlb to change them";
            error!("{message}");
            self.record_reload(Some(metrics::ReloadFailure::Refused));
            self.rejected = Some(bytes);
            return Err(Refusal {
                code: exit::FAILED,
                message: message.to_owned(),
            });
        }
        if let Ok(running) = Capacity::read(ebpf)
            && running != model.capacity
        {
            warn!(
                "[capacity] asks for {}, the running program holds {running}: the new \
                 capacity takes effect when xlb restarts (README, \"Capacity\"); this \
                 reload applies within the running one",
                model.capacity
            );
        }
        // A reload that changes what no check reads (a weight) builds none of the targets.
        let targets = (!same_checks(&model, &self.model)).then(|| health::targets(&model));
        let mut prepared = prepared;
        if let Some(targets) = targets.filter(|targets| *targets != self.targets) {
            // The health the prepared apply was computed with is gone.
            self.unprepare(&mut prepared);
            // New checks start from "up", as at start-up.
            std::mem::replace(&mut self.checker, Checker::idle()).stop();
            // Probes the old checker queued carry the old target indices.
            while self.probes.try_recv().is_ok() {}
            self.gathering = None;
            self.shared_probes = health::Probes::of(&targets);
            self.checker = Checker::start(
                self.probe_runtime.handle(),
                self.shared_probes.probes.clone(),
                self.probe_sender.clone(),
            );
            self.tracker = Tracker::new(self.shared_probes.tracks.len());
            self.health_changes += 1;
            self.target_index = target_index(&targets);
            if let Ok(mut extra) = self.shared.lock() {
                extra.set_targets(self.shared_probes.rows(&targets));
            }
            self.targets = targets;
        }
        // The alarms keep their window and what fires unless their settings change: a reload
        // does not raise every firing alert again (900 lines each at 1,000 VIPs).
        if model.alerts != self.model.alerts {
            self.detector = Detector::new(skew::Settings::from(&model.alerts));
            self.flood = flood::Detector::new(flood::Settings::from(&model.alerts));
        }
        let renamed = !same_names(&model, &self.model);
        if renamed && let Ok(mut extra) = self.shared.lock() {
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
                error!("withdrawing the VIPs from the old [bgp] routes file failed: {err:#}");
            }
            self.announcer = model_announcer(&model.bgp, &self.pin_path);
        }
        if renamed && let Err(err) = crate::names::record(&self.pin_path, &model) {
            warn!("{err:#}");
        }
        self.model = model;
        // The samples ask each backend's health again: its targets may have changed.
        self.health_epoch += 1;
        // The checked text is these bytes: kept once, with the hash its check took.
        self.bytes = text.text;
        self.hash = text.hash;
        self.counts = counts;
        self.rejected = None;
        let applied = self.reconcile_with(ebpf, "reload", prepared);
        self.record_reload(applied.is_err().then_some(metrics::ReloadFailure::Apply));
        applied.map_err(|err| Refusal {
            code: exit::FAILED,
            message: format!("{err:#}"),
        })
    }

    /// Applies the config with the backends' health. When every checked backend of a VIP is
    /// down, the VIP fails open: all its backends stay in the table (a health-check outage
    /// must not take the service down), and the few_healthy alert says so.
    fn reconcile(&mut self, ebpf: &mut Ebpf, why: &str) -> anyhow::Result<Applied> {
        self.reconcile_with(ebpf, why, None)
    }

    /// [`Self::reconcile`], writing `prepared` (a desired state and the apply of it planned)
    /// where the caller already has them (an apply's outage guards made them: making them
    /// again takes as long).
    fn reconcile_with(
        &mut self,
        ebpf: &mut Ebpf,
        why: &str,
        mut prepared: Option<(Arc<Desired>, Planned)>,
    ) -> anyhow::Result<Applied> {
        if self.canary.is_some() {
            // Ending the canary writes the maps the plan was made over.
            self.unprepare(&mut prepared);
        }
        self.interrupt_canary(ebpf, why);
        let (desired, planned) = match prepared {
            Some((desired, planned)) => (desired, Some(planned)),
            None => (self.desired_with_health(&self.model, self.hash), None),
        };
        let started = Instant::now();
        let result = match planned {
            Some(planned) => planned.write(ebpf, &desired),
            None => Snapshot::read_unless_kept(ebpf, self.written.take())
                .and_then(|live| rollout::apply_over(ebpf, live, &desired)),
        }
        .map(|(applied, left)| {
            self.written = Some(left);
            applied
        });
        match &result {
            Ok(applied) => {
                let seconds = started.elapsed().as_secs_f64();
                if let Ok(mut extra) = self.shared.lock() {
                    extra.apply_seconds.observe(started.elapsed());
                }
                self.own_generation = applied.generation;
                let rebuilt = applied.vips.iter().filter(|vip| vip.rebuilt).count();
                info!(
                    generation = applied.generation,
                    rebuilt, seconds, "applied ({why})"
                );
            }
            Err(err) => error!("apply after {why} failed, the previous state stays: {err:#}"),
        }
        self.announce();
        result
    }

    /// Drops the prepared apply, keeping the live state it was planned over for the next.
    fn unprepare(&mut self, prepared: &mut Option<(Arc<Desired>, Planned)>) {
        if let Some((_, planned)) = prepared.take() {
            self.written = Some(planned.into_live());
        }
    }

    /// The desired state of `model` (from the file whose [`config::hash`] is `hash`) with the
    /// backends' health as the daemon's checks judge it. A backend the checks do not cover
    /// counts as healthy. A VIP that starts or stops failing open is logged once, not at every
    /// apply (900 VIPs failing open would be 900 lines each time).
    fn desired_with_health(&self, model: &Model, hash: u64) -> Arc<Desired> {
        // Each VIP's state is built again only if the VIP or any health changed since; the
        // others are moved out of the last desired state, or built again if it is still held.
        let mut kept = self.desired_vips.take().into_iter();
        let mut previous = (self.last_desired.take())
            .and_then(|last| Arc::try_unwrap(last).ok())
            .map(|last| last.vips.into_iter());
        let (built, vips): (Vec<VipWithHealth>, Vec<DesiredVip>) = model
            .vips
            .iter()
            .map(|vip| {
                let was = previous.as_mut().and_then(Iterator::next);
                let holds = kept.next().filter(|kept| {
                    Arc::ptr_eq(&kept.vip, vip) && kept.health_changes == self.health_changes
                });
                match (holds, was) {
                    (Some(kept), Some(was)) => (kept, was),
                    _ => self.with_health(vip),
                }
            })
            .unzip();
        let desired = Arc::new(Desired::of_vips(model, hash, vips));
        let failing_open: BTreeSet<String> = (built.iter())
            .filter(|vip| vip.failing_open)
            .map(|vip| vip.vip.name.clone())
            .collect();
        self.desired_vips.replace(built);
        self.last_desired.replace(Some(Arc::clone(&desired)));
        let before = self.failing_open.replace(failing_open);
        for vip in self.failing_open.borrow().difference(&before) {
            warn!(%vip, "every backend is failing its health checks: failing open (all stay in the table)");
        }
        for vip in before.difference(&self.failing_open.borrow()) {
            info!(%vip, "a backend passes its health checks again: no longer failing open");
        }
        desired
    }

    /// `vip`'s desired state with its backends' health, and what it was built from.
    fn with_health(&self, vip: &Arc<VipModel>) -> (VipWithHealth, DesiredVip) {
        let mut desired = DesiredVip::of(vip);
        let targets = self.target_index.get(&vip.name);
        let down: Vec<bool> = vip
            .backends
            .iter()
            .map(|b| self.down_in(targets, b.address))
            .collect();
        let failing_open = down.iter().all(|d| *d);
        for (backend, down) in desired.backends.iter_mut().zip(down) {
            backend.unhealthy = Some(down && !failing_open);
        }
        let built = VipWithHealth {
            vip: vip.clone(),
            health_changes: self.health_changes,
            failing_open,
        };
        (built, desired)
    }

    /// Puts back any pin removed while the daemon runs (the program stays attached meanwhile:
    /// the daemon holds the link), or says loudly that it cannot.
    fn restore_pins(&mut self, ebpf: &mut Ebpf) {
        match self
            .keeper
            .restore(ebpf, lb_common::PROGRAM_NAME, &lb_common::map_names::XLB)
        {
            Ok(restored) if restored.is_empty() => {}
            Ok(restored) => warn!(
                pins = ?restored,
                "pins under {} were removed while xlb runs: pinned again (the program stayed \
                 attached; `xlb down` is how to detach)",
                self.pin_path.display()
            ),
            Err(err) => error!(
                "pins under {} were removed and cannot be restored: {err:#}; the program \
                 stays attached only while this daemon runs",
                self.pin_path.display()
            ),
        }
    }

    /// Disables drained backends whose drain timeout passed: their established flows move.
    fn expire_drains(&mut self, ebpf: &mut Ebpf) {
        // A drain that times out during a watch is disabled once the canary is over.
        if self.canary.is_some() {
            return;
        }
        let (snapshot, capacity) = match (self.shares.snapshot(ebpf), Capacity::read(ebpf)) {
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
            // The drain was the operator's decision (and passed the guard): the disable that
            // ends it changes no table.
            match backend::change(ebpf, &key, address, BackendAction::Disable, true) {
                Ok(_) => warn!(vip = %describe_vip(&key), backend = %address,
                    "drain timeout ({timeout:?}) passed: disabled, its remaining flows move"),
                Err(err) => error!("disabling drained backend {address}: {err:#}"),
            }
            self.drained_since.remove(&(key, address));
        }
    }

    fn check_alerts(&mut self, ebpf: &mut Ebpf) {
        let capacity = match Capacity::read(ebpf) {
            Ok(capacity) => capacity,
            Err(err) => return error!("reading counters for alerts: {err:#}"),
        };
        let mut shares = std::mem::take(&mut self.shares);
        let names: HashMap<VipKey, &str> = self
            .model
            .vips
            .iter()
            .map(|vip| (vip.key(), vip.name.as_str()))
            .collect();
        // Healthy: takes traffic and passes its checks. A VIP failing open keeps every backend
        // active in the table, yet none is healthy: few_healthy must still fire.
        let healthy = |key: &VipKey, address: IpAddr, state: BackendState| {
            state == BackendState::Active
                && !names.get(key).is_some_and(|name| self.down(name, address))
        };
        let read = shares.read(ebpf, &capacity, self.health_epoch, healthy);
        let now = Instant::now();
        let changes = read.map(|evicted_proven| {
            let mut changes = self.detector.observe(now, shares.samples());
            let sample = flood::Sample {
                // The skew detector's counters: a VIP's are shared while they stand still.
                new_flows: self.detector.newest().cloned().unwrap_or_default(),
                evicted_proven,
            };
            changes.extend(self.flood.observe(now, sample));
            changes
        });
        self.shares = shares;
        let changes = match changes {
            Ok(changes) => changes,
            Err(err) => return error!("reading counters for alerts: {err:#}"),
        };
        for alert in changes {
            self.raise(&alert);
        }
        if let Ok(mut extra) = self.shared.lock() {
            extra.alerts = self.firing_alerts();
        }
    }
}

/// Each target's index by VIP name and backend address: looked up by a borrowed name, as the
/// alarms do for every backend each second.
type TargetIndex = HashMap<String, Targets>;

/// A VIP's targets by backend address (foldhash: an apply looks up each of 100,000).
type Targets = HashMap<IpAddr, usize, foldhash::fast::RandomState>;

fn target_index(targets: &[Target]) -> TargetIndex {
    let mut index = TargetIndex::new();
    for (i, t) in targets.iter().enumerate() {
        index.entry(t.vip.clone()).or_default().insert(t.backend, i);
    }
    index
}

/// Whether `a` and `b` have the same VIPs by name and key, in order: all the recorded names
/// and the metrics' VIP names are made of.
fn same_names(a: &Model, b: &Model) -> bool {
    a.vips.len() == b.vips.len()
        && a.vips
            .iter()
            .zip(&b.vips)
            .all(|(a, b)| a.name == b.name && a.key() == b.key())
}

/// Whether `a` and `b` give the same [`health::targets`]: the same VIP names, and in each the
/// same backends (address and check), in order.
fn same_checks(a: &Model, b: &Model) -> bool {
    fn backend(b: &config::BackendModel) -> (IpAddr, &Option<config::HealthCheck>) {
        (b.address, &b.health)
    }
    a.vips.len() == b.vips.len()
        && a.vips.iter().zip(&b.vips).all(|(a, b)| {
            // The same VIP, shared by the check that took it from the last one.
            Arc::ptr_eq(a, b)
                || a.name == b.name
                    && a.backends
                        .iter()
                        .map(backend)
                        .eq(b.backends.iter().map(backend))
        })
}

/// The refusal of a request that failed with `err`: its message and exit code.
fn failed(err: anyhow::Error) -> Refusal {
    Refusal {
        code: exit::code_of(&err),
        message: format!("{err:#}"),
    }
}

/// What a VIP's desired state with its backends' health was built from (the state itself is
/// in [`Daemon::last_desired`], at the same index).
struct VipWithHealth {
    vip: Arc<VipModel>,
    /// [`Daemon::health_changes`] when it was built.
    health_changes: u64,
    /// Every backend is down: all stay in the table.
    failing_open: bool,
}

/// A changed config file, read once and waiting for its second read.
struct Settling {
    bytes: Vec<u8>,
    stamp: Option<watch::Stamp>,
    trigger: Trigger,
    at: tokio::time::Instant,
}

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// SIGHUP: the operator asks; a file rejected before is checked again.
    Signal,
    /// The tick saw the file differ from the running config.
    Watch,
}

/// The next health probe of the canary's checks; never, without a canary.
async fn canary_probe(canary: &mut Option<canary::Running>) -> Option<Probe> {
    match canary {
        Some(running) => running.probes.recv().await,
        None => std::future::pending().await,
    }
}

/// The live generation in the meta map (0 if it cannot be read).
fn generation(ebpf: &mut Ebpf) -> u64 {
    readable_generation(ebpf).unwrap_or(0)
}

/// The live generation, or why the meta map cannot be read.
fn readable_generation(ebpf: &mut Ebpf) -> anyhow::Result<u64> {
    crate::live::generation(ebpf)
}

/// Whether `a` and `b` name the same file.
fn model_announcer(bgp: &Option<config::Bgp>, pin_path: &Path) -> Option<Announcer> {
    bgp.clone().map(|bgp| Announcer::new(bgp, pin_path))
}

/// Runs the configured alert command with the alert in its environment, without waiting, and
/// without capabilities.
fn run_alert_command(command: &str, alert: &skew::Alert) {
    let mut shell = tokio::process::Command::new("sh");
    // SAFETY: shed_capabilities only makes system calls.
    unsafe { shell.pre_exec(crate::child::shed_capabilities) };
    let spawned = shell
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FixedEnvironment, test_texts::two_backends_with};

    /// The two-backend config with VIP `name` and `lines` added to its first backend.
    fn model(name: &str, lines: &str) -> Model {
        let mac = "mac = \"02:00:00:00:01:00\"\n";
        let text = format!(
            "[global]\ninterface = \"eth0\"\n{}",
            two_backends_with(mac, &format!("{mac}{lines}"))
                .replace("name = \"web\"", &format!("name = \"{name}\""))
        );
        config::check_text(
            &text,
            Path::new("xlb.toml"),
            &FixedEnvironment::new(&["eth0"]),
        )
        .expect("a valid config")
        .model
    }

    /// Test that the shortcuts a reload takes agree with what they skip: a weight changed keeps
    /// the names and the health targets (equal when built); a check changed keeps the names,
    /// not the targets; a VIP renamed changes both.
    #[test]
    fn a_reload_rebuilds_targets_and_names_only_when_they_change() {
        let health = "  health = { check = \"tcp\", port = 80 }\n";
        let base = model("web", health);
        for (changed, checks_kept, names_kept) in [
            (model("web", &format!("{health}  weight = 3\n")), true, true),
            (model("web", &health.replace("80", "81")), false, true),
            (model("api", health), false, false),
        ] {
            assert_eq!(same_checks(&base, &changed), checks_kept, "{changed:?}");
            assert_eq!(same_names(&base, &changed), names_kept, "{changed:?}");
            if checks_kept {
                assert_eq!(health::targets(&base), health::targets(&changed));
                assert!(!health::targets(&base).is_empty());
            }
        }
    }
}
