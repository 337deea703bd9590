//! Kernel-backed tests of the lab's training drills (`cargo xtask lab --drill NAME`, the
//! `xlb-lab` binary with `--drill NAME`; see `xlb_tests::drills`): each drill passes on its own
//! lab and leaves nothing behind. The drills run one at a time (each builds a lab of its own,
//! with health-check and alert deadlines a parallel neighbour would only squeeze).

use std::{
    io::Read as _,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use xlb_tests::{demo, netns, require_privileges};

/// What one drill may take, lab included: about 5 to 10 s alone, far more on a loaded host.
const DRILL_DEADLINE: Duration = Duration::from_secs(120);
/// How long the lab's processes get to vanish after the binary exits (a zombie waits for
/// init).
const GONE_WITHIN: Duration = Duration::from_secs(5);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Everything of the lab binary with pid `pid` still there (see [`netns::leftovers`]).
fn leftovers(pid: u32) -> Vec<String> {
    netns::leftovers(&format!("xlbt-{pid}-"))
}

/// Runs `xlb-lab --drill NAME` within [`DRILL_DEADLINE`] and checks that it passed and left
/// nothing behind; returns its output.
fn drill(name: &str) -> String {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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
    assert!(
        stdout
            .lines()
            .any(|line| line == format!("drill {name}: PASS")),
        "no `drill {name}: PASS` line:\n{stdout}\n{stderr}"
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

/// Test that the `one-backend` drill passes: `xlb validate` and `xlb plan` flag a config with
/// all weight on one backend (XLB003, exit 1, the outage banner), `xlb apply --override XLB003
/// --allow-warnings` forces it, the dominant/skew alert fires with ~100% of new flows on that
/// backend, and the good config clears it; and that the drill's lab is gone afterwards.
#[test]
fn one_backend_drill_passes() {
    require_privileges!();
    let out = drill("one-backend");
    assert!(out.contains("OUTAGE"), "{out}");
    assert!(out.contains("ALERT"), "{out}");
}

/// Test that the `one-server` drill passes: `xlb validate` and `xlb plan` refuse a config whose
/// second entry carries the first one's MAC (XLB005), and disabling backends down to one server
/// is refused (exit 1, the server named) until another is back; and that nothing is left.
#[test]
fn one_server_drill_passes() {
    require_privileges!();
    let out = drill("one-server");
    assert!(out.contains("XLB005"), "{out}");
    assert!(out.contains("refused"), "{out}");
}

/// Test that the `backend-dies` drill passes: with one backend's nginx stopped, the daemon
/// takes it out within interval×fall plus slack, every request succeeds and none reaches it,
/// only its flows move, and it comes back after nginx restarts; and that nothing is left.
#[test]
fn backend_dies_drill_passes() {
    require_privileges!();
    let out = drill("backend-dies");
    assert!(out.contains("backend down"), "{out}");
}

/// Test that the `drain` drill passes: long downloads from a backend drained mid-transfer all
/// complete while new requests avoid it; and that nothing is left.
#[test]
fn drain_drill_passes() {
    require_privileges!();
    drill("drain");
}

/// Test that the `bad-config` drill passes: an invalid config file is refused on SIGHUP, the
/// generation stays and traffic is unaffected; and that nothing is left.
#[test]
fn bad_config_drill_passes() {
    require_privileges!();
    let out = drill("bad-config");
    assert!(out.contains("keeping the running one"), "{out}");
}
