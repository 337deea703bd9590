//! End-to-end tests of canary applies: the real `xlb run --config` daemon in a load-balancer
//! namespace, real TCP servers as backends, `xlb apply FILE --canary PERCENT --watch DURATION`
//! as an operator types it. A config that sends the slice to one server and one towards a
//! backend failing its HTTP check roll themselves back; a good one promotes with no connection
//! failing. Without a daemon, and with bad values, `--canary` is refused and nothing changes.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use lb_common::{canary, flow_hash};
use xlb_tests::{
    daemon_lab::{CLIENT, DaemonLab, FALL, HEALTH_INTERVAL, VIP, VerbOutput},
    live::{self, EQUAL, LiveXlb, assert_says},
    packets::Flow,
    prometheus::try_parse,
    require_privileges,
    steering::flow_key,
    wait::wait_until,
};

/// A probe in flight, the daemon's 1 s tick and apply, a loaded host.
const SLACK: Duration = Duration::from_secs(8);

/// `xlb apply FILE --canary PERCENT --watch WATCH [extra...] --output json`, which must start.
fn start_canary(
    lab: &DaemonLab,
    file: &str,
    percent: u32,
    watch: &str,
    extra: &[&str],
) -> VerbOutput {
    let percent = percent.to_string();
    let mut args = vec!["apply", file, "--canary", &percent, "--watch", watch];
    args.extend(extra);
    args.extend(["--output", "json"]);
    lab.xlb(&args)
        .and_then(VerbOutput::ok)
        .unwrap_or_else(|err| panic!("xlb apply --canary: {err:#}\n{}", lab.daemon_log()))
}

/// Waits until `xlb status` shows no canary on the VIP; returns how long that took.
fn wait_ended(lab: &DaemonLab, within: Duration) -> Duration {
    wait_until("the canary ends", within, || {
        Ok(lab.status()?["vips"][0]["canary"].is_null())
    })
}

/// Waits until the daemon's metric `name` (with label `label` = its value, if given) reads
/// `want`: the endpoint renders at most once a second, so a scrape may show the state of a
/// moment ago.
fn wait_metric(lab: &DaemonLab, name: &str, label: Option<(&str, &str)>, want: f64) {
    wait_until(&format!("{name} {label:?} = {want}"), SLACK, || {
        let samples = try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?;
        Ok(samples.iter().any(|s| {
            s.name == name
                && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
                && s.value == want
        }))
    });
}

/// Checks that a canary adding b2 was rolled back for `alarm`: the metric counts it, and the
/// two configured backends take every new flow again.
fn rolled_back(lab: &DaemonLab, alarm: &str) {
    wait_metric(
        lab,
        "xlb_canary_rollbacks_total",
        Some(("alarm", alarm)),
        1.0,
    );
    let answered = lab
        .ask_many(40, Duration::from_secs(60))
        .expect("connections");
    assert_eq!(answered[2], 0, "b2 is out again: {answered:?}");
}

/// A lab of three backend hosts whose config (and daemon) balances the first `configured`.
fn lab_of(label: &str, configured: usize) -> DaemonLab {
    let mut lab = DaemonLab::new(label, 3).expect("lab");
    lab.write_config(&lab.config_text(&vec![1; configured], None))
        .expect("config");
    lab.start_daemon().expect("xlb run");
    lab
}

/// A [`lab_of`] two configured backends, and the text of a config adding the third (b2).
fn adding_b2(label: &str) -> (DaemonLab, String) {
    let lab = lab_of(label, 2);
    let text = lab.config_text(&[1, 1, 1], None);
    (lab, text)
}

