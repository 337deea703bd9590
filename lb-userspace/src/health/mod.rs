//! Health checks of backends: what to probe (`targets`), one probe (`probe`), the tasks that
//! probe on a timer (`Checker`) and the rise/fall state machine that turns probes into health
//! changes (`Tracker`). Nothing here touches the maps: the daemon applies the transitions.

mod probe;
mod tracker;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

pub use probe::{Cause, Connector, Failure, probe};
pub use tracker::Tracker;

use crate::config::{CheckKind, HealthCheck, Model};

/// What to check: one backend of one VIP (a backend in two VIPs is checked once per VIP).
///
/// `Hash` and `Ord` are written out because the config's `HealthCheck` derives neither; they
/// follow every field, so they agree with the derived `Eq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The VIP's name.
    pub vip: String,
    pub backend: IpAddr,
    pub check: HealthCheck,
}

impl Target {
    /// Every field, in a form that has `Hash` and `Ord`.
    fn key(&self) -> TargetKey<'_> {
        let kind = match &self.check.check {
            CheckKind::Tcp => (0, "", 0),
            CheckKind::Http {
                path,
                expect_status,
            } => (1, path.as_str(), *expect_status),
        };
        let check = &self.check;
        (
            &self.vip,
            self.backend,
            kind,
            check.port,
            check.interval,
            check.timeout,
            check.rise,
            check.fall,
        )
    }
}

/// VIP, backend, (check kind, path, expected status), port, interval, timeout, rise, fall.
type TargetKey<'a> = (
    &'a str,
    IpAddr,
    (u8, &'a str, u16),
    u16,
    Duration,
    Duration,
    u32,
    u32,
);

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for Target {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Target {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// `vip web backend 198.18.0.10 (http GET /healthz on port 80)`, for logs.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vip {} backend {} (", self.vip, self.backend)?;
        match &self.check.check {
            CheckKind::Tcp => write!(f, "tcp")?,
            CheckKind::Http { path, .. } => write!(f, "http GET {path}")?,
        }
        write!(f, " on port {})", self.check.port)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Up,
    Down,
}

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Index into the targets the `Checker` was started with.
    pub target_index: usize,
    pub ok: bool,
    /// From the start of the probe to its outcome (at most about the check's timeout).
    pub duration: Duration,
    /// What failed, when `ok` is false.
    pub error: Option<Failure>,
}

/// A change of a target's health after `rise` successes / `fall` failures in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub target_index: usize,
    pub health: Health,
    /// Why, for logs: the run of probes and, going down, the last error.
    pub reason: String,
}

/// Every backend with a health section, in file order (VIP by VIP).
pub fn targets(model: &Model) -> Vec<Target> {
    model
        .vips
        .iter()
        .flat_map(|vip| {
            vip.backends.iter().filter_map(|backend| {
                let check = backend.health.clone()?;
                Some(Target {
                    vip: vip.name.clone(),
                    backend: backend.address,
                    check,
                })
            })
        })
        .collect()
}

/// The probes `targets` need: one per backend address and check (kind, port, path, expected
/// status, interval, timeout). Targets that differ only in their VIP, rise or fall (a backend
/// serving several VIPs) share one probe, whose every outcome counts for each of them.
///
/// The targets of one probe with the same rise and fall are one track: they see the same
/// outcomes from the same start (every target starts up when its checks start), so they have
/// the same health, and the daemon counts each outcome once per track, not once per target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// The first target of each probe: what the probe checks.
    pub probes: Vec<Target>,
    /// For each probe, the indices (into `tracks`) of its tracks.
    pub members: Vec<Vec<usize>>,
    pub tracks: Vec<Track>,
    /// For each target, the index of its track.
    pub track_of: Vec<usize>,
}

/// Targets of one probe with the same rise and fall.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Track {
    /// The index of the probe (into [`Probes::probes`]).
    pub probe: usize,
    pub rise: u32,
    pub fall: u32,
    /// The indices of the targets, in their order.
    pub targets: Vec<usize>,
}

