//! `xlb top` against a loaded xlb with real counters: in a terminal (a tmux pane, which shows
//! the screen as a terminal draws it), as an operator over ssh would see it, and without one.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::{
    live::{EQUAL, LiveXlb, assert_says, predicted},
    netns::run_checked,
    require_privileges,
};

const VIP_LABEL: &str = "198.18.1.10:80/tcp";
/// How long `xlb top` may take to show what the test waits for (it redraws every 0.5 s).
const PATIENCE: Duration = Duration::from_secs(20);

/// Source ports whose new flows the live table sends to backend id `id` (out of the first
/// `limit` ports from 20,000).
fn ports_to(vip: &lb_userspace::rollout::AppliedVip, id: u32, limit: u16) -> Vec<u16> {
    (20_000..20_000 + limit)
        .filter(|sport| predicted(vip, *sport) == id)
        .collect()
}

/// A tmux server of the test's own (its own socket), removed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("xlbt-top-{}", std::process::id()),
        }
    }

    /// Runs `tmux ARGS` on this server and returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        run_checked(Command::new("tmux").args(["-L", &self.socket]).args(args))
            .unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// The screen as the terminal shows it; with `styles`, with its colour escapes.
    fn screen(&self, styles: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "top"];
        if styles {
            args.push("-e");
        }
        self.run(&args)
    }

    /// Waits until the screen satisfies `done`, panicking with the screen after [`PATIENCE`].
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen(false);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what} within {PATIENCE:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Test that `xlb top` in a terminal (a 120 x 40 tmux pane, as over ssh) shows the VIP with
/// its backends, and, once every new flow of an interval goes to one of three equal backends,
/// flags that backend (SKEW over, DOMINANT) on a red row and lists the alerts; that q, and
/// Ctrl-C in a second run, quit it with exit 0 and leave the terminal as it was: the main
/// screen back with what was on it, the cursor shown, and raw mode off (`stty -a` after it
/// sees `icanon` and `echo`).
#[test]
fn top_shows_the_vip_highlights_skew_and_quits_on_q() {
    require_privileges!();
    let (mut live, vip) = LiveXlb::equal("top");
    let xlb = xlb_tests::demo::xlb_binary().expect("xlb");
    let top = format!(
        "{} top --interval 0.5 --pin-path {}",
        xlb.display(),
        live.pin_path.display()
    );
    // Quit with q; after Enter run it again and quit with Ctrl-C; then the terminal's modes.
    let shell = format!(
        "echo before top; {top}; echo top exited $?; read go; {top}; \
         echo top exited again $?; stty -a; sleep 600"
    );
    let tmux = Tmux::new();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        "sh",
        "-c",
        &shell,
    ]);
    tmux.wait_for("the VIP and its backends", |screen| {
        screen.starts_with("xlb top ")
            && screen.contains(VIP_LABEL)
            && EQUAL.iter().all(|(backend, _)| screen.contains(backend))
    });
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "top", "#{alternate_on}"])
            .trim(),
        "1"
    );
    // New flows, all to the first backend: fresh source ports each round (a port sent
    // before is a known flow, not a new one) until top flags it.
    let skewed = ports_to(&vip, vip.backend_ids[0], 6000);
    let mut rounds = skewed.chunks(100);
    let deadline = Instant::now() + PATIENCE;
    while !tmux.screen(false).contains("SKEW over") {
        let round = rounds
            .next()
            .expect("ran out of fresh ports before top flagged the skew");
        assert!(Instant::now() < deadline, "{}", tmux.screen(false));
        live.send_syns(round.iter().copied());
        std::thread::sleep(Duration::from_millis(200));
    }
    let screen = tmux.screen(false);
    let row = screen
        .lines()
        .find(|line| line.trim_start().starts_with("198.18.0.10 "))
        .unwrap_or_else(|| panic!("no row of 198.18.0.10:\n{screen}"));
    assert!(
        row.contains("100.0%") && row.contains("33.3%") && row.ends_with("SKEW over"),
        "{row}"
    );
    assert!(screen.contains("DOMINANT"), "{screen}");
    for alert in [
        "dominant: 198.18.1.10:80/tcp: 198.18.0.10 takes 100.0% of new flows",
        "skew: 198.18.1.10:80/tcp: 198.18.0.10 gets 100.0% of new flows, expected 33.3% (over)",
    ] {
        assert!(screen.contains(alert), "no alert {alert:?}:\n{screen}");
    }
    // The skewed row on red (crossterm's 256-colour red background), the others not.
    let styled = tmux.screen(true);
    let styled_row = |address: &str| {
        styled
            .lines()
            .find(|line| line.contains(&format!("{address} ")) && !line.contains(':'))
            .unwrap_or_else(|| panic!("no row of {address}:\n{styled}"))
            .to_owned()
    };
    assert!(styled_row("198.18.0.10").contains("48;5;1m"), "{styled:?}");
    assert!(!styled_row("198.18.0.11").contains("48;5;1m"), "{styled:?}");

    let quit = Instant::now();
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let after = tmux.wait_for("top exit", |screen| screen.contains("top exited"));
    eprintln!("q quit xlb top in {:?}", quit.elapsed());
    assert!(after.contains("top exited 0"), "{after}");
    assert!(
        after.starts_with("before top"),
        "the main screen came back:\n{after}"
    );
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "top", "#{alternate_on}"])
            .trim(),
        "0"
    );
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "top", "#{cursor_flag}"])
            .trim(),
        "1"
    );
    tmux.run(&["send-keys", "-t", "top", "Enter"]);
    tmux.wait_for("top again", |screen| screen.starts_with("xlb top "));
    tmux.run(&["send-keys", "-t", "top", "C-c"]);
    let after = tmux.wait_for("top exit after Ctrl-C", |screen| {
        screen.contains("top exited again")
    });
    assert!(after.contains("top exited again 0"), "{after}");
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "top", "#{alternate_on}"])
            .trim(),
        "0"
    );
    let modes = tmux.wait_for("stty -a", |screen| screen.contains("icanon"));
    assert!(
        modes.contains(" icanon ") && modes.contains(" echo "),
        "the terminal was left in raw mode:\n{modes}"
    );
}