/// Test that a canary of a config putting all weight on one server (forced with `--override
/// XLB003`) rolls itself back within its window, naming the alarm, and that while it ran only
/// connections whose flow hash lies in the slice reached another backend than before, so no
/// more than the slice's share of new connections went to the wrong place; and that `xlb plan
/// --canary` said beforehand which share would move and that the slice would see only b0.
#[test]
fn canary_to_one_server_rolls_back_and_only_the_slice_moved() {
    require_privileges!();
    let lab = lab_of("cone", 3);
    let percent = 25;
    let ports: Vec<u16> = (21_000..21_120).collect();
    let threshold = canary::threshold(percent);
    let in_slice: Vec<bool> = ports
        .iter()
        .map(|&port| {
            let flow = Flow::new(&CLIENT.to_string(), &VIP.to_string(), port, 80);
            flow_hash(&flow_key(&flow, 6), false) < threshold
        })
        .collect();
    let connector = lab.connector();
    let ask_all = || {
        connector
            .session(|s| {
                ports
                    .iter()
                    .map(|&p| s.ask_from(p))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .expect("client namespace")
            .expect("every connection answered")
    };
    let before = ask_all();

    let one = lab
        .write_file("one.toml", &lab.config_text(&[1, 0, 0], None))
        .expect("candidate");
    // The plan of this canary: a quarter of the flows that move, all of the slice on b0.
    let plan = lab
        .xlb(&[
            "plan",
            one.to_str().expect("path"),
            "--canary",
            "25",
            "--override",
            "XLB003",
            "--output",
            "json",
        ])
        .expect("xlb plan")
        .json()
        .expect("plan json");
    let slice = &plan["canary"]["vips"][0];
    let moved = plan["vips"][0]["moved_share"]
        .as_f64()
        .expect("moved share");
    let slice_moved = slice["moved_share"].as_f64().expect("slice moved share");
    assert!((slice_moved - moved * 0.25).abs() < 1e-9, "{plan}");
    assert_eq!(
        slice["backends"],
        serde_json::json!([[lab.backends[0].address.to_string(), 1.0]]),
        "{plan}"
    );
    let running = Arc::new(AtomicBool::new(true));
    let rounds = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let mut rounds = Vec::new();
            while running.load(Ordering::Relaxed) {
                rounds.push(ask_all());
            }
            rounds
        });
        let out = start_canary(
            &lab,
            one.to_str().expect("path"),
            percent,
            "20s",
            &["--override", "XLB003"],
        );
        let started = out.json().expect("json");
        assert_eq!(started["canary"]["percent"], percent, "{started}");
        let took = wait_ended(&lab, Duration::from_secs(20));
        eprintln!("rolled back {took:?} after the canary started");
        running.store(false, Ordering::Relaxed);
        traffic.join().expect("traffic thread")
    });
    let log = lab.daemon_log();
    assert!(log.contains("canary rolled back"), "{log}");
    assert!(log.contains("concentrated"), "{log}");
    wait_metric(
        &lab,
        "xlb_canary_rollbacks_total",
        Some(("alarm", "concentrated")),
        1.0,
    );
    wait_metric(&lab, "xlb_canary_promotions_total", None, 0.0);
    let (mut total, mut moved, mut slice) = (0, 0, 0);
    for round in &rounds {
        for (i, backend) in round.iter().enumerate() {
            total += 1;
            slice += usize::from(in_slice[i]);
            if *backend != before[i] {
                moved += 1;
                assert!(
                    in_slice[i],
                    "port {} moved though outside the slice",
                    ports[i]
                );
                assert_eq!(*backend, 0, "port {} moved elsewhere than b0", ports[i]);
            }
        }
    }
    eprintln!("{total} connections during the canary, {slice} in the slice, {moved} moved");
    assert!(moved <= slice);
    assert_eq!(ask_all(), before, "after the rollback every flow is back");
    let config = std::fs::read_to_string(&lab.config_path).expect("config");
    assert!(
        !config.contains("weight = 0"),
        "the daemon's config was not touched"
    );
}

