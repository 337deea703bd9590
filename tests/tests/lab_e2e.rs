//! End-to-end tests of the lab as a whole: the real `xlb run --config` daemon steering real
//! TCP connections from the client namespace to the VIP, checked for what Maglev promises
//! under change: weighted shares over ten thousand connections, established streams that
//! survive an added backend, flows that stay put when another backend is removed, and
//! connections that never fail while the config changes under a steady load. The lab is
//! [`xlb_tests::daemon_lab`]; measured shares and timings are printed with `--nocapture`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use xlb_tests::{
    daemon_lab::DaemonLab,
    require_privileges, shares,
    steady_client::{Ran, SteadyClient},
    wait::wait_until,
};

/// How long the daemon may take to notice a changed config file and apply it: its 1 s tick
/// plus slack for a loaded host.
const NOTICE: Duration = Duration::from_secs(15);
/// How long a steady client may take to make 50 more connections (a fraction of a second
/// here; generous for a loaded host).
const LOAD_PROGRESS: Duration = Duration::from_secs(30);
/// How long a batch of 100 connections may take (a few hundred milliseconds here).
const BATCH: Duration = Duration::from_secs(60);

/// Writes `text` as the daemon's config and waits until the daemon made it live: the
/// generation goes past `generation`. Returns the new generation and how long it took.
fn reload(lab: &DaemonLab, text: &str, generation: u64) -> (u64, Duration) {
    lab.write_config(text).expect("write the config");
    let took = wait_until("the changed config file is applied", NOTICE, || {
        Ok(lab.generation()? > generation)
    });
    (lab.generation().expect("generation"), took)
}

/// Test that with weights 1:2:3 each backend's share of 10,000 new connections (from eight
/// client threads, each connection bounded by the lab's 2 s connect and read timeouts; how
/// fast they go is `cargo xtask bench`'s business) is within ±2 percentage points of its
/// weight's share (so within ±5 too), and that every connection is answered.
#[test]
fn distribution_follows_weights_over_ten_thousand_connections() {
    require_privileges!();
    const CONNECTIONS: usize = 10_000;
    const THREADS: usize = 8;
    const _: () = assert!(
        CONNECTIONS.is_multiple_of(THREADS),
        "threads share the work evenly"
    );
    let weights = [1u32, 2, 3];
    let mut lab = DaemonLab::new("weights", 3).expect("lab");
    lab.write_config(&lab.config_text(&weights, None))
        .expect("write the config");
    lab.start_daemon().expect("xlb run");

    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let connector = lab.connector();
            let count = CONNECTIONS / THREADS;
            std::thread::spawn(move || {
                connector
                    .session(|session| {
                        let mut answered = vec![0u64; 3];
                        let mut failures = Vec::new();
                        for _ in 0..count {
                            match session.ask() {
                                Ok(backend) => answered[backend] += 1,
                                Err(err) => failures.push(format!("thread {thread}: {err:#}")),
                            }
                        }
                        (answered, failures)
                    })
                    .expect("client namespace")
            })
        })
        .collect();
    let mut answered = vec![0u64; 3];
    let mut failures = Vec::new();
    for worker in workers {
        let (counts, failed) = worker.join().expect("client thread");
        for (total, count) in answered.iter_mut().zip(counts) {
            *total += count;
        }
        failures.extend(failed);
    }
    let took = start.elapsed();
    assert!(
        failures.is_empty(),
        "{} connections failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    let total: u64 = answered.iter().sum();
    assert_eq!(total, CONNECTIONS as u64, "{answered:?}");

    let spread = shares::shares(&answered, &weights);
    let report: Vec<String> = spread
        .iter()
        .enumerate()
        .map(|(index, share)| {
            format!(
                "b{index} (weight {}): {} = {:.2}% (expected {:.2}%, off {:+.2} points)",
                share.weight,
                share.answered,
                share.percent,
                share.expected,
                share.percent - share.expected
            )
        })
        .collect();
    eprintln!(
        "{CONNECTIONS} connections in {took:?}:\n  {}",
        report.join("\n  ")
    );
    shares::assert_within(&spread, 5.0, &report);
    shares::assert_within(&spread, 2.0, &report);
}

