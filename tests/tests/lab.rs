//! Namespace-backed tests: the lab behind `cargo xtask lab` (the `xlb-lab` binary: nginx
//! backends, the real `xlb run --config` daemon, HTTP through four VIPs), the minimal demo
//! lab with `xlb run --interface` in native XDP mode, and the lab harness's cleanup on drop,
//! on panic and on Ctrl-C.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use xlb_tests::{
    demo,
    netns::{Ipv6, Lab, Switch},
    require_privileges,
};

/// Requests per VIP in the end-to-end run: enough that a share within ±10 points of the
/// expected one is a test of xlb, not of luck (one standard deviation is 2.5 points for the
/// backend expected to take half; ±10 points is 4 of them).
const LAB_REQUESTS: u32 = 400;
/// How long the lab's processes get to vanish after it exits (a zombie waits for init).
const GONE_WITHIN: Duration = Duration::from_secs(5);

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Test that `xlb run` attached natively to a veth counts every datagram of real traffic as
/// not-a-VIP and passes all of them to the stack.
#[test]
fn xlb_run_counts_and_passes_real_traffic() {
    require_privileges!();
    let xlb = demo::xlb_binary().expect("xlb binary");
    let report = demo::run(&xlb, 200).expect("demo lab");
    assert_eq!(
        report.received, report.sent,
        "datagrams lost:\n{}",
        report.xlb_output
    );
    assert!(
        report.xlb_output.contains("Native XDP"),
        "{}",
        report.xlb_output
    );
    // Only the UDP datagrams are TCP/UDP traffic in these fresh namespaces.
    assert_eq!(
        report.counter("reason.not_vip"),
        u64::from(report.sent),
        "{}",
        report.xlb_output
    );
    assert!(
        report.counter("verdict.pass") >= u64::from(report.sent),
        "{}",
        report.xlb_output
    );
    assert_eq!(report.counter("verdict.drop"), 0, "{}", report.xlb_output);
}

/// Test that dropping a lab removes its namespaces, pin directories and /tmp files, and kills
/// its processes.
#[test]
fn lab_removes_everything_on_drop() {
    require_privileges!();
    let mut lab = Lab::new("drop").expect("lab");
    let ns = lab.netns("a").expect("netns");
    let pins = lab.pin_dir("pins").expect("pin dir");
    let file = lab.temp_path("file").expect("temp path");
    std::fs::write(&file, "x").expect("temp file");
    let mut sleeper = ns.command("sleep");
    sleeper.arg("60");
    let pid = lab.spawn(sleeper).expect("spawn");
    assert!(namespaces().contains(&ns.name));
    drop(lab);
    assert!(
        !namespaces().contains(&ns.name),
        "namespace {} left behind",
        ns.name
    );
    assert!(!pins.exists(), "pin dir {} left behind", pins.display());
    assert!(!file.exists(), "temp file {} left behind", file.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} left behind"
    );
}