/// Test that a canary adding a backend that accepts connections but fails its HTTP health
/// check rolls back once the check fails (interval × fall plus slack), well before its watch
/// ends, and says why.
#[test]
fn canary_towards_a_backend_failing_http_rolls_back() {
    require_privileges!();
    let (lab, text) = adding_b2("chttp");
    // b2's server answers its name, not HTTP: its HTTP check fails, its TCP connects do not.
    let at = text.rfind("check = \"tcp\"").expect("b2's check");
    let text = format!("{}check = \"http\"{}", &text[..at], &text[at + 13..]);
    let candidate = lab.write_file("http.toml", &text).expect("candidate");
    start_canary(&lab, candidate.to_str().expect("path"), 30, "60s", &[]);
    let took = wait_ended(&lab, HEALTH_INTERVAL * FALL + SLACK);
    eprintln!("rolled back {took:?} after the canary started");
    let log = lab.daemon_log();
    assert!(log.contains("canary rolled back"), "{log}");
    assert!(log.contains("failed its health check"), "{log}");
    rolled_back(&lab, "unhealthy");
}

/// Test that a good canary (a third backend added) shows in `xlb status` with its slice and
/// time left, promotes itself when its watch ends clean (the daemon's config file becomes the
/// candidate, the new backend takes new flows), and that no connection failed throughout and
/// established streams kept their backends.
#[test]
fn good_canary_promotes_without_a_failed_connection() {
    require_privileges!();
    let (lab, text) = adding_b2("cgood");
    let candidate = lab.write_file("good.toml", &text).expect("candidate");
    let mut streams = lab.open_streams(8).expect("streams");
    let running = AtomicBool::new(true);
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let connector = lab.connector();
    let errors = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            connector
                .session(|session| {
                    let mut errors = BTreeMap::new();
                    while running.load(Ordering::Relaxed) {
                        match session.ask() {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(err) => {
                                *errors.entry(format!("{err:#}")).or_insert(0) += 1;
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    errors
                })
                .expect("client namespace")
        });
        start_canary(&lab, candidate.to_str().expect("path"), 30, "4s", &[]);
        let status = lab.status().expect("status");
        let shown = &status["vips"][0]["canary"];
        assert_eq!(shown["percent"], 30, "{status}");
        assert!(
            shown["seconds_left"].as_u64().is_some_and(|s| s <= 4),
            "{status}"
        );
        let took = wait_ended(&lab, Duration::from_secs(4) + SLACK);
        eprintln!("promoted {took:?} after the canary started");
        // A little traffic after the promotion too.
        std::thread::sleep(Duration::from_millis(500));
        running.store(false, Ordering::Relaxed);
        traffic.join().expect("traffic thread")
    });
    let log = lab.daemon_log();
    assert!(log.contains("canary promoted"), "{log}");
    eprintln!(
        "{} connections succeeded, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert!(errors.is_empty(), "connections failed: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 0);
    for stream in &mut streams {
        stream
            .echo(7)
            .expect("an established stream keeps its backend");
    }
    wait_metric(&lab, "xlb_canary_promotions_total", None, 1.0);
    assert_eq!(
        std::fs::read_to_string(&lab.config_path).expect("config"),
        text,
        "the promoted config is the daemon's"
    );
    let answered = lab
        .ask_many(60, Duration::from_secs(60))
        .expect("connections");
    assert!(
        answered[2] > 0,
        "b2 takes new flows after the promotion: {answered:?}"
    );
}

