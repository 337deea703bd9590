//! Kernel-backed tests of the lab's training drills (`cargo xtask lab --drill NAME`, the
//! `xlb-lab` binary with `--drill NAME`; see `xlb_tests::drills`): `--drill all` runs every
//! drill, each passes on its own lab, and nothing is left behind. One run of `--drill all`
//! (each drill builds a lab of its own, one after the other) covers each drill once, as the
//! operator runs them.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::{demo, drills, netns, require_privileges};

/// What `--drill all` may take, labs included: about 25 s alone, far more on a loaded host.
const DRILL_DEADLINE: Duration = Duration::from_secs(400);
/// How long the lab's processes get to vanish after the binary exits (a zombie waits for
/// init).
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// Everything of the lab binary with pid `pid` still there (see [`netns::leftovers`]).
fn leftovers(pid: u32) -> Vec<String> {
    netns::leftovers(&format!("xlbt-{pid}-"))
}

/// Runs `xlb-lab --drill NAME` within [`DRILL_DEADLINE`] and checks that it passed and left
/// nothing behind; returns its output.
fn drill(name: &str) -> String {
    let xlb = demo::xlb_binary().expect("xlb binary");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xlb-lab"))
        .args(["--drill", name])
        .env("XLB_BIN", &xlb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xlb-lab");
    let pid = child.id();
    // Read both pipes on threads so a chatty drill never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xlb-lab") {
            break Some(status);
        }
        if start.elapsed() >= DRILL_DEADLINE {
            // SIGINT: the lab removes what it built, as on Ctrl-C.
            // SAFETY: signalling the child this test started and has not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("drill {name} ran over {DRILL_DEADLINE:?}:\n{stdout}"));
    eprintln!(
        "drill {name}: {status} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "drill {name} failed ({status}):\n{stdout}\n{stderr}"
    );
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let left = leftovers(pid);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drill {name} left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stdout
}

/// Test that `--drill all` runs every drill one after the other and each passes, and that
/// nothing of any drill's lab is left:
/// - `one-backend`: `xlb validate` and `xlb plan` flag a config with all weight on one backend
///   (XLB003, exit 1, the outage banner), `xlb apply --override XLB003 --allow-warnings` forces
///   it, the dominant/skew alert fires, and the good config clears it;
/// - `one-server`: `xlb validate` and `xlb plan` refuse a config whose second entry carries the
///   first one's MAC (XLB005), and disabling backends down to one server is refused (exit 1,
///   the server named) until another is back;
/// - `backend-dies`: with one backend's nginx stopped, the daemon takes it out, every request
///   succeeds and none reaches it, only its flows move, and it comes back;
/// - `drain`: long downloads from a backend drained mid-transfer all complete while new
///   requests avoid it;
/// - `bad-config`: an invalid config file is refused on SIGHUP, the generation stays and
///   traffic is unaffected.
/// - `canary`: a canary of an all-on-one config rolls itself back, a good one promotes itself,
///   and no request fails;
#[test]
fn drill_all_runs_every_drill_and_each_passes() {
    require_privileges!();
    let out = drill("all");
    let passed: Vec<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("drill ")?.strip_suffix(": PASS"))
        .collect();
    assert_eq!(
        passed,
        drills::NAMES,
        "drills that passed, in order:\n{out}"
    );
    assert!(
        out.lines()
            .any(|line| line == format!("drills: {n} of {n} passed", n = drills::NAMES.len())),
        "no summary line:\n{out}"
    );
    for (drill, said) in [
        ("one-backend", "OUTAGE"),
        ("one-backend", "ALERT"),
        ("one-server", "XLB005"),
        ("one-server", "refused"),
        ("backend-dies", "backend down"),
        ("bad-config", "keeping the running one"),
        ("canary", "canary rolled back"),
        ("canary", "canary promoted"),
    ] {
        assert!(
            out.contains(said),
            "{drill}: no {said:?} in the output:\n{out}"
        );
    }
}

/// Test that an unknown drill name is refused before any lab is built, naming the drills.
#[test]
fn unknown_drill_is_refused_with_the_names() {
    let out = Command::new(env!("CARGO_BIN_EXE_xlb-lab"))
        .args(["--drill", "no-such-drill"])
        .env("XLB_BIN", demo::xlb_binary().expect("xlb binary"))
        .stdin(Stdio::null())
        .output()
        .expect("run xlb-lab");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for name in drills::NAMES {
        assert!(stderr.contains(name), "{name} not named: {stderr}");
    }
    assert!(stderr.contains("no-such-drill"), "{stderr}");
}
