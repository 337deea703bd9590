//! One owner of the live state: the verbs that change it (`apply`, `backend`, `down`) while the
//! real `xlb run --config` daemon runs go through it (or are refused naming it), its changes
//! survive health changes and reloads, two writers never interleave, and a daemon whose pins
//! vanish pins them again and stays the owner. The lab is [`xlb_tests::daemon_lab`].

use std::{
    collections::BTreeSet, os::unix::fs::PermissionsExt as _, process::Command, time::Duration,
};

use serde_json::Value;
use xlb_tests::{
    daemon_lab::{DaemonLab, FALL, HEALTH_INTERVAL, RISE, VIP_NAME, VIP_SPEC, VerbOutput},
    require_privileges,
    wait::wait_until,
};

/// Health-check arithmetic plus a loaded host's slack.
const HEALTH_WAIT: Duration = Duration::from_secs(15);
/// How long the daemon may take to exit after `xlb down`, or to pin again what was removed.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// A running lab of three equal backends with its daemon started; returns it and the pid.
fn started(label: &str) -> (DaemonLab, u32) {
    let mut lab = DaemonLab::new(label, 3).expect("lab");
    let pid = lab.start_daemon().expect("xlb run");
    (lab, pid)
}

/// Runs `xlb ARGS --output json` and returns the output and its JSON document.
fn json(lab: &DaemonLab, args: &[&str]) -> (VerbOutput, Value) {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let out = lab
        .xlb(&args)
        .unwrap_or_else(|err| panic!("xlb {args:?}: {err:#}"));
    let value = out
        .json()
        .unwrap_or_else(|err| panic!("xlb {args:?}: {err:#}\n{}", out.stderr));
    (out, value)
}

/// The state (`active`, `disabled`, ...) `xlb stats` shows for backend `index`.
fn state(lab: &DaemonLab, index: usize) -> String {
    let row = lab.backend_stats(index).expect("stats");
    row["state"].as_str().unwrap_or_default().to_owned()
}

/// `xlb audit` of the daemon's config: its exit code and findings.
fn audit(lab: &DaemonLab) -> (Option<i32>, Vec<Value>) {
    let config = lab.config_path.to_str().expect("path").to_owned();
    let (out, report) = json(lab, &["audit", &config]);
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    (out.code, findings)
}

/// Test that `xlb apply` of the daemon's own config while it runs is made by the daemon (the
/// answer names its pid) and stays through a health change: the weights it set are live, and
/// `xlb audit` then finds no drift and shows the backend the checks took out as state. Test that
/// applying another file is refused with the daemon's pid and the way forward, and changes
/// nothing; and that a second daemon on the same pins is refused.
#[test]
fn apply_through_the_daemon_sticks_and_another_file_is_refused() {
    require_privileges!();
    let (mut lab, pid) = started("ownapply");
    let before = lab.generation().expect("generation");
    // The control socket is root's alone (0660 only with an `xlb` group).
    let socket = lb_userspace::control::socket_path(&lab.pin_path);
    let mode = std::fs::metadata(&socket)
        .unwrap_or_else(|err| panic!("{}: {err}", socket.display()))
        .permissions()
        .mode();
    assert!(
        mode & 0o7777 == 0o600 || mode & 0o7777 == 0o660,
        "{} has mode {:o}",
        socket.display(),
        mode & 0o7777
    );
    assert_eq!(mode & 0o007, 0, "others may use {}", socket.display());

    let other = lab
        .write_file("other.toml", &lab.config_text(&[1, 2, 2], None))
        .expect("other config");
    let other = other.to_str().expect("path");
    let (refused, answer) = json(&lab, &["apply", other]);
    assert_eq!(refused.code, Some(4), "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("pid {pid}")) && error.contains("xlb.toml"),
        "the refusal names neither the daemon's pid nor its config: {answer}"
    );
    assert_eq!(answer["exit_code"], 4, "{answer}");
    assert_eq!(lab.generation().expect("generation"), before, "changed");

    lab.write_config(&lab.config_text(&[2, 1, 1], None))
        .expect("config");
    let config = lab.config_path.to_str().expect("path").to_owned();
    let (applied, answer) = json(&lab, &["apply", &config]);
    assert_eq!(applied.code, Some(0), "{answer}\n{}", applied.stderr);
    assert_eq!(answer["daemon"], pid, "not applied by the daemon: {answer}");
    assert!(answer["generation"].as_u64() > Some(before), "{answer}");
    assert_eq!(
        lab.backend_stats(0).expect("stats")["weight"],
        2,
        "the applied weight is not live"
    );

    // A health change makes the daemon reconcile: the applied config must stay.
    lab.stop_backend(2).expect("stop b2");
    wait_until("b2 leaves the table", HEALTH_WAIT, || Ok(!lab.in_table(2)?));
    assert_eq!(lab.backend_stats(0).expect("stats")["weight"], 2);
    let (code, findings) = audit(&lab);
    assert_eq!(code, Some(0), "drift after a health change: {findings:?}");
    let health = findings
        .iter()
        .find(|f| f["kind"] == "backend_health")
        .unwrap_or_else(|| panic!("b2 down by its checks is not shown: {findings:?}"));
    assert_eq!(health["severity"], "note", "{health}");
    assert_eq!(health["backend"], lab.backends[2].address.to_string());

    // A second daemon on the same pins is refused and names the first.
    let mut second = lab.lb.command(&lab.xlb);
    second.args(["run", "--config", &config, "--duration", "5"]);
    let second = second.output().expect("second xlb run");
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{said}");
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    assert!(
        lab.daemon_pid()
            .is_some_and(|p| !xlb_tests::daemon_lab::exited(p)),
        "the first daemon stopped"
    );
}