impl Probes {
    pub fn of(targets: &[Target]) -> Probes {
        let mut probe_index: HashMap<ProbeKey<'_>, usize> = HashMap::new();
        let mut track_index: HashMap<(usize, u32, u32), usize> = HashMap::new();
        let mut probes = Probes::default();
        for (i, target) in targets.iter().enumerate() {
            let (_, backend, kind, port, interval, timeout, rise, fall) = target.key();
            let next = probes.probes.len();
            let probe = *probe_index
                .entry((backend, kind, port, interval, timeout))
                .or_insert(next);
            if probe == next {
                probes.probes.push(target.clone());
                probes.members.push(Vec::new());
            }
            let next = probes.tracks.len();
            let track = *track_index.entry((probe, rise, fall)).or_insert(next);
            if track == next {
                probes.tracks.push(Track {
                    probe,
                    rise,
                    fall,
                    targets: Vec::new(),
                });
                probes.members[probe].push(track);
            }
            probes.tracks[track].targets.push(i);
            probes.track_of.push(track);
        }
        probes
    }

    /// Each target as the metrics show it: VIP name, backend, the index of its probe.
    pub fn rows<'a>(
        &'a self,
        targets: &'a [Target],
    ) -> impl Iterator<Item = (&'a str, IpAddr, usize)> + 'a {
        targets.iter().zip(&self.track_of).map(|(target, &track)| {
            (
                target.vip.as_str(),
                target.backend,
                self.tracks[track].probe,
            )
        })
    }
}

/// Backend, (check kind, path, expected status), port, interval, timeout.
type ProbeKey<'a> = (IpAddr, (u8, &'a str, u16), u16, Duration, Duration);

/// The runtime the probes run on: a thread of their own. A round of probes starts together
/// (10,000 connects at scale), and on the daemon's runtime those tasks would queue ahead of
/// its loop, and so of an operator's `xlb apply`, for the length of the round.
pub struct ProbeRuntime(Option<tokio::runtime::Runtime>);

impl ProbeRuntime {
    pub fn start() -> std::io::Result<ProbeRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("xlb-probes")
            .enable_all()
            .build()?;
        Ok(ProbeRuntime(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("taken only on drop").handle()
    }
}

impl Drop for ProbeRuntime {
    fn drop(&mut self) {
        // Dropped from the daemon's async context, where waiting for the tasks would panic.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Owns one tokio task per target; dropping it (or `stop`) ends them all.
pub struct Checker {
    tasks: JoinSet<()>,
    /// Set (under the write lock) when stopping. A task sends a probe only while holding the
    /// read lock and seeing it clear: aborting alone would let a task that is mid-poll on
    /// another worker thread still deliver one probe after `stop` returned.
    stopped: Arc<RwLock<bool>>,
}

impl Checker {
    /// Starts probing every target every `interval` (first probe at once), each probe bounded
    /// by `timeout`, in tasks on `runtime`; every probe's outcome goes to `probes`. A task ends
    /// when `probes` is closed.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        targets: Vec<Target>,
        probes: mpsc::Sender<Probe>,
    ) -> Checker {
        let stopped = Arc::new(RwLock::new(false));
        let mut tasks = JoinSet::new();
        for (index, target) in targets.into_iter().enumerate() {
            let task = run(index, target, probes.clone(), Arc::clone(&stopped));
            tasks.spawn_on(task, runtime);
        }
        Checker { tasks, stopped }
    }

    /// A checker of no target.
    pub fn idle() -> Checker {
        Checker {
            tasks: JoinSet::new(),
            stopped: Arc::default(),
        }
    }

    /// Ends every task; no probe is sent once this returns.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        *self.stopped.write().unwrap_or_else(PoisonError::into_inner) = true;
        self.tasks.abort_all();
    }
}

/// The loop of one target's task.
async fn run(
    index: usize,
    target: Target,
    probes: mpsc::Sender<Probe>,
    stopped: Arc<RwLock<bool>>,
) {
    // tokio's interval panics on zero; the config never gives one, but a hand-built target
    // could.
    let mut ticker = tokio::time::interval(target.check.interval.max(Duration::from_millis(1)));
    // A receiver that falls behind delays the next probe rather than getting a burst of them.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut connector = Connector::default();
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = connector.probe(target.backend, &target.check).await;
        let outcome = Probe {
            target_index: index,
            ok: result.is_ok(),
            duration: started.elapsed(),
            error: result.err(),
        };
        let Ok(permit) = probes.reserve().await else {
            return; // Nobody listens any more.
        };
        let stopped = stopped.read().unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        permit.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};
    use std::net::Ipv4Addr;
    use std::path::{Path, PathBuf};

