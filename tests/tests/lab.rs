//! Namespace-backed tests: the demo lab with the real `xlb run` in native XDP mode, and the
//! lab harness's cleanup on drop, on panic and on Ctrl-C.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use xlb_tests::{demo, netns::Lab, require_privileges};

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

/// Test that dropping a lab removes its namespaces and pin directories, and kills its processes.
#[test]
fn lab_removes_everything_on_drop() {
    require_privileges!();
    let mut lab = Lab::new("drop").expect("lab");
    let ns = lab.netns("a").expect("netns");
    let pins = lab.pin_dir("pins").expect("pin dir");
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
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} left behind"
    );
}

/// Test that a test panicking while holding a lab still removes the lab's namespaces.
#[test]
fn lab_is_removed_when_a_test_panics() {
    require_privileges!();
    let name = std::sync::Mutex::new(String::new());
    let result = std::panic::catch_unwind(|| {
        let mut lab = Lab::new("panic").expect("lab");
        let ns = lab.netns("a").expect("netns");
        *name.lock().unwrap() = ns.name.clone();
        panic!("deliberate panic with a lab alive");
    });
    assert!(result.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    assert!(
        !namespaces().contains(&name),
        "namespace {name} left behind"
    );
}

/// Test that Ctrl-C (SIGINT) on a running lab leaves no namespace and no xlb process behind.
#[test]
fn lab_is_removed_on_ctrl_c() {
    require_privileges!();
    let mut lab = Command::new(env!("CARGO_BIN_EXE_xlb-lab"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start xlb-lab");
    let marker = format!("xlbt-{}-", lab.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !namespaces().contains(&marker) {
        assert!(
            Instant::now() < deadline,
            "the lab never created its namespaces"
        );
        assert!(
            lab.try_wait().expect("poll").is_none(),
            "xlb-lab exited before Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the child we just spawned.
    unsafe { libc::kill(lab.id() as i32, libc::SIGINT) };
    let status = lab.wait().expect("wait for xlb-lab");
    assert_eq!(
        status.code(),
        Some(130),
        "xlb-lab should exit with 130 after Ctrl-C"
    );
    assert!(
        !namespaces().contains(&marker),
        "namespaces left after Ctrl-C:\n{}",
        namespaces()
    );
}

/// Test that two hosts joined through a bridge in a third namespace exchange real traffic.
#[test]
fn lab_bridge_joins_hosts() {
    require_privileges!();
    let mut lab = Lab::new("bridge").expect("lab");
    let switch = lab.netns("sw").expect("netns");
    let a = lab.netns("a").expect("netns");
    let b = lab.netns("b").expect("netns");
    lab.veth((&a, "eth0"), (&switch, "pa")).expect("veth a");
    lab.veth((&b, "eth0"), (&switch, "pb")).expect("veth b");
    lab.bridge(&switch, "br0", &["pa", "pb"]).expect("bridge");
    lab.addr(&a, "eth0", "198.18.5.1/24").expect("addr a");
    lab.addr(&b, "eth0", "198.18.5.2/24").expect("addr b");
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
