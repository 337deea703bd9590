//! End-to-end tests of the daemon: the real `xlb run --config` process in a load-balancer
//! namespace, steering real TCP connections from a client namespace to backend namespaces in
//! native XDP, while the tests fail and restore backends, drain one (and let a drain time
//! out), reload the config with SIGHUP and by only changing the file, `kill -9` and restart the
//! daemon, scrape its metrics and force skew alerts. The lab is [`xlb_tests::daemon_lab`];
//! timings are printed with `--nocapture`.

use std::time::{Duration, Instant};

use lb_userspace::metrics;
use xlb_tests::{
    daemon_lab::{DaemonLab, FALL, HEALTH_INTERVAL, RISE, Stream, VIP, VIP_NAME, VIP_SPEC},
    prometheus::{Sample, try_parse},
    require_privileges,
    steady_client::{Ran, SteadyClient},
    wait::{try_wait_until, wait_until},
};

/// Extra time on top of what the health-check arithmetic allows: a probe in flight, the
/// daemon's apply, a loaded host (generous: these tests assert behaviour, not speed).
const SLACK: Duration = Duration::from_secs(8);
/// What the daemon logs when it refuses a new config and keeps the running one.
const KEPT: &str = "keeping the running one";
/// How long a batch of 100 connections may take (a few hundred milliseconds here).
const BATCH: Duration = Duration::from_secs(60);

/// A running lab of three equal backends with its daemon started.
fn started(label: &str) -> DaemonLab {
    DaemonLab::started(label, 3).expect("lab with xlb run")
}

/// Asks 100 new connections (`when` names the moment in messages); all must be answered.
/// Returns how many each backend answered.
fn ask_100(lab: &DaemonLab, when: &str) -> Vec<u64> {
    let answered = lab
        .ask_many(100, BATCH)
        .unwrap_or_else(|err| panic!("{when}: {err:#}"));
    eprintln!("{when}: {answered:?}");
    assert_eq!(answered.iter().sum::<u64>(), 100);
    answered
}

/// Asserts that backend `zeroed` (weight 0) got none of `answered` and b0 and b1 some.
fn assert_weight_zero_skipped(answered: &[u64], zeroed: usize) {
    assert_eq!(answered[zeroed], 0, "b{zeroed} has weight 0: {answered:?}");
    assert!(answered[0] > 0 && answered[1] > 0, "{answered:?}");
}

/// The backend with the most of `streams` and the streams per backend (printed).
fn busiest(lab: &DaemonLab, streams: &[Stream]) -> (usize, Vec<u64>) {
    let mut per_backend = vec![0u64; lab.backends.len()];
    for stream in streams {
        per_backend[stream.backend] += 1;
    }
    eprintln!("streams per backend: {per_backend:?}");
    let busiest = (0..per_backend.len())
        .max_by_key(|&i| per_backend[i])
        .expect("at least one backend");
    (busiest, per_backend)
}

/// A started lab whose backend 1 had its server stopped and is out of the table: its failing
/// checks took it out. Returns the lab and that backend.
fn started_with_one_out(name: &str) -> (DaemonLab, usize) {
    let mut lab = started(name);
    let victim = 1;
    lab.stop_backend(victim)
        .unwrap_or_else(|err| panic!("stop b{victim}: {err:#}"));
    wait_until(
        "the stopped backend leaves the table",
        HEALTH_INTERVAL * FALL + SLACK,
        || Ok(!lab.in_table(victim)?),
    );
    (lab, victim)
}