/// Test that `xlb backend disable|drain|enable` while the daemon runs are made by it (the
/// answer names its pid), and that the disable survives a health change of another backend and a
/// reload of a changed config: the daemon never undoes an operator's change; `xlb audit` shows
/// it as state.
/// Test that the VIP is accepted by its name (`backend`, `explain`) and shown by name in
/// status, stats, explain and audit.
#[test]
fn backend_verbs_through_the_daemon_survive_health_changes_and_reloads() {
    require_privileges!();
    let (mut lab, pid) = started("ownbackend");
    let b0 = lab.backends[0].address.to_string();
    let (out, answer) = json(&lab, &["backend", "disable", VIP_SPEC, &b0]);
    assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
    assert_eq!(answer["daemon"], pid, "{answer}");
    assert_eq!(state(&lab, 0), "disabled");

    lab.stop_backend(1).expect("stop b1");
    wait_until("b1 leaves the table", HEALTH_WAIT, || Ok(!lab.in_table(1)?));
    lab.start_backend(1).expect("start b1");
    let back = HEALTH_INTERVAL * (RISE + FALL) + HEALTH_WAIT;
    wait_until("b1 returns", back, || lab.in_table(1));
    assert_eq!(
        state(&lab, 0),
        "disabled",
        "a health change undid the disable"
    );

    let generation = lab.generation().expect("generation");
    lab.write_config(&lab.config_text(&[2, 1, 1], None))
        .expect("config");
    wait_until("the reload applies", HEALTH_WAIT, || {
        Ok(lab.generation()? > generation)
    });
    assert_eq!(state(&lab, 0), "disabled", "a reload undid the disable");
    let (code, findings) = audit(&lab);
    assert_eq!(code, Some(0), "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "backend_operator" && f["backend"] == b0.as_str()),
        "{findings:?}"
    );

    // By name, as the config calls the VIP; every read verb shows the name beside the address.
    let (out, answer) = json(&lab, &["backend", "drain", VIP_NAME, &b0]);
    assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
    assert_eq!(answer["vip"], VIP_SPEC, "{answer}");
    assert_eq!(state(&lab, 0), "drained");
    let status = lab.status().expect("status");
    assert_eq!(status["vips"][0]["name"], VIP_NAME, "{status}");
    let (_, stats) = json(&lab, &["stats"]);
    assert_eq!(stats["vips"][0]["name"], VIP_NAME, "{stats}");
    let (out, explained) = json(&lab, &["explain", "198.18.0.1:40000", VIP_NAME]);
    assert_eq!(out.code, Some(0), "{explained}\n{}", out.stderr);
    assert_eq!(explained["vip"]["name"], VIP_NAME, "{explained}");
    assert_eq!(explained["vip"]["vip"], VIP_SPEC, "{explained}");
    let (_, findings) = audit(&lab);
    assert!(
        findings.iter().any(|f| f["vip_name"] == VIP_NAME),
        "{findings:?}"
    );
    let (out, answer) = json(&lab, &["backend", "enable", VIP_SPEC, &b0]);
    assert_eq!(out.code, Some(0), "{answer}");
    assert!(lab.in_table(0).expect("stats"), "enable did not return b0");
}

