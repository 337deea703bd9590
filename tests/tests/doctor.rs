//! `xlb doctor` in namespaces: a healthy load balancer and a healthy backend pass every check,
//! and each check reports its problem, with a fix naming the real interface, when the setting
//! it guards is broken on purpose (the JIT and LRO cannot be broken in a namespace here: their
//! decisions are unit-tested in `lb_userspace::doctor::lb`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use lb_userspace::{
    attach::{self, AttachMode},
    object,
};
use serde_json::Value;
use xlb_tests::{
    daemon_lab::{DaemonLab, VerbOutput, xlb_verb},
    demo,
    netns::{Lab, Netns, veth},
    require_privileges,
};

/// `xlb doctor ARGS --output json` in `ns`, with the pins at `pin_path`.
fn doctor(ns: &Netns, pin_path: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let xlb = demo::xlb_binary().expect("xlb binary");
    let mut full = vec!["doctor", "--output", "json"];
    full.extend_from_slice(args);
    let out: VerbOutput = xlb_verb(ns, &xlb, pin_path, &full).expect("running xlb doctor");
    let report = out
        .json()
        .unwrap_or_else(|err| panic!("{err:#}: {}", out.stderr));
    (out.code, report)
}

/// The findings of `check`.
fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

/// Asserts the report has no problem (exit 0).
fn assert_healthy(code: Option<i32>, report: &Value) {
    assert_eq!(report["problems"], 0, "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");
}

/// Asserts `check` reports a problem (exit 1) whose fix contains `fix`.
fn assert_problem(code: Option<i32>, report: &Value, check: &str, fix: &str) {
    assert_eq!(code, Some(1), "{report:#}");
    let found = findings(report, check);
    assert!(
        found.iter().any(|f| f["status"] == "problem"
            && f["fix"].as_str().is_some_and(|text| text.contains(fix))),
        "no problem from {check} with a fix containing {fix:?}: {report:#}"
    );
}