/// Test that `xlb top` with stdout not a terminal refuses with exit 4 and says what to use
/// instead; that `--once` prints one plain frame with the VIP and its backends, and with
/// `--output json` the interval's stats report; and that `--output json` without `--once`
/// is refused with exit 4 as a JSON error.
#[test]
fn top_without_a_terminal_refuses_or_prints_once() {
    require_privileges!();
    let mut live = LiveXlb::new("top-once");
    live.apply(&EQUAL);
    let xlb = xlb_tests::demo::xlb_binary().expect("xlb");
    let pin = live.pin_path.display().to_string();
    let refused = Command::new(&xlb)
        .args(["top", "--pin-path", &pin])
        .stdin(Stdio::null())
        .output()
        .expect("xlb top");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("stdout is not one") && stderr.contains("xlb top --once"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());

    let once = Command::new(&xlb)
        .args(["top", "--once", "--interval", "0.2", "--pin-path", &pin])
        .stdin(Stdio::null())
        .output()
        .expect("xlb top --once");
    let text = String::from_utf8_lossy(&once.stdout);
    assert!(
        once.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(text.starts_with("xlb top "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in plain output: {text:?}"
    );
    for backend in EQUAL.map(|(address, _)| address) {
        assert!(text.contains(&format!("  {backend} ")), "{backend}: {text}");
    }
    assert!(text.contains(VIP_LABEL), "{text}");

    let (code, json) = live.xlb_json(&["top", "--once", "--interval", "0.2"]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["vips"][0]["vip"], VIP_LABEL, "{json}");
    assert!(json["interval_seconds"].as_f64() >= Some(0.2), "{json}");
    assert_says(&live.xlb_json(&["top"]), 4, "error", "needs --once");
}