/// Test that a test panicking while holding a lab still removes the lab's namespaces and the
/// files and directories it wrote under /tmp.
#[test]
fn lab_is_removed_when_a_test_panics() {
    require_privileges!();
    let made = std::sync::Mutex::new((String::new(), Vec::new()));
    let result = std::panic::catch_unwind(|| {
        let mut lab = Lab::new("panic").expect("lab");
        let ns = lab.netns("a").expect("netns");
        let file = lab.temp_path("file").expect("temp path");
        std::fs::write(&file, "x").expect("temp file");
        let dir = lab.temp_path("dir").expect("temp path");
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        *made.lock().unwrap() = (ns.name.clone(), vec![file, dir]);
        panic!("deliberate panic with a lab alive");
    });
    assert!(result.is_err());
    let (name, paths) = made.into_inner().unwrap();
    assert!(!name.is_empty() && paths.len() == 2);
    assert!(
        !namespaces().contains(&name),
        "namespace {name} left behind"
    );
    for path in paths {
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

/// Test that the sweep run by the first lab of a process removes what a lab process that died
/// without cleaning up left under /tmp and its daemons' BGP records under /run/xlb, and keeps
/// those of a live lab.
#[test]
fn sweep_removes_a_dead_labs_files_and_records() {
    require_privileges!();
    // A pid that was just used and is gone.
    let mut child = Command::new("true").spawn().expect("spawn true");
    child.wait().expect("wait");
    let dead = child.id();
    assert!(!std::path::Path::new(&format!("/proc/{dead}")).exists());
    let stale_dir = std::env::temp_dir().join(format!("xlbt-{dead}-0-gone-files"));
    std::fs::create_dir_all(stale_dir.join("sub")).expect("stale dir");
    let records = std::path::Path::new(lb_userspace::bgp::STATE_DIR);
    std::fs::create_dir_all(records).expect("record dir");
    let stale_record = records.join(format!("_sys_fs_bpf_xlbt_{dead}_0_gone_xlb"));
    std::fs::write(&stale_record, "/x/vips.conf\ntrue\n").expect("stale record");
    let mut lab = Lab::new("sweep").expect("lab");
    let live = lab.temp_path("file").expect("temp path");
    std::fs::write(&live, "x").expect("live file");

    xlb_tests::netns::sweep_stale();
    let left: Vec<_> = [&stale_dir, &stale_record]
        .into_iter()
        .filter(|path| path.exists())
        .collect();
    assert!(left.is_empty(), "the sweep left {left:?}");
    assert!(
        live.exists(),
        "the sweep removed a live lab's {}",
        live.display()
    );
}

/// Everything of the lab binary with pid `pid` still there: every name it gives (namespaces,
/// pin directories, its directory under /tmp) starts `xlbt-PID-`, and so does a path on the
/// command line or among the open files of each process it starts (nginx, the daemon).
fn lab_leftovers(pid: u32) -> Vec<String> {
    xlb_tests::netns::leftovers(&format!("xlbt-{pid}-"))
}

/// Waits up to [`GONE_WITHIN`] for [`lab_leftovers`] to be empty; what is left then.
fn wait_for_no_leftovers(pid: u32) -> Vec<String> {
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let left = lab_leftovers(pid);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Test that the lab of `cargo xtask lab` works end to end: every HTTP request to each of its
/// four VIPs (IPv4 and IPv6, dsr and ipip) is answered by a backend's nginx, each backend's
/// share is within 10 points of what its weight gives it, the binary exits 0, and no
/// namespace, pin, file or process of the lab is left.
#[test]
fn lab_balances_http_by_weight_and_leaves_nothing() {
    require_privileges!();
    let xlb = demo::xlb_binary().expect("xlb binary");
    // Only for the report's path: removed with it, even if the test panics.
    let mut files = Lab::new("labreport").expect("lab");
    let report_path = files.temp_path("report.json").expect("temp path");
    let out = Command::new(env!("CARGO_BIN_EXE_xlb-lab"))
        .args(["--requests", &LAB_REQUESTS.to_string(), "--report"])
        .arg(&report_path)
        .env("XLB_BIN", &xlb)
        .output()
        .expect("run xlb-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "xlb-lab failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&report_path).expect("the lab's report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON report");

    let vips = report["vips"].as_array().expect("vips");
    let mut seen: Vec<(String, String)> = Vec::new();
    for vip in vips {
        let name = vip["vip"].as_str().unwrap_or_default();
        seen.push((
            vip["address"].as_str().unwrap_or_default().to_owned(),
            vip["forwarding"].as_str().unwrap_or_default().to_owned(),
        ));
        assert_eq!(
            vip["answered"].as_u64(),
            Some(u64::from(LAB_REQUESTS)),
            "{name}: not every request was answered: {vip}\n{stdout}"
        );
        let backends = vip["backends"].as_array().expect("backends");
        assert_eq!(backends.len(), 3, "{vip}");
        for backend in backends {
            let share = backend["answered"].as_f64().unwrap_or(0.0) / f64::from(LAB_REQUESTS);
            let expected = backend["expected_share"].as_f64().unwrap_or(-1.0);
            assert!(
                (share - expected).abs() <= 0.10,
                "{name}: backend {} took {:.1}% of the requests, {:.1}% expected:\n{stdout}",
                backend["name"],
                share * 100.0,
                expected * 100.0
            );
        }
    }
    for (address, forwarding) in [
        ("198.18.1.10", "dsr"),
        ("2001:db8:1::10", "dsr"),
        ("198.18.1.20", "ipip"),
        ("2001:db8:1::20", "ipip"),
    ] {
        assert!(
            seen.contains(&(address.to_owned(), forwarding.to_owned())),
            "no {forwarding} VIP {address} in {seen:?}"
        );
    }
    let stats = report["stats"].as_str().unwrap_or_default();
    assert!(
        stats.contains("forwarded_dsr") && stats.contains("forwarded_ipip"),
        "{stats}"
    );
    assert!(stdout.contains("xlb down"), "{stdout}");

    // The binary's pid is gone with it; its names carry it.
    let pid = Path::new(report["dir"].as_str().unwrap_or_default())
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("xlbt-"))
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .expect("the lab's directory names its pid");
    let left = wait_for_no_leftovers(pid);
    assert!(left.is_empty(), "left behind by the lab: {left:#?}");
    assert!(!Path::new(report["pin_path"].as_str().unwrap_or("/")).exists());
}

/// Test that Ctrl-C (SIGINT) on the lab, once its nginx servers and the xlb daemon run,
/// makes it exit with 130 leaving no namespace, pin, file or process (nginx workers included)
/// behind.
#[test]
fn lab_is_removed_on_ctrl_c() {
    require_privileges!();
    let xlb = demo::xlb_binary().expect("xlb binary");
    let mut lab = Command::new(env!("CARGO_BIN_EXE_xlb-lab"))
        .env("XLB_BIN", &xlb)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start xlb-lab");
    let pid = lab.id();
    let daemon = format!(
        "xlb run --config {}/",
        std::env::temp_dir()
            .join(format!("xlbt-{pid}-lab"))
            .display()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab_leftovers(pid).iter().any(|line| line.contains(&daemon)) {
        assert!(
            Instant::now() < deadline,
            "the lab never started its daemon: {:#?}",
            lab_leftovers(pid)
        );
        assert!(
            lab.try_wait().expect("poll").is_none(),
            "xlb-lab exited before Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        lab_leftovers(pid)
            .iter()
            .any(|line| line.contains("nginx: worker")),
        "no nginx worker before Ctrl-C: {:#?}",
        lab_leftovers(pid)
    );
    // SAFETY: signalling the child we just spawned.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = lab.wait().expect("wait for xlb-lab");
    assert_eq!(
        status.code(),
        Some(130),
        "xlb-lab should exit with 130 after Ctrl-C"
    );
    let left = wait_for_no_leftovers(pid);
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:#?}");
}

/// Test that two hosts joined through the labs' switch (veths to a bridge in a third
/// namespace) exchange real traffic.
#[test]
fn lab_bridge_joins_hosts() {
    require_privileges!();
    let mut lab = Lab::new("bridge").expect("lab");
    let names = ["a", "b"].map(String::from);
    let switch = Switch::build(|name| lab.netns(name), &names, Ipv6::Off).expect("switch");
    let [a, b] = &switch.members[..] else {
        panic!("two members: {:?}", switch.members)
    };
    a.addr("eth0", "198.18.5.1/24").expect("addr a");
    b.addr("eth0", "198.18.5.2/24").expect("addr b");
    let receiver = b
        .run(|| std::net::UdpSocket::bind("198.18.5.2:7000"))
        .expect("enter b")
        .expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let sender = a
        .run(|| std::net::UdpSocket::bind("198.18.5.1:0"))
        .expect("enter a")
        .expect("bind");
    sender
        .send_to(b"across the bridge", "198.18.5.2:7000")
        .expect("send");
    let mut buf = [0u8; 64];
    let (len, from) = receiver
        .recv_from(&mut buf)
        .expect("datagram through the bridge");
    assert_eq!(&buf[..len], b"across the bridge");
    assert_eq!(from.ip().to_string(), "198.18.5.1");
}
