//! The program's capacity (`[capacity]`): `xlb run` loads what the config asks for, refuses a
//! config beyond it, and a restart with another capacity replaces the sized maps while keeping
//! the flow table and the per-reason counters; `plan` and `apply` refuse a config the running
//! program cannot hold, naming the field to raise. A pinned map an older xlb defined
//! otherwise (flags, key or value size) is replaced the same way, with traffic flowing.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use aya::maps::MapInfo;
use lb_common::map_names;
use xlb_tests::{
    daemon_lab::{DaemonLab, host_verb},
    live::{LiveXlb, assert_says},
    netns::Lab,
    require_privileges,
    run_lab::RunLab,
};

/// A config of `vips` dsr VIPs (198.18.1.10, ports 1000..) of two backends each, with
/// `capacity` as the body of a `[capacity]` table (none when empty).
fn config(pin_path: &Path, vips: usize, capacity: &str) -> String {
    let mut text = format!(
        "[global]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n",
        pin_path.display()
    );
    if !capacity.is_empty() {
        text += &format!("[capacity]\n{capacity}\n\n");
    }
    for i in 0..vips {
        text += &format!(
            "[[vip]]\nname = \"v{i}\"\naddress = \"198.18.1.10\"\nport = {}\nprotocol = \
             \"tcp\"\ntable_size = 251\n\n[[vip.backend]]\naddress = \"198.18.0.10\"\nmac = \
             \"02:00:00:00:03:00\"\n\n[[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \
             \"02:00:00:00:03:01\"\n\n",
            1000 + i
        );
    }
    text
}

fn map_id(pin_path: &Path, name: &str) -> u32 {
    MapInfo::from_pin(pin_path.join(name))
        .unwrap_or_else(|err| panic!("{name}: {err}"))
        .id()
}

/// Test that `xlb run` refuses 70 VIPs in the default capacity (XLB028 naming capacity.vips),
/// runs them with `[capacity] vips = 80`, and that a restart with `vips = 100` says what it
/// did, loads the new capacity, replaces the VIP map and keeps the flow table and the
/// per-reason counters, with every VIP applied again.
#[test]
fn run_loads_the_configs_capacity_and_a_change_restarts_keeping_the_flow_table() {
    require_privileges!();
    let mut setup = RunLab::new("capacity");

    std::fs::write(&setup.config, config(&setup.pin_path, 70, "")).expect("config");
    let refused = setup
        .lb
        .command(&setup.xlb)
        .args(["run", "--config"])
        .arg(&setup.config)
        .output()
        .expect("xlb run");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("XLB028")
            && said.contains("capacity.vips")
            && said.contains("set vips = 70 or more in [capacity]"),
        "{said}"
    );
    assert!(!setup.pin_path.join("link").exists(), "nothing is loaded");

    let verb = |args: &[&str]| {
        let out = host_verb(&setup.xlb, &setup.pin_path, args).expect("run xlb");
        (out.code, out.stdout)
    };
    let status = || -> serde_json::Value {
        let (_, out) = verb(&["status", "--output", "json"]);
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    };
    // The daemon has applied `generation` at `vips` capacity (the pins are replaced after the
    // apply) and handles signals.
    let wait_for = |generation: u64, vips: u32, log: &Path| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = status();
            let ready = std::fs::read_to_string(log.with_extension("err"))
                .is_ok_and(|said| said.contains("running: SIGHUP reloads"));
            if now["generation"] == generation && now["capacity"]["vips"] == vips && ready {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "generation {generation} never came: {now}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Runs `xlb run` on the config of 70 VIPs with room for `vips`, its output to file `log`,
    // and waits until it has applied `generation` at that capacity, holding all 70.
    let start = |lab: &mut Lab, vips: u32, generation: u64, log: &str| {
        let capacity = format!("vips = {vips}\nbackends_per_vip = 4\ntable_slots = 251");
        std::fs::write(&setup.config, config(&setup.pin_path, 70, &capacity)).expect("config");
        let stdout = lab.temp_path(log).expect("temp path");
        let mut run = setup.lb.command(&setup.xlb);
        run.args(["run", "--config"])
            .arg(&setup.config)
            .args(["--stats-interval", "0"]);
        run.stdout(std::fs::File::create(&stdout).expect("stdout file"));
        run.stderr(std::fs::File::create(stdout.with_extension("err")).expect("stderr file"));
        let pid = lab.spawn(run).expect("xlb run");
        let now = wait_for(generation, vips, &stdout);
        assert_eq!(now["capacity"]["vips"], vips, "{now}");
        assert_eq!(now["vips"].as_array().map(Vec::len), Some(70), "{now}");
        (pid, stdout)
    };

    let (pid, first_out) = start(&mut setup.lab, 80, 1, "first.out");
    let flows = map_id(&setup.pin_path, map_names::FLOWS);
    let reasons = map_id(&setup.pin_path, map_names::REASONS);
    let vips = map_id(&setup.pin_path, map_names::VIPS);
    let stopped = setup.lab.terminate(pid).expect("stop");
    assert!(
        stopped.success(),
        "{stopped}: {}",
        std::fs::read_to_string(first_out.with_extension("err")).unwrap_or_default()
    );

    let (pid, out) = start(&mut setup.lab, 100, 2, "second.out");
    assert_eq!(
        map_id(&setup.pin_path, map_names::FLOWS),
        flows,
        "flow table kept"
    );
    assert_eq!(
        map_id(&setup.pin_path, map_names::REASONS),
        reasons,
        "counters kept"
    );
    assert_ne!(
        map_id(&setup.pin_path, map_names::VIPS),
        vips,
        "VIP map replaced"
    );
    let (code, audit) = verb(&["audit", setup.config.to_str().expect("path")]);
    assert_eq!(code, Some(0), "the restarted program audits clean: {audit}");
    let stopped = setup.lab.terminate(pid).expect("stop");
    assert!(
        stopped.success(),
        "{stopped}: {}",
        std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
    );
    let said = std::fs::read_to_string(out).expect("stdout");
    assert!(
        said.contains("capacity changed from 80 VIPs x 4 backends")
            && said.contains("to 100 VIPs x 4 backends")
            && said.contains("kept: the flow table"),
        "{said}"
    );
    let (code, _) = verb(&["down"]);
    assert_eq!(code, Some(0));
}

