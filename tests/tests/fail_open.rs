//! End-to-end test of the daemon when every checked backend of a VIP is down: the VIP fails
//! open (the kernel keeps steering new flows to every backend), `few_healthy` fires in the
//! metrics and through the alert command, and once the backends are back the alert clears,
//! in the metrics and through the alert command too. The lab is [`xlb_tests::daemon_lab`].

use std::time::Duration;

use xlb_tests::{
    daemon_lab::{DaemonLab, FALL, HEALTH_INTERVAL, RISE, VIP_SPEC},
    prometheus::{try_parse, value},
    require_privileges,
    wait::wait_until,
};

/// Generous bound for a health transition and the daemon's reaction on a loaded host.
const REACT: Duration = Duration::from_secs(20);

/// `xlb_alert{kind="few_healthy", vip}` of the lab's VIP.
fn few_healthy(lab: &DaemonLab) -> anyhow::Result<f64> {
    let samples = try_parse(&lab.scrape()?).map_err(anyhow::Error::msg)?;
    Ok(value(
        &samples,
        "xlb_alert",
        &[("kind", "few_healthy"), ("vip", VIP_SPEC)],
    ))
}

/// The new flows the kernel counted per backend (`xlb stats`).
fn new_flows(lab: &DaemonLab) -> Vec<u64> {
    (0..lab.backends.len())
        .map(|i| {
            lab.backend_stats(i).expect("stats")["new_flows"]
                .as_u64()
                .expect("new_flows")
        })
        .collect()
}

/// The alert command's records (`XLB_ALERT_*` lines, `---` after each run) that are about
/// `kind` and say `FIRING=firing`.
fn recorded(record: &std::path::Path, kind: &str, firing: u8) -> usize {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .split("---")
        .filter(|run| {
            run.contains(&format!("XLB_ALERT_KIND={kind}\n"))
                && run.contains(&format!("XLB_ALERT_FIRING={firing}\n"))
        })
        .count()
}

/// Test that with every backend's server stopped (every health check failing) the VIP fails
/// open: all three backends stay in the kernel's table (30 new connection attempts reach every
/// one of them, counted as new flows), `xlb_alert{kind="few_healthy"}` is 1 and the alert
/// command ran with XLB_ALERT_KIND=few_healthy and XLB_ALERT_FIRING=1; and that once the
/// servers listen again the alert clears (the metric 0, the command run with
/// XLB_ALERT_FIRING=0) and 60 new connections all succeed over every backend.
#[test]
fn every_backend_down_fails_open_and_the_alert_clears() {
    require_privileges!();
    let mut lab = DaemonLab::new("failopen", 3).expect("lab");
    let record = lab.dir.join("alerts.env");
    let alerts = format!(
        "window_seconds = 2\nmin_healthy = 2\ncommand = 'env | grep ^XLB_ALERT_ | sort >> \
         \"{file}\"; echo --- >> \"{file}\"'",
        file = record.display()
    );
    lab.write_config(&lab.config_text(&[1, 1, 1], Some(&alerts)))
        .expect("config");
    lab.start_daemon().expect("xlb run");
    assert_eq!(few_healthy(&lab).expect("metrics"), 0.0);

    for backend in 0..lab.backends.len() {
        lab.stop_backend(backend).expect("stop a backend");
    }
    let took = wait_until("few_healthy fires", HEALTH_INTERVAL * FALL + REACT, || {
        Ok(few_healthy(&lab)? == 1.0)
    });
    eprintln!("few_healthy fired {took:?} after every server stopped");
    // Every backend down by its checks, yet every one keeps its part of the table.
    for backend in 0..lab.backends.len() {
        let row = lab.backend_stats(backend).expect("stats");
        assert!(
            row["expected_share"].as_f64() > Some(0.0),
            "b{backend} left the table although every backend is down (fail open): {row}"
        );
    }
    let before = new_flows(&lab);
    let refused = lab
        .connector()
        .session(|session| (0..30).filter(|_| session.ask().is_err()).count())
        .expect("client namespace");
    let after = new_flows(&lab);
    eprintln!(
        "30 attempts with every server down ({refused} refused): new flows {before:?} -> {after:?}"
    );
    for (backend, (was, now)) in before.iter().zip(&after).enumerate() {
        assert!(
            now > was,
            "no new flow reached b{backend} while the VIP fails open: {before:?} -> {after:?}; \
             daemon log:\n{}",
            lab.daemon_log()
        );
    }
    wait_until(
        "the alert command records few_healthy firing",
        REACT,
        || Ok(recorded(&record, "few_healthy", 1) > 0),
    );

    for backend in 0..lab.backends.len() {
        lab.start_backend(backend).expect("start a backend");
    }
    let took = wait_until("few_healthy clears", HEALTH_INTERVAL * RISE + REACT, || {
        Ok(few_healthy(&lab)? == 0.0)
    });
    eprintln!("few_healthy cleared {took:?} after the servers came back");
    wait_until(
        "the alert command records few_healthy clearing",
        REACT,
        || Ok(recorded(&record, "few_healthy", 0) > 0),
    );
    let text = std::fs::read_to_string(&record).expect("alert record");
    let cleared = text
        .split("---")
        .find(|run| run.contains("XLB_ALERT_KIND=few_healthy\n") && run.contains("FIRING=0\n"))
        .expect("a clearing run");
    assert!(cleared.contains("XLB_ALERT_VIP="), "{cleared}");
    assert!(cleared.contains("XLB_ALERT_MESSAGE="), "{cleared}");
    let answered = lab
        .ask_many(60, Duration::from_secs(60))
        .expect("connections once the backends are back");
    assert!(answered.iter().all(|&n| n > 0), "{answered:?}");
}