/// Test that on a running load balancer every check passes, then that each of these breaks is
/// reported with its fix: tx checksum offload on the veth, a backend MAC that differs from the
/// one that answers ARP, a backend that does not answer, a missing interface, pins that are
/// not the attached program, strict rp_filter (a warning), global.mtu above the interface's
/// with ipip, and bpffs hidden by `ip netns exec`.
#[test]
fn doctor_on_the_load_balancer_reports_each_broken_setting() {
    require_privileges!();
    let lab = DaemonLab::started("doctor", 2).expect("lab with xlb run");
    let config = lab.config_path.display().to_string();
    let pins = lab.pin_path.clone();
    let run = |args: &[&str]| doctor(&lab.lb, &pins, args);
    let (code, report) = run(&["--config", &config, "--sample", "0.5"]);
    assert_healthy(code, &report);
    for check in ["attachment", "veth_peer", "neighbours", "offloads"] {
        assert!(
            findings(&report, check).iter().all(|f| f["status"] == "ok"),
            "{check}: {report:#}"
        );
    }

    lab.lb
        .command("ethtool")
        .args(["-K", "eth0", "tx", "on"])
        .stdout(Stdio::null())
        .status()
        .expect("ethtool");
    let (code, report) = run(&["--config", &config, "--sample", "0.1"]);
    assert_problem(code, &report, "offloads", "ethtool -K eth0 tx off");
    lab.lb.tx_checksum_off("eth0").expect("tx off");

    let text = std::fs::read_to_string(&lab.config_path).expect("config");
    let b0 = &lab.backends[0];
    let wrong_mac = lab
        .write_file(
            "wrong-mac.toml",
            &text.replace(&b0.mac, "02:00:00:00:00:99"),
        )
        .expect("config");
    let (code, report) = run(&[
        "--config",
        &wrong_mac.display().to_string(),
        "--sample",
        "0.1",
    ]);
    assert_problem(code, &report, "neighbours", &b0.mac);
    let b1 = lab.backends[1].address.to_string();
    let absent = lab
        .write_file(
            "absent.toml",
            &text.replace(&format!("\"{b1}\""), "\"198.18.0.99\""),
        )
        .expect("config");
    let (code, report) = run(&["--config", &absent.display().to_string(), "--sample", "0.1"]);
    assert_problem(code, &report, "neighbours", "ping -c1 198.18.0.99");

    let no_interface = lab
        .write_file(
            "eth9.toml",
            &text.replace("interface = \"eth0\"", "interface = \"eth9\""),
        )
        .expect("config");
    let (code, report) = run(&["--config", &no_interface.display().to_string()]);
    assert_problem(code, &report, "interface", "eth0");

    let mut pins_lab = Lab::new("doctorpins").expect("lab");
    let empty = pins_lab.pin_dir("empty").expect("pin dir");
    let (code, report) = doctor(&lab.lb, &empty, &["--interface", "eth0", "--sample", "0.1"]);
    assert_problem(code, &report, "attachment", "ip link set dev eth0 xdp off");

    lab.lb
        .sysctl("net.ipv4.conf.all.rp_filter", "1")
        .expect("rp_filter");
    let (_, report) = run(&["--config", &config, "--sample", "0.1"]);
    let rp = findings(&report, "rp_filter");
    assert!(
        rp.iter().any(|f| f["status"] == "warning"
            && f["fix"]
                .as_str()
                .is_some_and(|t| t.contains("conf.eth0.rp_filter=2"))),
        "{report:#}"
    );
    lab.lb
        .sysctl("net.ipv4.conf.all.rp_filter", "0")
        .expect("rp_filter");

    let ipip = text
        .replace("forwarding = \"dsr\"", "forwarding = \"ipip\"")
        .replace(
            "[global]\n",
            "[global]\nmtu = 1600\nipip_source_v4 = \"198.18.0.2\"\n",
        );
    let ipip = lab.write_file("ipip.toml", &ipip).expect("config");
    let (code, report) = run(&["--config", &ipip.display().to_string(), "--sample", "0.1"]);
    assert_problem(code, &report, "ipip_mtu", "ip link set dev eth0 mtu 1600");

    // `ip netns exec` remounts /sys: bpffs is not there.
    let xlb = demo::xlb_binary().expect("xlb");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.lb.name])
        .arg(&xlb)
        .args([
            "doctor", "--output", "json", "--sample", "0.1", "--config", &config,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_problem(out.status.code(), &report, "bpffs", "nsenter --net");
}

/// Test that a native XDP program sending XDP_TX out of a veth whose peer runs no XDP program
/// is reported twice, as the veth-peer rule with the command for the peer's namespace and as
/// growing xdp_tx_errors under traffic; and that both clear once the peer runs xlb_decap.
#[test]
fn doctor_reports_a_veth_peer_without_xdp_and_its_tx_errors() {
    require_privileges!();
    let (_lab, a, b, root) = veth_lab("doctorveth", ("a", "va"), ("b", "vb"));
    a.addr("va", "198.18.5.1/24").expect("addr");
    b.addr("vb", "198.18.5.2/24").expect("addr");
    // No ARP through a program that reflects every frame: a static entry instead.
    let mac = a.mac("va").expect("mac");
    b.ip(&["neigh", "add", "198.18.5.1", "lladdr", &mac, "dev", "vb"])
        .expect("neigh");
    let mut reflect = object::load(object::BASELINE_OBJECT, "bare_tx").expect("bare_tx");
    let program = object::xdp_program(&mut reflect, "bare_tx").expect("program");
    a.run(|| attach::attach(program, "va", AttachMode::Native))
        .expect("netns")
        .expect("attach bare_tx");

    let (code, report) = doctor_under_traffic(&a, &b, &root);
    let peer_fix = format!("nsenter --net=/run/netns/{} xlb decap attach vb", b.name);
    assert_problem(code, &report, "veth_peer", &peer_fix);
    assert!(
        findings(&report, "xdp_tx_errors")
            .iter()
            .any(|f| f["status"] == "problem"),
        "{report:#}"
    );

    let xlb = demo::xlb_binary().expect("xlb");
    xlb_verb(
        &b,
        &xlb,
        &root,
        &["decap", "attach", "vb", "--address", "198.18.5.2"],
    )
    .expect("xlb decap")
    .ok()
    .expect("attach");
    let (_, report) = doctor_under_traffic(&a, &b, &root);
    for check in ["veth_peer", "xdp_tx_errors"] {
        assert!(
            findings(&report, check).iter().all(|f| f["status"] == "ok"),
            "{check}: {report:#}"
        );
    }
}

/// `xlb doctor --interface va` in `a` while `b` sends UDP datagrams to `a`'s address.
fn doctor_under_traffic(a: &Netns, b: &Netns, pins: &Path) -> (Option<i32>, Value) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            b.run(|| {
                let socket = std::net::UdpSocket::bind("198.18.5.2:0").expect("bind");
                // Bounded: the doctor's sample is short.
                for _ in 0..200_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let _ = socket.send_to(b"x", "198.18.5.1:9");
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        });
        let result = doctor(a, pins, &["--interface", "va", "--sample", "1"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().expect("sender").expect("netns");
        result
    })
}