/// Test that a backend whose server stops leaves the table within interval×fall (plus slack),
/// so 100 new connections all succeed and none reaches it, and that once its server listens
/// again it gets new connections within interval×rise (plus slack).
#[test]
fn failed_backend_leaves_and_returns() {
    require_privileges!();
    let mut lab = started("fail");
    let victim = 1;
    let answered = lab.ask_many(60, BATCH).expect("connections");
    assert!(
        answered[victim] > 0,
        "b{victim} got none of 60: {answered:?}"
    );

    lab.stop_backend(victim).expect("stop b1");
    let out_within = HEALTH_INTERVAL * FALL + SLACK;
    let took = wait_until("the stopped backend leaves the table", out_within, || {
        Ok(!lab.in_table(victim)?)
    });
    eprintln!("b{victim} left the table {took:?} after its server stopped");
    let row = lab.backend_stats(victim).expect("stats");
    assert_eq!(row["expected_share"].as_f64(), Some(0.0), "{row}");
    assert_ne!(row["state"], "active", "{row}");

    let answered = ask_100(&lab, &format!("with b{victim} down"));
    assert_eq!(answered[victim], 0, "{answered:?}");

    lab.start_backend(victim).expect("start b1");
    let back_within = HEALTH_INTERVAL * RISE + SLACK;
    let connector = lab.connector();
    let took = wait_until(
        "the restarted backend gets new connections",
        back_within,
        || {
            // Every connection must succeed; a batch of 20 reaches a backend of a third with
            // near certainty once it is back in the table.
            let batch = connector
                .session(|session| {
                    (0..20)
                        .map(|_| session.ask())
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .expect("client namespace")
                .unwrap_or_else(|err| panic!("while b{victim} comes back: {err:#}"));
            Ok(batch.contains(&victim))
        },
    );
    eprintln!("b{victim} got new connections {took:?} after its server restarted");
    assert!(lab.in_table(victim).expect("stats"));
}

/// Test that after `xlb backend drain` the drained backend's established streams keep
/// carrying bytes both ways (20 rounds 100 ms apart), while 100 new connections never reach it.
#[test]
fn drain_keeps_established_streams() {
    require_privileges!();
    let lab = started("drain");
    let mut streams = lab.open_streams(20).expect("20 streams");
    let (drained, per_backend) = busiest(&lab, &streams);
    let address = lab.backends[drained].address.to_string();
    let out = lab
        .xlb(&["backend", "drain", VIP_SPEC, &address])
        .and_then(|out| out.ok())
        .unwrap_or_else(|err| panic!("xlb backend drain: {err:#}"));
    eprint!("{}", out.stdout);
    let row = lab.backend_stats(drained).expect("stats");
    assert_eq!(row["state"], "drained", "{row}");
    assert_eq!(row["expected_share"].as_f64(), Some(0.0), "{row}");

    // Bytes every 100 ms on every stream, 20 rounds (2 s or more on a loaded host).
    let start = Instant::now();
    for round in 0..20u8 {
        for (n, stream) in streams.iter_mut().enumerate() {
            stream.echo(round).unwrap_or_else(|err| {
                panic!(
                    "stream {n} (b{}) after the drain of b{drained}, round {round}: {err:#}",
                    stream.backend
                )
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "20 rounds of echoes on {} streams ({} on the drained b{drained}) in {:?}",
        streams.len(),
        per_backend[drained],
        start.elapsed()
    );

    let answered = ask_100(&lab, "new connections after the drain");
    assert_eq!(
        answered[drained], 0,
        "the drained b{drained} got new connections"
    );
    // The new connections disturbed none of the old streams.
    for stream in &mut streams {
        stream
            .echo(0xff)
            .expect("an established stream after the new connections");
    }
}

/// Test that with `drain_timeout_seconds = 2` a drained backend is drained right after
/// `xlb backend drain` (its established streams still carry bytes), that the daemon disables
/// it no earlier than the timeout (and does disable it, within generous slack), and that then
/// 100 new connections all succeed and none reaches it.
#[test]
fn drain_times_out_into_disable() {
    require_privileges!();
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
    let mut lab = DaemonLab::new("draintmo", 3).expect("lab");
    let text = lab.config_text(&[1, 1, 1], None).replacen(
        "[global]\n",
        &format!(
            "[global]\ndrain_timeout_seconds = {}\n",
            DRAIN_TIMEOUT.as_secs()
        ),
        1,
    );
    assert!(text.contains("drain_timeout_seconds = 2\n"), "{text}");
    lab.write_config(&text).expect("config");
    lab.start_daemon().expect("xlb run");

    let mut streams = lab.open_streams(20).expect("20 streams");
    let (drained, _) = busiest(&lab, &streams);
    let address = lab.backends[drained].address.to_string();
    let draining = Instant::now();
    let out = lab
        .xlb(&["backend", "drain", VIP_SPEC, &address])
        .and_then(|out| out.ok())
        .unwrap_or_else(|err| panic!("xlb backend drain: {err:#}"));
    let drained_at = Instant::now();
    eprint!("{}", out.stdout);

    // Right after the drain: drained, out of the table, and its streams still work.
    let row = lab.backend_stats(drained).expect("stats");
    assert_eq!(row["state"], "drained", "{row}");
    assert_eq!(row["expected_share"].as_f64(), Some(0.0), "{row}");
    let status = lab.status().expect("status");
    assert_eq!(status["vips"][0]["backends"]["drained"], 1, "{status}");
    assert_eq!(status["vips"][0]["backends"]["disabled"], 0, "{status}");
    for (n, stream) in streams.iter_mut().enumerate() {
        stream.echo(1).unwrap_or_else(|err| {
            panic!(
                "stream {n} (b{}) right after the drain of b{drained}: {err:#}",
                stream.backend
            )
        });
    }
    eprintln!(
        "b{drained} drained, every stream echoed, {:?} after the drain",
        draining.elapsed()
    );

    // The daemon disables it once the timeout has passed: no earlier, and no later than the
    // timeout plus slack after the verb returned.
    let within = (DRAIN_TIMEOUT + SLACK).saturating_sub(drained_at.elapsed());
    let mut last = None;
    let disabled = try_wait_until(within, || {
        let row = lab.backend_stats(drained)?;
        let yes = row["state"] == "disabled";
        last = Some(row);
        Ok(yes)
    });
    let took = draining.elapsed();
    assert!(
        disabled.is_some(),
        "b{drained} was not disabled {:?} after `xlb backend drain` returned, with \
         drain_timeout_seconds = {}; last stats row: {last:?}; daemon log:\n{}",
        drained_at.elapsed(),
        DRAIN_TIMEOUT.as_secs(),
        lab.daemon_log()
    );
    eprintln!("b{drained} was disabled {took:?} after the drain");
    assert!(
        took >= DRAIN_TIMEOUT,
        "b{drained} was disabled {took:?} after the drain, before the {DRAIN_TIMEOUT:?} \
         timeout; daemon log:\n{}",
        lab.daemon_log()
    );
    let row = lab.backend_stats(drained).expect("stats");
    assert_eq!(row["expected_share"].as_f64(), Some(0.0), "{row}");
    let status = lab.status().expect("status");
    assert_eq!(status["vips"][0]["backends"]["drained"], 0, "{status}");
    assert_eq!(status["vips"][0]["backends"]["disabled"], 1, "{status}");
    assert!(
        lab.daemon_log().contains("drain timeout"),
        "the daemon did not log the drain timeout:\n{}",
        lab.daemon_log()
    );

    let answered = ask_100(&lab, "new connections after the drain timeout");
    assert_eq!(
        answered[drained], 0,
        "the disabled b{drained} got new connections"
    );
    // The other backends' streams are not the timeout's business: they go on. (The disabled
    // backend's own streams may have broken; that is what the timeout is for.)
    for (n, stream) in streams.iter_mut().enumerate() {
        if stream.backend != drained {
            stream.echo(2).unwrap_or_else(|err| {
                panic!(
                    "stream {n} (b{}) after b{drained} was disabled: {err:#}",
                    stream.backend
                )
            });
        }
    }
}

/// Test that SIGHUP with an invalid config file (all weight on one backend, XLB003; then a
/// TOML syntax error) keeps the running config: the generation stays and connections still
/// spread over every backend; and that SIGHUP with a valid changed file (one backend's weight
/// 0) applies it: the generation goes up and that backend gets no new flows. The metrics count
/// the two refused files as invalid reloads and show the last reload failed, then succeeded.
#[test]
fn sighup_with_a_bad_file_keeps_the_config() {
    require_privileges!();
    let lab = started("sighup");
    let generation = lab.generation().expect("generation");
    let good = std::fs::read_to_string(&lab.config_path).expect("config");
    let all_on_one = lab.config_text(&[1, 0, 0], None);
    let syntax_error = format!("{good}\n[[vip\n");
    for (what, bad) in [("XLB003", all_on_one), ("a syntax error", syntax_error)] {
        let kept = lab.daemon_log().matches(KEPT).count();
        lab.write_config(&bad).expect("write the bad config");
        lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
        // The daemon's own word that it judged the file, then the state it left.
        wait_until("the daemon refuses the bad config", SLACK, || {
            Ok(lab.daemon_log().matches(KEPT).count() > kept)
        });
        assert_eq!(
            lab.generation().expect("generation"),
            generation,
            "a config with {what} changed the live state; daemon log:\n{}",
            lab.daemon_log()
        );
        let answered = lab.ask_many(60, BATCH).expect("connections");
        eprintln!("after SIGHUP with {what}: {answered:?}");
        assert!(
            answered.iter().all(|&n| n > 0),
            "after SIGHUP with {what} not every backend answered: {answered:?}"
        );
    }

    let reload_metrics = || -> anyhow::Result<(Option<f64>, Option<f64>)> {
        let samples = try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?;
        Ok((
            metric(
                &samples,
                "xlb_reload_failures_total",
                &[("reason", "invalid")],
            ),
            metric(&samples, "xlb_config_last_reload_successful", &[]),
        ))
    };
    wait_until(
        "the metrics count both refused files as invalid reloads",
        metrics::Limits::DAEMON.page_max_age + SLACK,
        // Each file counts once or twice: the file watch and the SIGHUP may each judge it.
        || Ok(matches!(reload_metrics()?, (Some(n), Some(0.0)) if (2.0..=4.0).contains(&n))),
    );

    let zeroed = 2;
    lab.write_config(&lab.config_text(&[1, 1, 0], None))
        .expect("write the changed config");
    lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
    let took = wait_until("the changed config is applied", SLACK, || {
        Ok(lab.generation()? > generation)
    });
    eprintln!("the valid config was live {took:?} after SIGHUP");
    assert!(!lab.in_table(zeroed).expect("stats"));
    let answered = ask_100(&lab, "after the valid reload");
    assert_weight_zero_skipped(&answered, zeroed);
    wait_until(
        "the metrics show the last reload succeeded",
        metrics::Limits::DAEMON.page_max_age + SLACK,
        || Ok(reload_metrics()?.1 == Some(1.0)),
    );
}

/// Test that a reload applies the health of the moment without rebuilding what it leaves as
/// it was: with one backend out of the table for failing its checks, SIGHUP with a file that
/// changes nothing the tables are built from (a comment) makes a new generation that rebuilds
/// no table, and the failing backend stays out.
#[test]
fn reload_with_unchanged_health_rebuilds_nothing() {
    require_privileges!();
    let (lab, victim) = started_with_one_out("samehealth");
    let generation = lab.generation().expect("generation");
    let good = std::fs::read_to_string(&lab.config_path).expect("config");
    lab.write_config(&format!("{good}\n# a comment: the tables stay\n"))
        .expect("write the commented config");
    lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
    wait_until("the commented config is applied", SLACK, || {
        Ok(lab.daemon_log().contains("applied (reload)"))
    });
    let log = lab.daemon_log();
    let line = log
        .lines()
        .find(|line| line.contains("applied (reload)"))
        .expect("the reload's apply");
    assert!(line.contains("rebuilt=0"), "{line}");
    assert!(lab.generation().expect("generation") > generation);
    assert!(!lab.in_table(victim).expect("stats"), "{log}");
}

/// Test that a reload which keeps the `[alerts]` settings keeps what fires: with one of three
/// backends out by its checks and `min_healthy = 3`, few_healthy fires and the alert command
/// runs once; a reload of an edit elsewhere (a comment) is applied and, for three more ticks,
/// the command is not run again for an alert that never stopped.
#[test]
fn a_reload_does_not_raise_a_firing_alert_again() {
    require_privileges!();
    let mut drill = alert_lab("keepfire", |text| {
        text.replace("min_new_flows = 20", "min_new_flows = 20\nmin_healthy = 3")
    });
    let firings = |drill: &AlertLab| {
        std::fs::read_to_string(&drill.record)
            .unwrap_or_default()
            .split("---")
            .filter(|alert| {
                alert.contains("XLB_ALERT_FIRING=1") && alert.contains("XLB_ALERT_KIND=few_healthy")
            })
            .count()
    };
    drill
        .lab
        .stop_backend(1)
        .unwrap_or_else(|err| panic!("stop b1: {err:#}"));
    wait_until("few_healthy fires", HEALTH_INTERVAL * FALL + SLACK, || {
        Ok(firings(&drill) > 0)
    });
    let lab = &drill.lab;
    let reloads = lab.daemon_log().matches("applied (reload)").count();
    let text = std::fs::read_to_string(&lab.config_path).expect("config");
    lab.write_config(&format!("{text}\n# a comment: the alerts stay\n"))
        .expect("write the commented config");
    lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
    wait_until("the commented config is applied", SLACK, || {
        Ok(lab.daemon_log().matches("applied (reload)").count() > reloads)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        firings(&drill),
        1,
        "the reload raised few_healthy again: {}",
        std::fs::read_to_string(&drill.record).unwrap_or_default()
    );
}

/// Test that the daemon notices a changed config file by itself, without a signal: a valid
/// changed file (one backend's weight 0) goes live (the generation goes up and that backend
/// gets none of 100 new connections), and an invalid one (a TOML syntax error) is refused
/// and changes nothing (once the daemon says it kept the running config, the generation and
/// config hash are the same, connections still work and still avoid the zeroed backend).
#[test]
fn config_file_change_reloads_without_a_signal() {
    require_privileges!();
    /// How long the daemon may take to notice a change: its 1 s tick plus slack.
    const NOTICE: Duration = Duration::from_secs(10);
    let lab = started("filereload");
    let generation = lab.generation().expect("generation");

    let zeroed = 2;
    let changed = lab.config_text(&[1, 1, 0], None);
    lab.write_config(&changed)
        .expect("write the changed config");
    let took = wait_until("the changed config file is applied", NOTICE, || {
        Ok(lab.generation()? > generation)
    });
    eprintln!("the changed file was live {took:?} after it was written");
    let log = lab.daemon_log();
    assert!(
        log.contains("config file changed: reloading") && !log.contains("SIGHUP: reloading"),
        "the daemon did not reload for the file change:\n{log}"
    );
    let reloaded = lab.status().expect("status");
    let live = reloaded["generation"].as_u64().expect("generation");
    assert!(!lab.in_table(zeroed).expect("stats"));
    let answered = ask_100(&lab, "after the file changed");
    assert_weight_zero_skipped(&answered, zeroed);

    let refusals = lab.daemon_log().matches(KEPT).count();
    lab.write_config(&format!("{changed}\n[[vip\n"))
        .expect("write the invalid config");
    // The daemon's own word that it judged the file, then the state it left.
    let refused = wait_until("the daemon refuses the invalid file", NOTICE, || {
        Ok(lab.daemon_log().matches(KEPT).count() > refusals)
    });
    eprintln!("the invalid file was refused {refused:?} after it was written");
    let now = lab.status().expect("status");
    assert_eq!(
        now["generation"].as_u64(),
        Some(live),
        "an invalid config file changed the live state; daemon log:\n{}",
        lab.daemon_log()
    );
    assert_eq!(now["config_hash"], reloaded["config_hash"], "{now}");
    assert!(!lab.in_table(zeroed).expect("stats"));
    let answered = ask_100(&lab, "after the invalid file");
    assert_weight_zero_skipped(&answered, zeroed);
}

/// Test that `kill -9` of the daemon does not interrupt forwarding (the pinned link keeps the
/// program attached), and that a new `xlb run` on the same file adopts the data plane
/// hitlessly: not one of a steady stream of connections fails before, between or after; the
/// counters carry on (the VIP's new flows cover every connection, from before the kill too);
/// the flow table is kept (streams opened before the kill go on as flow-table hits, not one
/// packet of theirs misses the table); and `xlb status` then shows a higher generation under
/// the same pin path.
#[test]
fn kill_9_keeps_forwarding_and_restart_adopts() {
    require_privileges!();
    /// Bounds of the client: connections and time (generous: the test stops the client).
    const MAX_CONNECTIONS: u64 = 50_000;
    const MAX_TIME: Duration = Duration::from_secs(120);
    /// Connections the client must complete in each phase (before the kill, without a
    /// daemon, after the restart).
    const PER_PHASE: u64 = 200;
    let mut lab = started("kill9");
    let before = lab.status().expect("status");
    let mut streams = lab.open_streams(10).expect("10 streams");
    for stream in &mut streams {
        stream.echo(1).expect("a stream before the kill");
    }
    let client = SteadyClient::start(lab.connector(), MAX_CONNECTIONS, MAX_TIME);
    // The client's progress proves it runs through each phase.
    let progressed = |what: &str, from: u64| {
        wait_until(what, Duration::from_secs(60), || {
            Ok(client.made() >= from + PER_PHASE)
        });
    };
    progressed("the client is under way", 0);
    let at_kill = client.made();
    lab.kill_daemon().expect("kill -9");
    progressed("connections while no daemon runs", at_kill);
    let at_restart = client.made();
    let restarting = Instant::now();
    lab.start_daemon().expect("xlb run again");
    eprintln!("the new daemon was ready in {:?}", restarting.elapsed());
    let at_ready = client.made();
    progressed("connections after the restart", at_ready);
    let Ran {
        made: total,
        failures,
        ..
    } = client.stop();
    eprintln!(
        "{total} connections: {at_kill} before the kill, {} without a daemon, {} after the \
         restart; {} failed",
        at_restart - at_kill,
        total - at_restart,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} connections failed: {failures:#?}",
        failures.len()
    );

    // Counters: every connection (10 streams, then the client's) was one new flow at least,
    // counted in maps the new daemon adopted rather than reset.
    let stats = lab
        .xlb(&["stats", "--output", "json"])
        .and_then(|out| out.ok()?.json())
        .expect("xlb stats");
    let new_flows = stats["vips"][0]["new_flows"].as_u64().expect("new_flows");
    assert!(
        new_flows >= total + 10,
        "the VIP counts {new_flows} new flows after the restart, fewer than the {total} \
         connections and 10 streams made across it: the counters were reset; {stats}"
    );
    // Flow table: the old streams' packets hit the entries the old daemon's program wrote.
    let event = |stats: &serde_json::Value, name: &str| {
        stats["events"][name]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no event {name} in {stats}"))
    };
    for stream in &mut streams {
        stream
            .echo(2)
            .expect("a stream opened before the kill, after the restart");
    }
    let later = lab
        .xlb(&["stats", "--output", "json"])
        .and_then(|out| out.ok()?.json())
        .expect("xlb stats");
    for missed in ["flow_miss", "flow_stale"] {
        assert_eq!(
            event(&later, missed),
            event(&stats, missed),
            "packets of streams opened before the kill were {missed} after the restart: the \
             flow table was not kept; before {stats}, after {later}"
        );
    }
    assert!(
        event(&later, "flow_hit") > event(&stats, "flow_hit"),
        "the streams' packets were no flow-table hits: before {stats}, after {later}"
    );

    let after = lab.status().expect("status");
    assert_eq!(after["pin_path"], before["pin_path"], "{after}");
    assert_eq!(after["pin_path"].as_str(), lab.pin_path.to_str(), "{after}");
    assert!(
        after["generation"].as_u64() > before["generation"].as_u64(),
        "the new daemon applied nothing: before {before}, after {after}"
    );
    assert_eq!(after["link_pinned"], true, "{after}");
    assert_eq!(after["attach_mode"], "native", "{after}");
    assert!(
        lab.daemon_log().contains("adopted the data plane"),
        "{}",
        lab.daemon_log()
    );
}

/// The value of the sample `name` with exactly `labels` among its labels.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Test that the metrics endpoint answers a real HTTP GET with well-formed Prometheus text
/// (every sample line `name{labels} value`, every family with HELP and TYPE), that the
/// backends' new-flow counters add up to at least the connections made, and that
/// `xlb_backend_up` is 1 for healthy backends and 0 for one whose server stopped (after fall);
/// and that the build, the table fingerprint `xlb status` shows, the apply and health-check
/// histograms and the interface's XDP_TX failures (equal to `ethtool -S`) are exported.
#[test]
fn metrics_are_served_and_parse() {
    require_privileges!();
    let mut lab = started("metrics");
    let connections = 90;
    let answered = lab.ask_many(connections, BATCH).expect("connections");
    // The endpoint renders a page at most once a second: wait for one made after the
    // connections.
    let mut text = String::new();
    wait_until(
        "a page counts every connection as a new flow",
        metrics::Limits::DAEMON.page_max_age + SLACK,
        || {
            text = lab.scrape()?;
            let samples = try_parse(&text).map_err(anyhow::Error::msg)?;
            let new_flows: f64 = samples
                .iter()
                .filter(|s| s.name == "xlb_backend_new_flows_total")
                .map(|s| s.value)
                .sum();
            Ok(new_flows >= connections as f64)
        },
    );
    let samples = try_parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    eprintln!("{} samples in {} bytes", samples.len(), text.len());
    for host in &lab.backends {
        let address = host.address.to_string();
        let labels = [("vip", VIP_SPEC), ("backend", address.as_str())];
        assert_eq!(
            metric(&samples, "xlb_backend_up", &labels),
            Some(1.0),
            "{}: {text}",
            host.name
        );
        let flows = metric(&samples, "xlb_backend_new_flows_total", &labels);
        let index = lab.backend_index(&address).expect("backend");
        assert!(
            flows >= Some(answered[index] as f64),
            "{} answered {} connections, counted {flows:?}",
            host.name,
            answered[index]
        );
    }
    assert_eq!(
        metric(
            &samples,
            "xlb_vip_info",
            &[("vip", VIP_SPEC), ("name", VIP_NAME)]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&samples, "xlb_config_generation", &[]), Some(1.0));
    let build = [("version", metrics::VERSION), ("commit", metrics::COMMIT)];
    assert_eq!(metric(&samples, "xlb_build_info", &build), Some(1.0));
    let status = lab.status().expect("status");
    let fingerprint = status["vips"][0]["fingerprint"]
        .as_str()
        .expect("fingerprint");
    assert_eq!(
        metric(
            &samples,
            "xlb_vip_table_info",
            &[("vip", VIP_SPEC), ("fingerprint", fingerprint)]
        ),
        Some(1.0),
        "the fingerprint `xlb status` shows: {text}"
    );
    assert!(metric(&samples, "xlb_apply_duration_seconds_count", &[]) >= Some(1.0));
    let checks = metric(
        &samples,
        "xlb_health_check_duration_seconds_count",
        &[("vip", VIP_SPEC), ("backend", "198.18.0.10")],
    );
    assert!(checks >= Some(1.0), "health checks counted: {checks:?}");
    // The driver's own count, as `ethtool -S` shows it (0 here: the peer runs an XDP
    // program), read after the scrape so that XDP_TX failures can only have grown.
    let errors = metric(
        &samples,
        "xlb_interface_xdp_tx_errors_total",
        &[("interface", "eth0")],
    )
    .expect("xlb_interface_xdp_tx_errors_total of eth0");
    let ethtool = lab
        .lb
        .command("ethtool")
        .args(["-S", "eth0"])
        .output()
        .expect("ethtool -S");
    let driver: f64 = String::from_utf8_lossy(&ethtool.stdout)
        .lines()
        .filter_map(|line| line.trim().split_once(": "))
        .filter(|(name, _)| name.ends_with("xdp_tx_errors"))
        .map(|(_, value)| value.trim().parse::<f64>().expect("a count"))
        .sum();
    assert_eq!(errors, driver, "ethtool -S eth0 in the lb namespace");

    let stopped = 2;
    let address = lab.backends[stopped].address.to_string();
    lab.stop_backend(stopped).expect("stop b2");
    let took = wait_until(
        "xlb_backend_up of the stopped backend goes to 0",
        HEALTH_INTERVAL * FALL + SLACK,
        || {
            let samples = try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?;
            let up = |address: &str| {
                metric(
                    &samples,
                    "xlb_backend_up",
                    &[("vip", VIP_SPEC), ("backend", address)],
                )
            };
            Ok(up(&address) == Some(0.0))
        },
    );
    eprintln!("xlb_backend_up of b{stopped} was 0 {took:?} after its server stopped");
    let text = lab.scrape().expect("scrape");
    let samples = try_parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    for host in &lab.backends {
        let address = host.address.to_string();
        let want = if host.address == lab.backends[stopped].address {
            0.0
        } else {
            1.0
        };
        assert_eq!(
            metric(
                &samples,
                "xlb_backend_up",
                &[("vip", VIP_SPEC), ("backend", address.as_str())]
            ),
            Some(want),
            "{}: {text}",
            host.name
        );
    }
}

/// A lab whose daemon alerts over a 2 s window from 20 new flows on, and whose alert command
/// appends its `XLB_ALERT_*` environment to `record` (in the lab's directory under /tmp,
/// removed with the lab).
struct AlertLab {
    lab: DaemonLab,
    record: std::path::PathBuf,
    /// The `[alerts]` table's body.
    alerts: String,
}

const ALERT_WINDOW: Duration = Duration::from_secs(2);

/// Starts an [`AlertLab`] of three equal backends; `edit` may change the config text.
fn alert_lab(label: &str, edit: impl Fn(String) -> String) -> AlertLab {
    let mut lab = DaemonLab::new(label, 3).expect("lab");
    let record = lab.dir.join("alerts.env");
    let alerts = format!(
        "window_seconds = {}\nmin_new_flows = 20\ncommand = 'env | grep ^XLB_ALERT_ | sort >> \
         \"{file}\"; echo --- >> \"{file}\"'",
        ALERT_WINDOW.as_secs(),
        file = record.display()
    );
    lab.write_config(&edit(lab.config_text(&[1, 1, 1], Some(&alerts))))
        .expect("config");
    lab.start_daemon().expect("xlb run");
    let samples = try_parse(&lab.scrape().expect("scrape")).expect("metrics");
    for kind in ["skew", "dominant", "few_healthy"] {
        assert_eq!(
            alert_value(&samples, kind),
            Some(0.0),
            "{kind} fired before any traffic"
        );
    }
    AlertLab {
        lab,
        record,
        alerts,
    }
}

/// `xlb_alert{kind, vip}` of the lab's VIP.
fn alert_value(samples: &[Sample], kind: &str) -> Option<f64> {
    metric(samples, "xlb_alert", &[("kind", kind), ("vip", VIP_SPEC)])
}

impl AlertLab {
    /// Keeps new connections coming (20 every 200 ms, each answered by backend `target`)
    /// until `xlb_alert` shows skew or dominant for the VIP, for at most one window, the
    /// daemon's 1 s tick and slack; then checks what the alert command recorded. Returns the
    /// kinds that fired.
    fn expect_alert_on(&self, target: usize) -> String {
        let lab = &self.lab;
        let budget = ALERT_WINDOW + Duration::from_secs(1) + SLACK + SLACK;
        let start = Instant::now();
        let mut made = 0;
        let mut fired = None;
        while start.elapsed() < budget && made < 2_000 {
            let answered = lab.ask_many(20, BATCH).expect("connections");
            assert_eq!(
                answered[target], 20,
                "all must go to b{target}: {answered:?}"
            );
            made += 20;
            let samples = try_parse(&lab.scrape().expect("scrape")).expect("metrics");
            let firing: Vec<&str> = ["skew", "dominant"]
                .into_iter()
                .filter(|kind| alert_value(&samples, kind) == Some(1.0))
                .collect();
            if made >= 50 && !firing.is_empty() {
                fired = Some(firing.join(", "));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let kinds = fired.unwrap_or_else(|| {
            panic!(
                "no skew or dominant alert for {VIP_SPEC} within {:?} and {made} new \
                 connections, every one to b{target}; stats:\n{}\ndaemon log:\n{}",
                start.elapsed(),
                lab.xlb(&["stats"])
                    .map(|out| out.stdout)
                    .unwrap_or_default(),
                lab.daemon_log()
            )
        });
        eprintln!(
            "alert {kinds} fired {:?} into the drill ({made} connections)",
            start.elapsed()
        );

        // The command runs detached: give it a moment to write.
        let mut recorded = String::new();
        wait_until("the alert command records a firing alert", SLACK, || {
            recorded = std::fs::read_to_string(&self.record).unwrap_or_default();
            Ok(recorded.contains("XLB_ALERT_FIRING=1"))
        });
        eprintln!("the alert command saw:\n{recorded}");
        let address = lab.backends[target].address.to_string();
        let firing = recorded
            .split("---")
            .find(|alert| {
                alert.contains("XLB_ALERT_FIRING=1")
                    && alert.contains(&format!("XLB_ALERT_BACKEND={address}\n"))
                    && (alert.contains("XLB_ALERT_KIND=skew\n")
                        || alert.contains("XLB_ALERT_KIND=dominant\n"))
            })
            .unwrap_or_else(|| {
                panic!("no firing skew or dominant alert about {address} in {recorded:?}")
            });
        let vip = firing
            .lines()
            .find_map(|line| line.strip_prefix("XLB_ALERT_VIP="))
            .unwrap_or_else(|| panic!("no XLB_ALERT_VIP in {firing:?}"));
        assert!(
            vip == VIP_NAME || vip == VIP_SPEC,
            "XLB_ALERT_VIP={vip} names neither {VIP_NAME} nor {VIP}"
        );
        assert!(
            firing.contains("XLB_ALERT_KIND=skew\n")
                || firing.contains("XLB_ALERT_KIND=dominant\n"),
            "{firing}"
        );
        assert!(firing.contains("XLB_ALERT_MESSAGE="), "{firing}");
        kinds
    }
}

/// Test that forcing all weight on one backend (`xlb apply --override XLB003` of the daemon's
/// config, the drill the override exists for) while the other backends stay healthy, then sending it 50 and more
/// new connections, fires an alert within one window (plus slack): `xlb_alert` of kind skew or
/// dominant is 1 for the VIP, and the alert command ran with XLB_ALERT_FIRING=1, the VIP and
/// the backend in its environment.
#[test]
fn forced_skew_raises_the_alert() {
    require_privileges!();
    let drill = alert_lab("skew", |text| text);
    let lab = &drill.lab;
    // The daemon owns the pins: the drill goes into its own config file, which it refuses to
    // reload without the override, and `xlb apply` asks it to reload with the override.
    lab.write_config(&lab.config_text(&[1, 0, 0], Some(&drill.alerts)))
        .expect("forced config");
    let forced = lab.config_path.to_str().expect("path");
    let refused = lab.xlb(&["apply", forced]).expect("xlb apply");
    assert_ne!(refused.code, Some(0), "XLB003 applied without --override");
    let out = lab
        .xlb(&["apply", forced, "--override", "XLB003", "--allow-warnings"])
        .and_then(|out| out.ok())
        .unwrap_or_else(|err| panic!("xlb apply --override XLB003: {err:#}"));
    eprint!("{}", out.stdout);
    // b1 and b2 stay healthy (health checks pass, state active) with weight 0: "one backend
    // takes more than max_share of new flows while other backends are healthy" is the
    // dominant alert as examples/xlb.toml documents it.
    drill.expect_alert_on(0);
}

/// Test the live guards under the daemon: disabling backends down to one server is refused
/// (exit 1, the server named) until forced; once forced, the first alert the command sees
/// names the server that takes everything (audit, then dominant, though the others are
/// disabled rather than healthy), `xlb audit` fails with the outage, and `xlb stats` flags it
/// dominant over the flows since the table changed.
#[test]
fn disabling_down_to_one_server_is_refused_then_alerted() {
    require_privileges!();
    let drill = alert_lab("down1", |text| text);
    let lab = &drill.lab;
    let address = |i: usize| lab.backends[i].address.to_string();
    lab.xlb(&["backend", "disable", VIP_SPEC, &address(1)])
        .and_then(|out| out.ok())
        .expect("two of three left is allowed");
    let refused = lab
        .xlb(&["backend", "disable", VIP_SPEC, &address(2)])
        .expect("xlb backend");
    assert_eq!(
        refused.code,
        Some(1),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("refused") && refused.stderr.contains(&address(0)),
        "{}",
        refused.stderr
    );
    assert!(
        lab.in_table(2).expect("table"),
        "a refused change writes nothing"
    );
    lab.xlb(&["backend", "disable", VIP_SPEC, &address(2), "--force"])
        .and_then(|out| out.ok())
        .expect("--force");
    drill.expect_alert_on(0);
    let recorded = std::fs::read_to_string(&drill.record).expect("alert record");
    let first = recorded
        .split("---")
        .find(|alert| alert.contains("XLB_ALERT_FIRING=1"))
        .expect("a firing alert");
    assert!(
        first.contains(&format!("XLB_ALERT_BACKEND={}\n", address(0))),
        "the first alert must name the overloaded server {}: {recorded}",
        address(0)
    );
    assert!(
        recorded.contains("XLB_ALERT_KIND=dominant\n"),
        "dominant fires although the others are disabled: {recorded}"
    );
    let audit = lab.xlb(&["audit"]).expect("xlb audit");
    assert_eq!(audit.code, Some(1), "{}", audit.stdout);
    assert!(audit.stdout.contains("outage"), "{}", audit.stdout);
    let stats = lab
        .xlb(&["stats", "--output", "json"])
        .and_then(|out| out.ok())
        .and_then(|out| out.json())
        .expect("stats");
    let vip = &stats["vips"][0];
    assert_eq!(vip["window"]["kind"], "since_change", "{vip}");
    assert_eq!(vip["dominant"]["server"], address(0).as_str(), "{vip}");
    assert!(
        vip["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .all(|b| b["skew"].is_null()),
        "no backend is called under or unexpected for flows before the change: {vip}"
    );
}

/// Test the scheduled audit: a backend's weight changed in the pinned map behind the daemon's
/// back (no new generation, as bpftool would) is found within one audit interval (1 s here)
/// plus the tick and slack: `xlb_audit_findings{kind="backend_weight",severity="drift"}` and
/// `xlb_alert{kind="audit"}` become 1 and the alert command runs; restoring the weight clears
/// it.
#[test]
fn scheduled_audit_catches_a_map_edited_behind_the_daemons_back() {
    require_privileges!();
    let drill = alert_lab("audit", |text| text + "\n[audit]\ninterval_seconds = 1\n");
    let lab = &drill.lab;
    let edit = |weight: u32| {
        let mut maps = lb_userspace::pins::open(&lab.pin_path).expect("pins");
        let snapshot = lb_userspace::live::Snapshot::read(&mut maps).expect("snapshot");
        let address = lab.backends[1].address.to_string();
        let (id, backend) = snapshot
            .backends
            .iter()
            .enumerate()
            .find(|(_, b)| lb_userspace::rollout::live_address(b).to_string() == address)
            .expect("b1 in the backend map");
        let edited = lb_common::Backend { weight, ..*backend };
        lb_userspace::maps::array::<lb_common::Backend>(&mut maps, lb_common::map_names::BACKENDS)
            .expect("backend map")
            .set(id as u32, &edited, 0)
            .expect("edit");
    };
    let generation = lab.generation().expect("generation");
    edit(7);
    let audit_alert = |samples: &[Sample]| {
        metric(
            samples,
            "xlb_alert",
            &[("kind", "audit"), ("vip", VIP_SPEC)],
        )
    };
    let within = Duration::from_secs(1) + Duration::from_secs(1) + SLACK;
    let found = try_wait_until(within, || {
        let samples = try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?;
        let drift = metric(
            &samples,
            "xlb_audit_findings",
            &[("kind", "backend_weight"), ("severity", "drift")],
        );
        Ok(drift == Some(1.0) && audit_alert(&samples) == Some(1.0))
    });
    assert!(
        found.is_some(),
        "the edited weight was not found within {within:?}:\n{}\ndaemon log:\n{}",
        lab.scrape().unwrap_or_default(),
        lab.daemon_log()
    );
    assert_eq!(
        lab.generation().expect("generation"),
        generation,
        "the edit made no generation"
    );
    wait_until("the alert command records the audit alert", SLACK, || {
        let recorded = std::fs::read_to_string(&drill.record).unwrap_or_default();
        Ok(recorded.contains("XLB_ALERT_KIND=audit\n") && recorded.contains("backend_weight"))
    });
    edit(1);
    wait_until("the audit alert clears", within, || {
        Ok(audit_alert(&try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?) == Some(0.0))
    });
}

/// Test the alarm end to end on a skew the table does not explain: with `hash = "source"` and
/// one client address every new connection goes to one of three equal backends, and within
/// one window (plus slack) skew or dominant fires for it in the metrics and through the alert
/// command.
#[test]
fn one_client_on_a_source_hash_raises_the_alert() {
    require_privileges!();
    let drill = alert_lab("srchash", |text| {
        text.replace(
            "forwarding = \"dsr\"\n",
            "forwarding = \"dsr\"\nhash = \"source\"\n",
        )
    });
    let status = drill.lab.status().expect("status");
    assert_eq!(status["vips"][0]["hash"], "source", "{status}");
    let target = drill
        .lab
        .connector()
        .session(|session| session.ask())
        .expect("client")
        .expect("connection");
    let kinds = drill.expect_alert_on(target);
    assert!(kinds.contains("skew"), "only {kinds} fired");
}

/// Test that a daemon started after `kill -9` judges the backends' health afresh instead of
/// trusting the verdicts the old one left in the pinned maps: a backend the old daemon took
/// out (its server stopped) and whose server is back when the new daemon starts returns to
/// the table and gets new connections within interval×rise (plus slack).
#[test]
fn restart_readmits_a_backend_that_recovered_meanwhile() {
    require_privileges!();
    let (mut lab, victim) = started_with_one_out("readmit");
    lab.kill_daemon().expect("kill -9");
    lab.start_backend(victim).expect("start b1");
    lab.start_daemon().expect("xlb run again");
    // The old daemon's verdict (BACKEND_UNHEALTHY in the pinned backend map) must not outlive
    // it: the new one's health checks see b1 pass from the start.
    let within = HEALTH_INTERVAL * RISE + SLACK;
    let back = try_wait_until(within, || lab.in_table(victim));
    let answered = lab.ask_many(100, BATCH).expect("connections");
    let samples = try_parse(&lab.scrape().expect("scrape")).expect("metrics");
    let address = lab.backends[victim].address.to_string();
    let up = metric(
        &samples,
        "xlb_backend_up",
        &[("vip", VIP_SPEC), ("backend", address.as_str())],
    );
    assert!(
        back.is_some() && answered[victim] > 0,
        "b{victim} passes its health checks (xlb_backend_up {up:?}) but is not back in the \
         table {within:?} after the new daemon started: {}\nanswers of 100 new connections: \
         {answered:?}\ndaemon log:\n{}",
        lab.backend_stats(victim).expect("stats"),
        lab.daemon_log()
    );
}

/// Test that under a faked systemd (a unix datagram socket as NOTIFY_SOCKET, a 1 s watchdog
/// in WATCHDOG_USEC) the daemon sends READY=1 only once its config is live (the generation is
/// 1 when it arrives), then WATCHDOG=1 about every half second, and STOPPING=1 on SIGTERM.
#[test]
fn notifies_systemd_ready_then_watchdog_pings() {
    require_privileges!();
    let mut lab = DaemonLab::new("notify", 1).expect("lab");
    let path = lab.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind NOTIFY_SOCKET");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let notify = format!("NOTIFY_SOCKET={}", path.display());
    lab.start_daemon_under(&["env", &notify, "WATCHDOG_USEC=1000000"])
        .expect("xlb run");
    let receive = || {
        let mut buffer = [0u8; 4096];
        let len = socket
            .recv(&mut buffer)
            .unwrap_or_else(|err| panic!("no notification: {err}; log:\n{}", lab.daemon_log()));
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    };
    let first = receive();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    assert!(first.contains("STATUS=generation 1 of "), "{first:?}");
    assert_eq!(lab.generation().expect("generation"), 1);
    let started = Instant::now();
    let mut pings = 0;
    while pings < 4 {
        let message = receive();
        assert_eq!(message, "WATCHDOG=1\n");
        pings += 1;
    }
    let took = started.elapsed();
    eprintln!("4 watchdog pings in {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "pings every 0.5 s expected, 4 took {took:?}"
    );
    lab.signal_daemon(libc::SIGTERM).expect("SIGTERM");
    let stopping = std::iter::repeat_with(receive)
        .take(10)
        .find(|message| message != "WATCHDOG=1\n");
    assert_eq!(stopping.as_deref(), Some("STOPPING=1\n"));
    let status = lab.wait_daemon_exit(SLACK).expect("exit");
    assert!(status.success(), "{status:?}");
}