/// Test that adding a fourth backend to the config (its server started first) breaks none of
/// 30 established streams: each echoes every 100 ms through the reload and for 2 s after the
/// new generation is live; and that new connections afterwards reach the new backend too.
#[test]
fn adding_a_backend_breaks_no_established_stream() {
    require_privileges!();
    const STREAMS: usize = 30;
    let added = 3;
    let mut lab = DaemonLab::new("addbackend", 4).expect("lab");
    // The daemon starts with the first three backends only (the config zips weights with
    // backends), and the fourth server is down until it is added.
    lab.stop_backend(added).expect("stop b3");
    lab.write_config(&lab.config_text(&[1, 1, 1], None))
        .expect("write the config");
    lab.start_daemon().expect("xlb run");
    let generation = lab.generation().expect("generation");

    let mut streams = lab.open_streams(STREAMS).expect("30 streams");
    let mut per_backend = vec![0u64; lab.backends.len()];
    for stream in &streams {
        per_backend[stream.backend] += 1;
    }
    eprintln!("streams per backend before: {per_backend:?}");
    assert_eq!(per_backend[added], 0, "{per_backend:?}");

    lab.start_backend(added).expect("start b3");
    lab.write_config(&lab.config_text(&[1, 1, 1, 1], None))
        .expect("write the config with b3");
    let written = Instant::now();
    let mut live_at = None;
    let mut rounds = 0u32;
    // Echo every 100 ms until the new generation has been live for 2 s (bounded: the reload
    // must come within NOTICE).
    loop {
        for (n, stream) in streams.iter_mut().enumerate() {
            stream.echo(rounds as u8).unwrap_or_else(|err| {
                panic!(
                    "stream {n} (b{}) round {rounds}, {:?} after the config was written \
                     (live after {live_at:?}): {err:#}",
                    stream.backend,
                    written.elapsed()
                )
            });
        }
        rounds += 1;
        match live_at {
            None => {
                if lab.generation().expect("generation") > generation {
                    live_at = Some(written.elapsed());
                } else {
                    assert!(
                        written.elapsed() < NOTICE,
                        "the config with b3 was not applied within {NOTICE:?}; daemon log:\n{}",
                        lab.daemon_log()
                    );
                }
            }
            Some(live) if written.elapsed() >= live + Duration::from_secs(2) => break,
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = live_at.expect("live");
    eprintln!(
        "the config with b3 was live {live:?} after it was written; {rounds} rounds of echoes \
         on {STREAMS} streams in {:?}",
        written.elapsed()
    );
    assert!(
        lab.in_table(added).expect("stats"),
        "b3 is not in the table"
    );

    let answered = lab.ask_many(200, BATCH).expect("new connections");
    eprintln!("new connections after the reload: {answered:?}");
    assert_eq!(answered.iter().sum::<u64>(), 200);
    assert!(
        answered[added] > 0,
        "the added b3 got none of 200: {answered:?}"
    );
    // The new connections disturbed none of the old streams.
    for stream in &mut streams {
        stream
            .echo(0xff)
            .expect("an established stream after the new connections");
    }
}

/// Test that removing one of three equal backends moves only its own flows: of 200 fixed
/// client source ports, those the remaining backends answered before the reload answer from
/// the same backend after it, and those the removed backend answered move to the others.
///
/// Each flow is a connection from `198.18.0.1:PORT` with PORT in 20,000..20,200 (outside the
/// client's ephemeral range, so nothing else uses them), bound with SO_REUSEADDR and closed by
/// the client with a reset (SO_LINGER 0): no TIME_WAIT is left on either side, so the second
/// round reuses exactly the same four-tuples, and thus the same flow hashes. Every SYN is
/// hashed into the live Maglev table (the flow table is consulted only for non-SYN packets),
/// so where a port lands before and after is exactly what the two tables say.
#[test]
fn removing_a_backend_moves_only_its_flows() {
    require_privileges!();
    const PORTS: std::ops::Range<u16> = 20_000..20_200;
    let removed = 2;
    let lab = DaemonLab::started("remove", 3).expect("lab with xlb run");
    let generation = lab.generation().expect("generation");

    let round = |lab: &DaemonLab| -> BTreeMap<u16, usize> {
        lab.connector()
            .session(|session| {
                PORTS
                    .map(|port| {
                        let backend = session
                            .ask_from(port)
                            .unwrap_or_else(|err| panic!("from port {port}: {err:#}"));
                        (port, backend)
                    })
                    .collect()
            })
            .expect("client namespace")
    };
    let before = round(&lab);
    let mut counts = [0u32; 3];
    for backend in before.values() {
        counts[*backend] += 1;
    }
    eprintln!("{} ports before: per backend {counts:?}", before.len());
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");

    // The config zips weights with backends: two weights keep b0 and b1 and drop b2.
    let (_, took) = reload(&lab, &lab.config_text(&[1, 1], None), generation);
    eprintln!("the config without b{removed} was live {took:?} after it was written");
    let after = round(&lab);

    let mut stayed = 0;
    let mut wrongly_moved = Vec::new();
    let mut moved = [0u32; 3];
    for (port, &was) in &before {
        let now = after[port];
        assert_ne!(
            now, removed,
            "port {port} still reaches the removed b{removed}"
        );
        if was == removed {
            moved[now] += 1;
        } else if now == was {
            stayed += 1;
        } else {
            wrongly_moved.push(format!("port {port}: b{was} -> b{now}"));
        }
    }
    eprintln!(
        "after: {stayed} flows stayed on their backend, b{removed}'s {} flows moved to \
         {moved:?}, {} others moved",
        counts[removed],
        wrongly_moved.len()
    );
    assert!(
        wrongly_moved.is_empty(),
        "{} flows of the remaining backends moved: {wrongly_moved:#?}",
        wrongly_moved.len()
    );
    assert_eq!(stayed, counts[0] + counts[1]);
    assert_eq!(moved[0] + moved[1], counts[removed]);
}

/// Test that applying 5 different valid configs (by rewriting the file the daemon watches:
/// weight changes, one backend drained by weight 0, then back) while a client opens
/// connections continuously fails not one of them, that the client was running through every
/// apply (connections were made before each write and 50 more after each new generation was
/// live), and that the generation advances by exactly 5.
#[test]
fn apply_under_steady_load_fails_no_connection() {
    require_privileges!();
    /// Bounds of the client: connections and time (generous: the client runs until the last
    /// apply is done and stops it).
    const MAX_CONNECTIONS: u64 = 100_000;
    const MAX_TIME: Duration = Duration::from_secs(300);
    /// Connections the client must complete on each config once it is live.
    const AFTER_EACH: u64 = 50;
    const CONFIGS: [[u32; 3]; 5] = [[2, 1, 1], [1, 2, 3], [1, 1, 0], [1, 3, 0], [1, 1, 1]];
    let lab = DaemonLab::started("applyload", 3).expect("lab with xlb run");
    let first = lab.generation().expect("generation");

    let client = SteadyClient::start(lab.connector(), MAX_CONNECTIONS, MAX_TIME);
    // The client's progress is the proof that it is still running: a stopped client (bound
    // hit, thread died) makes this wait fail.
    let progressed = |what: &str, from: u64| {
        wait_until(what, LOAD_PROGRESS, || {
            Ok(client.made() >= from + AFTER_EACH)
        });
    };
    progressed("the client is under way", 0);

    let mut generation = first;
    for weights in CONFIGS {
        let at_write = client.made();
        let (now, took) = reload(&lab, &lab.config_text(&weights, None), generation);
        let at_live = client.made();
        assert_eq!(
            now,
            generation + 1,
            "weights {weights:?} moved the generation from {generation} to {now}; daemon \
             log:\n{}",
            lab.daemon_log()
        );
        generation = now;
        eprintln!(
            "weights {weights:?} live {took:?} after the write (generation {now}, client at \
             connection {at_write} at the write, {at_live} when live)"
        );
        progressed(
            &format!("{AFTER_EACH} connections on weights {weights:?} once live"),
            at_live,
        );
    }
    let Ran {
        made: total,
        failures,
        answered,
    } = client.stop();
    eprintln!(
        "{total} connections ({answered:?} per backend), {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} connections failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(
        lab.generation().expect("generation"),
        first + 5,
        "daemon log:\n{}",
        lab.daemon_log()
    );
}