/// Test that a healthy `ipip` backend passes every backend check, and that each break is
/// reported with its fix: the VIP off loopback, arp_ignore and arp_announce at 0, strict
/// rp_filter, the decapsulation program detached, and an MTU without room for the tunnel
/// (cleared by clamping the route's MSS instead).
#[test]
fn doctor_on_a_backend_reports_each_broken_setting() {
    require_privileges!();
    let (_lab, be, other, root) = veth_lab("doctorbe", ("be", "eth0"), ("o", "eth0"));
    for ns in [&be, &other] {
        ns.ip(&["link", "set", "eth0", "mtu", "1600"]).expect("mtu");
    }
    be.addr("eth0", "198.18.6.10/24").expect("addr");
    be.hold_vips_on_lo(&["198.18.1.10".parse().expect("vip")])
        .expect("vip on lo");
    let xlb = demo::xlb_binary().expect("xlb");
    let decap = |args: &[&str]| {
        let mut full = vec!["decap"];
        full.extend_from_slice(args);
        xlb_verb(&be, &xlb, &root, &full)
            .expect("xlb decap")
            .ok()
            .expect("decap");
    };
    decap(&["attach", "eth0", "--address", "198.18.6.10"]);
    let check = || {
        doctor(
            &be,
            &root,
            &[
                "--backend",
                "--vip",
                "198.18.1.10",
                "--interface",
                "eth0",
                "--ipip",
            ],
        )
    };
    let (code, report) = check();
    assert_healthy(code, &report);

    be.ip(&["addr", "del", "198.18.1.10/32", "dev", "lo"])
        .expect("addr del");
    let (code, report) = check();
    assert_problem(
        code,
        &report,
        "vip_on_loopback",
        "ip addr add 198.18.1.10/32 dev lo",
    );
    be.addr("lo", "198.18.1.10/32").expect("addr");

    for (setting, fix) in [
        ("arp_ignore", "net.ipv4.conf.all.arp_ignore=1"),
        ("arp_announce", "net.ipv4.conf.all.arp_announce=2"),
    ] {
        let key = format!("net.ipv4.conf.all.{setting}");
        let healthy = lb_userspace_sysctl(&be, &key);
        be.sysctl(&key, "0").expect("sysctl");
        let (code, report) = check();
        assert_problem(code, &report, setting, fix);
        be.sysctl(&key, &healthy).expect("sysctl");
    }

    be.sysctl("net.ipv4.conf.eth0.rp_filter", "1")
        .expect("sysctl");
    let (code, report) = check();
    assert_problem(code, &report, "rp_filter", "net.ipv4.conf.eth0.rp_filter=2");
    be.sysctl("net.ipv4.conf.eth0.rp_filter", "0")
        .expect("sysctl");

    decap(&["detach", "eth0"]);
    let (code, report) = check();
    assert_problem(
        code,
        &report,
        "decap",
        "xlb decap attach eth0 --address 198.18.6.10",
    );
    decap(&["attach", "eth0", "--address", "198.18.6.10"]);

    // Without XDP on the link the MTU can change; veth caps it while a program is attached.
    decap(&["detach", "eth0"]);
    be.ip(&["link", "set", "eth0", "mtu", "1500"]).expect("mtu");
    decap(&["attach", "eth0", "--address", "198.18.6.10"]);
    let (code, report) = check();
    assert_problem(code, &report, "mss", "advmss 1440");
    be.ip(&[
        "route",
        "change",
        "198.18.6.0/24",
        "dev",
        "eth0",
        "proto",
        "kernel",
        "scope",
        "link",
        "src",
        "198.18.6.10",
        "advmss",
        "1440",
    ])
    .expect("route advmss");
    let (code, report) = check();
    assert_healthy(code, &report);
}

/// The value of sysctl `key` in `ns`.
fn lb_userspace_sysctl(ns: &Netns, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    ns.run(|| std::fs::read_to_string(&path))
        .expect("netns")
        .expect("sysctl")
        .trim()
        .to_owned()
}

/// A new lab of two namespaces joined by a veth, each end named as given, and a pin directory
/// for the decapsulation program's links.
fn veth_lab(label: &str, a: (&str, &str), b: (&str, &str)) -> (Lab, Netns, Netns, PathBuf) {
    let mut lab = Lab::new(label).expect("lab");
    let (a_ns, b_ns) = (
        lab.netns(a.0).expect("netns"),
        lab.netns(b.0).expect("netns"),
    );
    let root = lab.pin_dir("decap").expect("pin dir");
    veth((&a_ns, a.1), (&b_ns, b.1)).expect("veth");
    (lab, a_ns, b_ns, root)
}