/// Test that `xlb down` while the daemon runs stops it cleanly: the answer names its pid, the
/// daemon has exited (status 0) by the time `down` returns, the pins are gone, no XDP program
/// is left on the interface, and the daemon does not claim forwarding continues (its log, a
/// file, has no colour codes). Test that XLB_PIN_PATH stands in for --pin-path, and that
/// inside `ip netns exec` (which hides the pins) the error says how to reach them.
#[test]
fn down_through_the_daemon_stops_it_and_detaches() {
    require_privileges!();
    let (mut lab, pid) = started("owndown");
    let by_env = lab
        .lb
        .command(&lab.xlb)
        .args(["status", "--output", "json"])
        .env("XLB_PIN_PATH", &lab.pin_path)
        .output()
        .expect("xlb status");
    let status: Value = serde_json::from_slice(&by_env.stdout).expect("status JSON");
    assert_eq!(by_env.status.code(), Some(0), "{status}");
    assert_eq!(status["pin_path"], lab.pin_path.to_str().expect("path"));
    let hidden = Command::new("ip")
        .args(["netns", "exec", &lab.lb.name])
        .arg(&lab.xlb)
        .args(["status", "--output", "json", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .expect("ip netns exec xlb status");
    let error: Value = serde_json::from_slice(&hidden.stdout).expect("error JSON");
    assert_eq!(hidden.status.code(), Some(3), "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("ip netns exec") && e.contains("nsenter --net")),
        "{error}"
    );
    let (out, answer) = json(&lab, &["down"]);
    assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
    assert_eq!(answer["daemon"], pid, "{answer}");
    assert!(
        xlb_tests::daemon_lab::exited(pid),
        "xlb down returned while the daemon still runs"
    );
    let status = lab.wait_daemon_exit(EXIT_WAIT).expect("daemon exit");
    assert!(status.success(), "xlb run exited with {status}");
    assert!(
        !lab.pin_path.exists(),
        "pins left at {}",
        lab.pin_path.display()
    );
    let link = lab.lb.command("ip").args(["link", "show", "eth0"]).output();
    let link = String::from_utf8_lossy(&link.expect("ip link").stdout).into_owned();
    assert!(!link.contains("xdp"), "still attached: {link}");
    let log = lab.daemon_log();
    assert!(log.contains("stopped by `xlb down`"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal: {log:?}"
    );
    assert!(!log.contains("forwarding continues"), "{log}");
    let (out, answer) = json(&lab, &["status"]);
    assert_eq!(out.code, Some(3), "{answer}");
}

/// Test that removing the pin directory under a running daemon (not through it) leaves it the
/// owner: it pins everything again and still answers on its control socket (a backend verb is
/// made by it).
#[test]
fn pins_removed_under_the_daemon_are_restored_and_it_stays_the_owner() {
    require_privileges!();
    let (lab, pid) = started("ownlost");
    std::fs::remove_dir_all(&lab.pin_path).expect("remove the pin directory");
    wait_until("the daemon pins again", EXIT_WAIT, || {
        Ok(lab.pin_path.join("link").exists())
    });
    let b1 = lab.backends[1].address.to_string();
    let (out, answer) = json(&lab, &["backend", "disable", VIP_SPEC, &b1]);
    assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
    assert_eq!(answer["daemon"], pid, "not made by the daemon: {answer}");
    assert_eq!(state(&lab, 1), "disabled");
    let log = lab.daemon_log();
    assert!(log.contains("pinned again"), "{log}");
    assert!(
        lab.daemon_pid()
            .is_some_and(|p| !xlb_tests::daemon_lab::exited(p)),
        "the daemon stopped: {log}"
    );
}

/// Test that `xlb apply` of the daemon's own file, which the daemon checks and guards itself
/// (the verb no longer checks it first), refuses as the verb did, changing nothing, and says the
/// daemon judged it: a file with an error (exit 1, its finding), all weight on one backend
/// (XLB003, exit 1); and that with `--override XLB003` the daemon makes that live.
#[test]
fn apply_checked_by_the_daemon_refuses_as_the_verb_did() {
    require_privileges!();
    let (lab, pid) = started("ownchecks");
    let config = lab.config_path.to_str().expect("path").to_owned();
    let before = lab.generation().expect("generation");

    let good = lab.config_text(&[1, 1, 1], None);
    lab.write_config(&good.replace("protocol = \"tcp\"", "protocol = \"tcpx\""))
        .expect("config");
    // Named from its directory: the findings name it as the operator did.
    let dir = lab.config_path.parent().expect("the config's directory");
    let name = lab.config_path.file_name().expect("the config's name");
    let out = Command::new(&lab.xlb)
        .current_dir(dir)
        .arg("apply")
        .arg(name)
        .args(["--output", "json"])
        .output()
        .expect("xlb apply");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(out.status.code(), Some(1), "{answer}");
    assert_eq!(answer["daemon"], pid, "not judged by the daemon: {answer}");
    let first = answer["diagnostics"][0].as_str().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:", name.to_string_lossy())) && first.contains("protocol"),
        "{answer}"
    );
    assert_eq!(answer["applied"], false, "{answer}");

    lab.write_config(&lab.config_text(&[1, 0, 0], None))
        .expect("config");
    let (out, answer) = json(&lab, &["apply", &config]);
    assert_eq!(out.code, Some(1), "{answer}\n{}", out.stderr);
    assert_eq!(answer["daemon"], pid, "not judged by the daemon: {answer}");
    assert!(
        answer["diagnostics"].to_string().contains("XLB003"),
        "{answer}"
    );
    assert_eq!(lab.generation().expect("generation"), before, "changed");

    let (out, answer) = json(&lab, &["apply", &config, "--override", "XLB003"]);
    assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
    assert_eq!(answer["daemon"], pid, "{answer}");
    assert!(answer["generation"].as_u64() > Some(before), "{answer}");
    let in_table: Vec<bool> = (0..3).map(|i| lab.in_table(i).expect("stats")).collect();
    assert_eq!(in_table, [true, false, false], "all on b0 is not live");
}

/// Runs `writers` writers at once (applies of the daemon's config, drains and enables of every
/// backend in turn) and returns the generation each reported; every one must succeed.
fn concurrent_writers(lab: &DaemonLab, writers: usize) -> Vec<u64> {
    let config = lab.config_path.to_str().expect("path");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let address = lab.backends[i % lab.backends.len()].address.to_string();
                scope.spawn(move || match i % 3 {
                    0 => json(lab, &["apply", config]),
                    1 => json(lab, &["backend", "drain", VIP_SPEC, &address]),
                    _ => json(lab, &["backend", "enable", VIP_SPEC, &address]),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                let (out, answer) = handle.join().expect("writer thread");
                assert_eq!(out.code, Some(0), "{answer}\n{}", out.stderr);
                answer["generation"].as_u64().expect("generation")
            })
            .collect()
    })
}

/// Test that two writers never interleave, with and without the daemon: eight applies and
/// backend verbs at once each get a generation of their own (writers that read the same state would both
/// write the same next generation), and the maps audit clean afterwards.
#[test]
fn concurrent_writers_each_get_their_own_generation() {
    require_privileges!();
    let (mut lab, _pid) = started("ownwriters");
    for (who, writers) in [("the daemon", 8), ("the lock", 8)] {
        let generations = concurrent_writers(&lab, writers);
        let distinct: BTreeSet<u64> = generations.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            writers,
            "writers through {who} interleaved: generations {generations:?}"
        );
        let (code, findings) = audit(&lab);
        assert_eq!(
            code,
            Some(0),
            "drift after writers through {who}: {findings:?}"
        );
        if who == "the daemon" {
            // From here on no daemon: the verbs write directly under the pin directory's lock.
            lab.signal_daemon(libc::SIGTERM).expect("SIGTERM");
            let status = lab.wait_daemon_exit(EXIT_WAIT).expect("daemon exit");
            assert!(status.success(), "xlb run exited with {status}");
            assert!(lab.pin_path.join("link").exists(), "pins removed by a stop");
        }
    }
}