/// Test that `plan` and `apply` refuse (exit 1) a config with more VIPs than the running
/// program holds, naming capacity.vips and the restart, and change nothing.
#[test]
fn plan_and_apply_refuse_a_config_the_running_program_cannot_hold() {
    require_privileges!();
    let mut live = LiveXlb::new("capacity-live");
    live.apply(&xlb_tests::live::EQUAL);
    // The live program holds 8 VIPs (TEST_CAPACITY); the config asks for 9 and 16.
    let text = config(&live.pin_path, 9, "vips = 16\nbackends_per_vip = 16")
        .replace("\"eth0\"", "\"lo\"")
        .replace("xdp_mode = \"generic\"\n", "");
    let file = live.config_file("nine.toml", &text);
    let path = file.to_str().expect("path");
    let (code, plan) = live.xlb_json(&["plan", path]);
    assert_eq!(code, Some(1), "{plan}");
    let refusal = plan["refusal"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("9 VIPs do not fit: the running program holds 8")
            && refusal.contains("capacity.vips = 9")
            && refusal.contains("restart xlb"),
        "{plan}"
    );
    assert_eq!(plan["live"]["config_capacity"]["vips"], 16, "{plan}");
    assert_says(
        &live.xlb_json(&["apply", path]),
        1,
        "refused",
        "capacity.vips = 9",
    );
    let (_, status) = live.xlb_json(&["status"]);
    assert_eq!(status["generation"], 1, "nothing changed: {status}");
}

/// Test that `xlb run` over a data plane whose pinned flow table an older xlb created without
/// the flags the program now asks for (an array of the same key and value size and entries,
/// flags 0, made with bpftool) adopts it: it says it replaced the flow table and what that
/// means, connections to the VIP still reach every backend, and the flow table pinned now has
/// the flags the object's map has.
#[test]
fn run_replaces_a_pinned_map_an_older_xlb_defined_otherwise() {
    require_privileges!();
    let mut lab = DaemonLab::started("olderflags", 2).expect("lab with xlb run");
    lab.signal_daemon(libc::SIGTERM).expect("SIGTERM");
    let stopped = lab
        .wait_daemon_exit(Duration::from_secs(20))
        .expect("xlb run stops");
    assert!(stopped.success(), "{stopped}: {}", lab.daemon_log());
    let flows = lab.pin_path.join(map_names::FLOWS);
    let wanted = MapInfo::from_pin(&flows).expect("the pinned flow table");
    assert_ne!(wanted.map_flags(), 0, "the object's flow table has flags");

    // The older xlb's flow table: the same layout without the flags. The test process is in
    // the host's mount namespace, so bpftool sees the pins (`ip netns exec` would hide them).
    std::fs::remove_file(&flows).expect("remove the flow table pin");
    let created = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&flows)
        .args(["type", "array", "key", "4", "value"])
        .arg(wanted.value_size().to_string())
        .arg("entries")
        .arg(wanted.max_entries().to_string())
        .args(["name", map_names::FLOWS])
        .status()
        .expect("bpftool");
    assert!(created.success(), "bpftool map create: {created}");
    let older = MapInfo::from_pin(&flows).expect("the older flow table");
    assert_eq!(older.map_flags(), 0);

    lab.start_daemon()
        .expect("xlb run over the older flow table");
    let log = lab.daemon_log();
    assert!(
        log.contains("adopted the data plane")
            && log.contains(&format!(
                "{} (map_flags 0 here, {} wanted): established flows re-resolve",
                map_names::FLOWS,
                wanted.map_flags()
            )),
        "{log}"
    );
    let answered = lab
        .ask_many(100, Duration::from_secs(60))
        .expect("connections to the VIP");
    assert!(
        answered.iter().all(|&count| count > 0),
        "every backend answers: {answered:?}"
    );
    let now = MapInfo::from_pin(&flows).expect("the new flow table");
    assert_ne!(now.id(), older.id(), "the older flow table was replaced");
    assert_eq!(now.map_flags(), wanted.map_flags(), "{log}");
}