    use tokio::net::TcpListener;
    use tokio::runtime::Handle;
    use tokio::sync::mpsc::error::TryRecvError;

    use super::*;
    use crate::config::{FixedEnvironment, load};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A corpus config with health checks on some backends only.
    fn config_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs/good/health-checks.toml")
    }

    fn tcp_target(port: u16, interval: Duration) -> Target {
        Target {
            vip: "web".into(),
            backend: LOOPBACK,
            check: HealthCheck {
                check: CheckKind::Tcp,
                port,
                interval,
                timeout: interval / 2,
                rise: 2,
                fall: 3,
            },
        }
    }

    /// A loopback port that accepts connections and closes them.
    async fn accepting_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local address").port();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        port
    }

    #[test]
    fn targets_are_the_checked_backends_in_file_order() {
        // Test that every backend with a health section is a target, once per VIP, in file
        // order, with the check's defaults applied; a backend without one is not probed.
        let env = FixedEnvironment::new(&["eth0"]);
        let model = load(&config_path(), &env)
            .unwrap_or_else(|rejected| panic!("the test config is invalid: {rejected:#?}"))
            .model;
        let found: Vec<(String, String, String)> = targets(&model)
            .iter()
            .map(|t| {
                let timing = format!("{:?}/{:?}", t.check.interval, t.check.timeout);
                (t.vip.clone(), t.to_string(), timing)
            })
            .collect();
        let expected = [
            (
                "web",
                "vip web backend 198.18.0.10 (http GET /healthz on port 80)",
                "1s/500ms",
            ),
            (
                "web",
                "vip web backend 198.18.0.12 (tcp on port 80)",
                "1s/500ms",
            ),
            (
                "tls",
                "vip tls backend 198.18.0.10 (tcp on port 443)",
                "2s/1s",
            ),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
        assert_eq!(found, expected);
    }

    #[test]
    fn targets_hash_and_order_by_every_field() {
        // Test that Hash and Ord, written by hand, tell apart targets that differ in any field
        // and agree with Eq.
        let base = tcp_target(80, Duration::from_secs(1));
        let mut http = base.clone();
        http.check.check = CheckKind::Http {
            path: "/".into(),
            expect_status: 200,
        };
        let mut other_status = http.clone();
        other_status.check.check = CheckKind::Http {
            path: "/".into(),
            expect_status: 204,
        };
        let mut other_vip = base.clone();
        other_vip.vip = "api".into();
        let mut other_fall = base.clone();
        other_fall.check.fall = 5;
        let all = [
            base.clone(),
            http,
            other_status,
            other_vip.clone(),
            other_fall,
            base.clone(),
        ];
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 5);
        assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 5);
        assert_eq!(base.cmp(&base.clone()), Ordering::Equal);
        // The VIP name sorts first.
        assert!(other_vip < base);
    }

    #[test]
    fn targets_of_one_backend_and_check_share_a_probe() {
        // Test that targets differing only in VIP, rise or fall share one probe serving each of
        // them, that those with the same rise and fall share a track, and that another port
        // or interval is a probe of its own.
        let base = tcp_target(80, Duration::from_secs(1));
        let mut other_vip = base.clone();
        other_vip.vip = "api".into();
        other_vip.check.rise = 7;
        let other_port = tcp_target(81, Duration::from_secs(1));
        let other_interval = tcp_target(80, Duration::from_secs(2));
        let mut third_vip = base.clone();
        third_vip.vip = "dns".into();
        let targets = [base, other_port, other_vip, other_interval, third_vip];
        let probes = Probes::of(&targets);
        let track = |probe, rise, targets: &[usize]| Track {
            probe,
            rise,
            fall: 3,
            targets: targets.to_vec(),
        };
        // The VIP with rise 7 is a track of its own on the first probe.
        assert_eq!(
            probes.tracks,
            [
                track(0, 2, &[0, 4]),
                track(1, 2, &[1]),
                track(0, 7, &[2]),
                track(2, 2, &[3])
            ]
        );
        assert_eq!(probes.members, vec![vec![0, 2], vec![1], vec![3]]);
        assert_eq!(probes.track_of, [0, 1, 2, 3, 0]);
        assert_eq!(probes.probes[0], targets[0]);
        assert_eq!(probes.probes[1], targets[1]);
        assert_eq!(probes.probes[2], targets[3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checker_probes_every_interval_until_stopped() {
        // Test that each target, probed on a runtime of its own, is probed at once and then
        // every interval (about 10 probes in a second at 100 ms), and that after stop() no
        // probe arrives and the tasks are gone; the runtime's drop does not panic here.
        let port = accepting_port().await;
        let interval = Duration::from_millis(100);
        let targets = vec![tcp_target(port, interval), tcp_target(port, interval)];
        let (sender, mut probes) = mpsc::channel(64);
        let started = Instant::now();
        let runtime = ProbeRuntime::start().expect("a probe runtime");
        let checker = Checker::start(runtime.handle(), targets, sender);

        let first = tokio::time::timeout(Duration::from_millis(500), probes.recv())
            .await
            .expect("no probe at once")
            .expect("a probe");
        assert!(first.ok, "{first:?}");

        let mut counts = [0, 0];
        counts[first.target_index] += 1;
        let window = started + Duration::from_millis(1000);
        while let Ok(Some(probe)) = tokio::time::timeout_at(window, probes.recv()).await {
            assert!(probe.ok, "{probe:?}");
            assert!(probe.duration < Duration::from_secs(1), "{probe:?}");
            counts[probe.target_index] += 1;
        }
        // 11 ticks fall in [0, 1000] ms. A loaded host delays ticks (missed ones are not made
        // up), so only bound the count: probing repeats, and never faster than the interval.
        for count in counts {
            assert!(
                (3..=11).contains(&count),
                "probes per target in 1 s: {counts:?}"
            );
        }

        checker.stop();
        // Probes sent before stop() returned may still be queued.
        while probes.try_recv().is_ok() {}
        let after = tokio::time::timeout(Duration::from_millis(300), probes.recv()).await;
        assert_eq!(
            after,
            Ok(None),
            "expected no probe after stop and the channel closed by the ended tasks"
        );
        drop(runtime);
    }

    #[tokio::test]
    async fn checker_reports_failures_with_their_error() {
        // Test that a failed probe arrives with ok false and the probe's error.
        let (_held, port) = probe::tests::refusing_port();
        let (sender, mut probes) = mpsc::channel(8);
        let _checker = Checker::start(
            &Handle::current(),
            vec![tcp_target(port, Duration::from_secs(1))],
            sender,
        );
        let probe = tokio::time::timeout(Duration::from_millis(500), probes.recv())
            .await
            .expect("no probe at once")
            .expect("a probe");
        assert_eq!(
            (
                probe.target_index,
                probe.ok,
                probe.error.map(|failure| failure.to_string())
            ),
            (
                0,
                false,
                Some(format!("connect to 127.0.0.1:{port}: connection refused"))
            )
        );
    }

    #[tokio::test]
    async fn dropping_the_checker_ends_its_tasks() {
        // Test that dropping a Checker, like stop(), ends its tasks: their senders go away.
        let port = accepting_port().await;
        let (sender, mut probes) = mpsc::channel(8);
        let checker = Checker::start(
            &Handle::current(),
            vec![tcp_target(port, Duration::from_millis(50))],
            sender,
        );
        probes.recv().await.expect("a first probe");
        drop(checker);
        while probes.try_recv().is_ok() {}
        let after = tokio::time::timeout(Duration::from_millis(300), probes.recv()).await;
        assert_eq!(after, Ok(None));
        assert_eq!(probes.try_recv(), Err(TryRecvError::Disconnected));
    }
}
