//! Namespace test of `xlb run --config`: the real binary attaches, pins and applies; the other
//! verbs reach it through the pins; stopping it detaches and removes the pins.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::{daemon_lab::host_verb, require_privileges, run_lab::RunLab};

fn config(pin_path: &std::path::Path) -> String {
    format!(
        "[global]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n\
         [[vip]]\nname = \"web\"\naddress = \"198.18.1.10\"\nport = 80\nprotocol = \"tcp\"\n\n\
         [[vip.backend]]\naddress = \"198.18.0.10\"\nmac = \"02:00:00:00:03:00\"\n\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:03:01\"\n",
        pin_path.display()
    )
}

/// Test that `xlb run --config` attaches, pins its state and applies the config; that
/// `status`, `apply` and `audit` work against it from another process; that forwarding
/// outlives the daemon and a new one adopts it; and that `xlb down` detaches and removes
/// every pin.
#[test]
fn run_with_config_pins_applies_adopts_and_goes_down() {
    require_privileges!();
    // A pin path of our own, removed with the lab; xlb creates it.
    let mut setup = RunLab::new("runcfg");
    std::fs::write(&setup.config, config(&setup.pin_path)).expect("config");

    let mut run = setup.lb.command(&setup.xlb);
    run.args(["run", "--config"])
        .arg(&setup.config)
        .args(["--stats-interval", "0"]);
    run.stdout(Stdio::piped());
    let pid = setup.lab.spawn(run).expect("xlb run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !setup.pin_path.join("link").exists() {
        assert!(Instant::now() < deadline, "xlb run never pinned its link");
        std::thread::sleep(Duration::from_millis(50));
    }
    let verb = |args: &[&str]| {
        let out = host_verb(&setup.xlb, &setup.pin_path, args).expect("run xlb");
        (out.code, out.stdout)
    };
    let (code, status) = verb(&["status", "--output", "json"]);
    assert_eq!(code, Some(0), "{status}");
    assert!(status.contains("198.18.1.10"), "{status}");
    let (code, audit) = verb(&["audit", setup.config.to_str().unwrap()]);
    assert_eq!(
        code,
        Some(0),
        "a freshly applied config audits clean: {audit}"
    );
    let (code, applied) = verb(&["apply", setup.config.to_str().unwrap(), "--allow-warnings"]);
    assert_eq!(code, Some(0), "{applied}");
    assert!(applied.contains("generation 2"), "{applied}");

    let status = setup.lab.terminate(pid).expect("stop xlb run");
    assert!(status.success(), "xlb run exited with {status}");
    let attached = || {
        let link = Command::new("ip")
            .args(["-n", &setup.lb.name, "link", "show", "eth0"])
            .output();
        String::from_utf8_lossy(&link.expect("ip link").stdout).contains("xdp")
    };
    assert!(attached(), "forwarding stops with the daemon");
    assert!(
        setup.pin_path.join("link").exists(),
        "pins removed by a plain stop"
    );

    // A new daemon adopts the pinned data plane: same maps (generation goes on), new program.
    // Its config asks for another flow-table size: the pinned table keeps its own, and says so.
    let resized = setup.lab.temp_path("resized.toml").expect("temp path");
    let text = config(&setup.pin_path).replace("[[vip]]", "flow_table_size = 1024\n\n[[vip]]");
    std::fs::write(&resized, text).expect("config");
    let stderr = setup.lab.temp_path("stderr").expect("temp path");
    let mut again = setup.lb.command(&setup.xlb);
    again
        .args(["run", "--config"])
        .arg(&resized)
        .args(["--stats-interval", "0"]);
    again.stdout(Stdio::piped());
    again.stderr(std::fs::File::create(&stderr).expect("stderr file"));
    let pid = setup.lab.spawn(again).expect("xlb run again");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = verb(&["status", "--output", "json"]);
        if status.contains("\"generation\": 3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new daemon never applied: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(attached());
    let status = setup.lab.terminate(pid).expect("stop xlb run");
    assert!(status.success(), "xlb run exited with {status}");
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(
        said.contains("holds 65536 flows and keeps them")
            && said.contains("flow_table_size = 1024 takes effect after `xlb down`"),
        "{said}"
    );

    let (code, _) = verb(&["down"]);
    assert_eq!(code, Some(0));
    assert!(
        !setup.pin_path.exists(),
        "pins left behind at {}",
        setup.pin_path.display()
    );
    assert!(!attached(), "still attached after xlb down");
    let (code, _) = verb(&["status"]);
    assert_eq!(code, Some(3), "nothing loaded exits 3");
}
