//! The daemon's doors, attacked as an unprivileged local user would (every hostile step runs
//! as `nobody` through setpriv): the pin directory, the pins of a running daemon, the metrics
//! endpoint, the BGP routes file's directory, a config rewritten in place, and the daemon
//! confined to the capabilities its systemd unit grants.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lb_userspace::{bgp, trusted_dir};
use xlb_tests::{daemon_lab::DaemonLab, require_privileges, run_lab::RunLab, systemd};

/// How long the daemon may take to notice a removed pin: its 1 s tick plus slack.
const REPIN_WITHIN: Duration = Duration::from_secs(5);
/// Connections per check of forwarding, and their time budget.
const CONNECTIONS: usize = 30;
const BUDGET: Duration = Duration::from_secs(15);

/// `program args` run as nobody:nogroup without supplementary groups.
fn as_nobody(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        program,
    ]);
    command
}

/// Runs `command` and returns whether it exited 0, with its stderr.
fn run(mut command: Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A process killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory under /tmp removed when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `interface` in `namespace` has an XDP program attached.
fn xdp_attached(namespace: &str, interface: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", namespace, "link", "show", interface])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Test that `xlb run` refuses a pin directory another user made first (the bpffs root lets
/// anyone create one), a symlink in its place, and a world-writable one: it exits non-zero
/// naming the directory and the problem, attaches nothing and pins nothing there.
#[test]
fn pin_directory_another_user_controls_is_refused() {
    require_privileges!();
    let mut setup = RunLab::new("doorpin");
    let decoy = setup.lab.pin_dir("decoy").expect("decoy dir");
    std::fs::write(
        &setup.config,
        format!(
            "[global]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\
             metrics_address = \"127.0.0.1:9100\"\n\n[[vip]]\nname = \"web\"\n\
             address = \"198.18.1.10\"\nport = 80\nprotocol = \"tcp\"\n\n[[vip.backend]]\n\
             address = \"198.18.0.10\"\nmac = \"02:00:00:00:03:00\"\n\n[[vip.backend]]\n\
             address = \"198.18.0.11\"\nmac = \"02:00:00:00:03:01\"\n",
            setup.pin_path.display()
        ),
    )
    .expect("config");
    let try_run = |why: &str, expected: &str| {
        let mut run = setup.lb.command(&setup.xlb);
        // Were it accepted, it would stop by itself.
        run.args(["run", "--duration", "3", "--config"])
            .arg(&setup.config);
        let (ok, stderr) = self::run(run);
        assert!(!ok, "{why}: xlb run accepted the pin directory:\n{stderr}");
        assert!(
            stderr.contains("not safe to pin into") && stderr.contains(expected),
            "{why}: {stderr}"
        );
        assert!(
            !xdp_attached(&setup.lb.name, "eth0"),
            "{why}: attached anyway"
        );
    };

    let mut mkdir = as_nobody("mkdir");
    mkdir.arg(&setup.pin_path);
    let (ok, stderr) = run(mkdir);
    assert!(
        ok,
        "nobody could not create {}: {stderr}",
        setup.pin_path.display()
    );
    try_run("made by nobody", "owned by uid 65534");
    assert_eq!(
        std::fs::read_dir(&setup.pin_path)
            .expect("nobody's dir")
            .count(),
        0,
        "xlb pinned into nobody's directory"
    );

    std::fs::remove_dir(&setup.pin_path).expect("remove nobody's dir");
    let mut link = as_nobody("ln");
    link.arg("-s").arg(&decoy).arg(&setup.pin_path);
    let (ok, stderr) = run(link);
    assert!(ok, "nobody could not plant a symlink: {stderr}");
    try_run("a symlink", "not a directory but a symlink");
    assert_eq!(std::fs::read_dir(&decoy).expect("decoy").count(), 0);

    std::fs::remove_file(&setup.pin_path).expect("remove the symlink");
    std::fs::create_dir(&setup.pin_path).expect("mkdir");
    std::fs::set_permissions(&setup.pin_path, std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    try_run("world-writable", "writable by other users (mode 777)");
}

/// Test that the daemon makes its pin directory 0700 so nobody can neither list nor remove
/// the link pin; that when the link pin and a map pin are removed anyway (by root) while it
/// runs, the program stays attached and forwards every connection, and the daemon pins both
/// again within its tick and says so.
#[test]
fn removed_pins_neither_detach_nor_stay_removed() {
    require_privileges!();
    let lab = DaemonLab::started("doorlink", 2).expect("lab with xlb run");
    let mode = std::fs::metadata(&lab.pin_path)
        .expect("pin dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o700, "pin directory mode {mode:o}");
    let link = lab.pin_path.join("link");
    let mut rm = as_nobody("rm");
    rm.arg("-f").arg(&link);
    let (ok, stderr) = run(rm);
    assert!(
        !ok && link.exists(),
        "nobody removed the link pin: {stderr}"
    );

    let map = lab.pin_path.join(lb_common::map_names::META);
    std::fs::remove_file(&link).expect("remove the link pin");
    std::fs::remove_file(&map).expect("remove a map pin");
    assert!(
        xdp_attached(&lab.lb.name, "eth0"),
        "removing the link pin detached the program"
    );
    let answered = lab
        .ask_many(CONNECTIONS, BUDGET)
        .unwrap_or_else(|err| panic!("forwarding broke without the pins: {err:#}"));
    assert_eq!(answered.iter().sum::<u64>(), CONNECTIONS as u64);
    let deadline = Instant::now() + REPIN_WITHIN;
    while !(link.exists() && map.exists()) {
        assert!(
            Instant::now() < deadline,
            "the pins were not restored within {REPIN_WITHIN:?}; log:\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.daemon_log();
    assert!(log.contains("pinned again"), "{log}");
    lab.generation()
        .unwrap_or_else(|err| panic!("xlb status through the restored pins: {err:#}"));
}

/// Opens `count` connections to `port` on loopback and keeps that many open, one in seven a
/// slowloris that sent half a request head, reopening each the server closes; prints `ready`
/// once all are open.
const IDLE_CLIENT: &str = r#"
import selectors, socket, sys, time
count, port, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
def connect(i):
    s = socket.create_connection(("127.0.0.1", port))
    if i % 7 == 0:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    sel.register(s, selectors.EVENT_READ, i)
for i in range(count):
    connect(i)
print("ready", flush=True)
end = time.time() + seconds
while time.time() < end:
    for key, _ in sel.select(0.2):
        sel.unregister(key.fileobj)
        key.fileobj.close()
        connect(key.data)
"#;

/// Test that the metrics endpoint answers every scrape while nobody holds `XLB_DOORS_IDLE`
/// (default 2,000) idle and slowloris connections open to it, reopening each one the server
/// cuts off. Prints each scrape's latency.
#[test]
fn metrics_answer_while_nobody_holds_thousands_of_idle_connections() {
    require_privileges!();
    let idle: usize = std::env::var("XLB_DOORS_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let lab = DaemonLab::started("doormetrics", 2).expect("lab with xlb run");
    let mut command = lab.lb.command("setpriv");
    command
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            // The system's own: a per-user install (pyenv) is not nobody's to run.
            "/usr/bin/python3",
            "-c",
            IDLE_CLIENT,
        ])
        .args([
            idle.to_string(),
            xlb_tests::daemon_lab::METRICS_PORT.to_string(),
            "60".to_owned(),
        ])
        .stdout(Stdio::piped());
    let mut client = Reaped(command.spawn().expect("idle client"));
    let mut ready = String::new();
    BufReader::new(client.0.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("read the idle client");
    assert_eq!(
        ready.trim(),
        "ready",
        "the idle client never got its connections"
    );
    let mut latencies = Vec::new();
    for n in 0..6 {
        let started = Instant::now();
        let page = lab.scrape().unwrap_or_else(|err| {
            panic!("scrape {n} beside {idle} idle connections failed: {err:#}")
        });
        latencies.push(started.elapsed());
        assert!(page.contains("xlb_config_generation"), "{page}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        client.0.try_wait().expect("idle client").is_none(),
        "the idle client died: its connections were not held"
    );
    println!("scrape latencies beside {idle} idle connections held by nobody: {latencies:?}");
}

/// Test that the BGP routes file is never written into a directory others can write or own:
/// a world-writable one where nobody planted symlinks to a root file at the target and the
/// old staging name, and one nobody made inside a sticky directory, are refused, and the root
/// file is untouched.
#[test]
fn routes_file_refuses_directories_other_users_control() {
    require_privileges!();
    let root = std::env::temp_dir().join(format!("xlb-doors-bgp-{}", std::process::id()));
    let _scratch = Scratch(root.clone());
    trusted_dir::create(&root, 0o755).expect("scratch dir");
    let victim = root.join("victim");
    std::fs::write(&victim, "root's file\n").expect("victim");
    let open = root.join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    for name in ["vips.conf", ".vips.conf.xlb-tmp"] {
        let mut ln = as_nobody("ln");
        ln.arg("-s").arg(&victim).arg(open.join(name));
        let (ok, stderr) = run(ln);
        assert!(ok, "nobody could not plant {name}: {stderr}");
    }
    let mut mkdir = as_nobody("mkdir");
    mkdir.arg(open.join("mine"));
    let (ok, stderr) = run(mkdir);
    assert!(ok, "nobody could not mkdir: {stderr}");

    for (routes, expected) in [
        (open.join("vips.conf"), "writable by other users"),
        (open.join("mine/vips.conf"), "owned by uid 65534"),
    ] {
        let err = bgp::write_atomically(&routes, "route\n", 0o644)
            .expect_err("an unsafe directory was written into");
        let err = format!("{err:#}");
        assert!(err.contains(expected), "{}: {err}", routes.display());
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
}

/// `web` over the lab's backends plus a second VIP `api`, and the offset where `api` begins:
/// the text before it is a valid config without `api`.
fn two_vips(lab: &DaemonLab, weights: &[u32]) -> (String, usize) {
    let mut text = lab.config_text(weights, None);
    let split = text.len();
    text += "\n[[vip]]\nname = \"api\"\naddress = \"198.18.1.11\"\nport = 80\nprotocol = \"tcp\"\n\
             forwarding = \"dsr\"\n";
    for host in &lab.backends {
        text += &format!(
            "\n  [[vip.backend]]\n  address = \"{}\"\n  mac = \"{}\"\n",
            host.address, host.mac
        );
    }
    (text, split)
}

/// The VIPs and the generation `xlb status` shows.
fn live(lab: &DaemonLab) -> (BTreeSet<String>, u64) {
    let status = lab.status().expect("xlb status");
    let vips = status["vips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|vip| vip["vip"].to_string())
        .collect();
    (vips, status["generation"].as_u64().expect("generation"))
}

/// Test that a config rewritten in place (truncated, half written, a 100 ms pause, the rest)
/// over and over for 6 s, with SIGHUPs sent meanwhile, is never applied half-written: both
/// VIPs stay live in every sample and the generation does not move (the content never
/// changed); that 50 SIGHUPs of an unchanged file apply nothing; and that a real change is
/// applied exactly once.
#[test]
fn config_rewritten_in_place_is_never_half_applied() {
    require_privileges!();
    let mut lab = DaemonLab::new("doorreload", 2).expect("lab");
    let (text, split) = two_vips(&lab, &[1, 1]);
    lab.write_config(&text).expect("config");
    lab.start_daemon().expect("daemon");
    let (vips, generation) = live(&lab);
    assert_eq!(vips.len(), 2, "{vips:?}");

    let path = lab.config_path.clone();
    let writer = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(6);
        while Instant::now() < end {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .expect("open the config in place");
            file.write_all(&text.as_bytes()[..split])
                .expect("first half");
            std::thread::sleep(Duration::from_millis(100));
            file.write_all(&text.as_bytes()[split..]).expect("the rest");
            drop(file);
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let mut samples = 0;
    while !writer.is_finished() {
        lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
        assert_eq!(
            live(&lab),
            (vips.clone(), generation),
            "a half-written config went live"
        );
        samples += 1;
    }
    writer.join().expect("writer");
    assert!(samples >= 3, "only {samples} samples");
    // Any apply of a half-written file (and of the whole one after it) moved the generation.
    assert_eq!(
        live(&lab),
        (vips.clone(), generation),
        "log:\n{}",
        lab.daemon_log()
    );

    for _ in 0..50 {
        lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.generation().expect("generation"),
        generation,
        "SIGHUPs of an unchanged file applied it again; log:\n{}",
        lab.daemon_log()
    );

    let (changed, _) = two_vips(&lab, &[1, 2]);
    lab.write_config(&changed).expect("changed config");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.generation().expect("generation") == generation {
        assert!(Instant::now() < deadline, "the change was never applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.signal_daemon(libc::SIGHUP).expect("SIGHUP");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.generation().expect("generation"), generation + 1);
}

/// Test that the daemon does its job with only the capabilities the systemd unit grants and
/// no_new_privs: its effective set is exactly the unit's CapabilityBoundingSet (so the
/// restriction really applied), it attaches, forwards every connection, serves metrics and
/// applies a changed config.
#[test]
fn daemon_works_with_only_the_units_capabilities() {
    require_privileges!();
    let caps = systemd::bounding_set();
    assert!(!caps.is_empty(), "the unit has no CapabilityBoundingSet");
    let bounding = format!(
        "--bounding-set=-all,{}",
        caps.iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut lab = DaemonLab::new("doorcaps", 2).expect("lab");
    let pid = lab
        .start_daemon_under(&["setpriv", "--no-new-privs", &bounding])
        .expect("the daemon with the unit's capabilities");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("hex"))
        .expect("CapEff");
    let wanted = caps
        .iter()
        .map(|c| match *c {
            "CAP_NET_ADMIN" => 1u64 << 12,
            "CAP_PERFMON" => 1 << 38,
            "CAP_BPF" => 1 << 39,
            other => panic!("no bit known for {other}"),
        })
        .fold(0, |all, bit| all | bit);
    assert_eq!(effective, wanted, "the daemon's CapEff {effective:x}");
    let answered = lab.ask_many(CONNECTIONS, BUDGET).expect("forwarding");
    assert_eq!(answered.iter().sum::<u64>(), CONNECTIONS as u64);
    lab.scrape().expect("metrics");
    let generation = lab.generation().expect("generation");
    lab.write_config(&lab.config_text(&[1, 2], None))
        .expect("changed config");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.generation().expect("generation") == generation {
        assert!(
            Instant::now() < deadline,
            "the change was never applied; log:\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