/// Test that an operator can end a canary by hand at any time: `xlb canary abort` rolls it
/// back (alarm `aborted`, the daemon's config stays), `xlb canary promote` makes it the whole
/// table and the daemon's config, both long before the watch ends.
#[test]
fn operator_aborts_or_promotes_by_hand() {
    require_privileges!();
    let (lab, text) = adding_b2("chand");
    let candidate = lab.write_file("hand.toml", &text).expect("candidate");
    let candidate = candidate.to_str().expect("path");
    let end = |action: &str| {
        lab.xlb(&["canary", action, "--output", "json"])
            .and_then(VerbOutput::ok)
            .and_then(|out| out.json())
            .unwrap_or_else(|err| panic!("xlb canary {action}: {err:#}"))
    };
    start_canary(&lab, candidate, 50, "10m", &[]);
    let aborted = end("abort");
    assert_eq!(aborted["outcome"], "rolled_back", "{aborted}");
    assert_eq!(aborted["alarm"]["alarm"], "aborted", "{aborted}");
    assert!(lab.status().expect("status")["vips"][0]["canary"].is_null());
    rolled_back(&lab, "aborted");

    start_canary(&lab, candidate, 50, "10m", &[]);
    let promoted = end("promote");
    assert_eq!(promoted["outcome"], "promoted", "{promoted}");
    assert!(lab.status().expect("status")["vips"][0]["canary"].is_null());
    assert_eq!(
        std::fs::read_to_string(&lab.config_path).expect("config"),
        text
    );
    let answered = lab
        .ask_many(60, Duration::from_secs(60))
        .expect("connections");
    assert!(answered[2] > 0, "b2 takes new flows: {answered:?}");
}

/// Test that a daemon killed during a canary leaves it in the data plane (`xlb status` still
/// shows the slice), and that the restarted daemon rolls it back at start, says so in its log
/// and its metrics, and keeps its own config.
#[test]
fn daemon_restarted_during_a_canary_rolls_it_back() {
    require_privileges!();
    let mut lab = lab_of("crestart", 2);
    let candidate = lab
        .write_file("three.toml", &lab.config_text(&[1, 1, 1], None))
        .expect("candidate");
    start_canary(&lab, candidate.to_str().expect("path"), 40, "10m", &[]);
    lab.kill_daemon().expect("kill -9");
    let left = lab.status().expect("status");
    assert_eq!(left["vips"][0]["canary"]["percent"], 40, "{left}");
    lab.start_daemon().expect("restart");
    let status = lab.status().expect("status");
    assert!(status["vips"][0]["canary"].is_null(), "{status}");
    let log = lab.daemon_log();
    assert!(log.contains("rolled back"), "{log}");
    rolled_back(&lab, "restart");
}

/// Test that without a daemon `--canary` is refused (exit 4, saying nobody would watch it)
/// with nothing changed, that bad values are usage errors (exit 2) naming the flag, and that
/// `xlb canary abort` with no canary running fails (exit 4).
#[test]
fn canary_without_daemon_or_with_bad_values_is_refused() {
    require_privileges!();
    let mut xlb = LiveXlb::new("cnodaemon");
    xlb.apply(&EQUAL);
    let generation = |xlb: &LiveXlb| xlb.xlb_json(&["status"]).1["generation"].clone();
    let before = generation(&xlb);
    let file = xlb.config_file("two.toml", &live::config_text(&EQUAL[..2]));
    let file = file.to_str().expect("path");
    assert_says(
        &xlb.xlb_json(&["apply", file, "--canary", "10", "--watch", "5s"]),
        4,
        "error",
        "nobody else would watch",
    );
    assert_eq!(generation(&xlb), before, "nothing was written");
    for (args, flag) in [
        (&["--canary", "0", "--watch", "5s"][..], "--canary"),
        (&["--canary", "100", "--watch", "5s"], "--canary"),
        (&["--canary", "10", "--watch", "5"], "--watch"),
        (&["--canary", "10", "--watch", "soon"], "--watch"),
        (&["--canary", "10"], "--watch"),
    ] {
        let mut line = vec!["apply", file];
        line.extend(args);
        let (code, out) = xlb.xlb_json(&line);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(
            out["error"].as_str().is_some_and(|e| e.contains(flag)),
            "{args:?}: {out}"
        );
    }
    let (code, out) = xlb.xlb_json(&["canary", "abort"]);
    assert_eq!(code, Some(4), "{out}");
    assert_eq!(generation(&xlb), before, "nothing was written");
}
