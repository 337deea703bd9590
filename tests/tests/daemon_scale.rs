//! The control plane's behaviour at scale, in miniature (speed is `cargo xtask bench`'s,
//! `xlb-bench-daemon`): an apply rewrites only the VIPs that change, and a backend checked the
//! same way in several VIPs is probed once per interval.

use std::{
    io::ErrorKind,
    net::TcpListener,
    time::{Duration, Instant},
};

use lb_common::map_names;
use lb_userspace::{
    capacity::Capacity,
    rollout::{self, Desired},
    steering,
};
use xlb_tests::{
    live::{LiveXlb, TEST_CAPACITY},
    require_privileges,
    run_lab::RunLab,
};

/// `count` VIPs (198.18.1.10, ports 1000..) of three backends each.
fn many_vips(count: u16, weight_of_one: u32) -> String {
    let mut text = String::from(
        "[global]\ninterface = \"lo\"\n\n[audit]\nmax_backend_share = 1.0\nmin_backends = 1\n\n",
    );
    for i in 0..count {
        text += &format!(
            "[[vip]]\nname = \"v{i}\"\naddress = \"198.18.1.10\"\nport = {}\nprotocol = \
             \"tcp\"\ntable_size = 4099\n",
            1000 + i
        );
        for j in 0..3u32 {
            let weight = if i == 3 && j == 1 { weight_of_one } else { 1 };
            text += &format!(
                "[[vip.backend]]\naddress = \"198.18.0.{}\"\nweight = {weight}\nmac = \
                 \"02:00:00:00:03:{j:02x}\"\n",
                10 + j
            );
        }
    }
    text
}

/// Every slot of both table copies of every VIP id of `capacity`.
fn all_copies(live: &LiveXlb, capacity: &Capacity) -> Vec<Vec<u32>> {
    let ranges: Vec<(u32, u32)> = (0..capacity.vips)
        .flat_map(|id| [0, 1].map(|copy| (capacity.table_base(id, copy), capacity.table_slots)))
        .collect();
    steering::read_tables(&live.ebpf, &ranges).expect("tables")
}

/// Test that an apply changing one backend's weight in one VIP of eight rebuilds, writes and
/// flips that VIP alone: every other VIP keeps its entry (the same live copy) and both its
/// table copies slot for slot, and the changed VIP's old live copy is untouched too.
#[test]
fn an_apply_rewrites_only_the_vip_that_changed() {
    require_privileges!();
    let mut live = LiveXlb::new("scale-incremental");
    let first = live.apply_text(&many_vips(8, 1));
    assert!(first.vips.iter().all(|vip| vip.rebuilt));
    let before = live.snapshot();
    let copies_before = all_copies(&live, &TEST_CAPACITY);

    let changed = live.apply_text(&many_vips(8, 3));
    let rebuilt: Vec<u16> = changed
        .vips
        .iter()
        .filter(|vip| vip.rebuilt)
        .map(|vip| u16::from_be(vip.key.port))
        .collect();
    assert_eq!(rebuilt, vec![1003], "only the VIP whose weight changed");
    let after = live.snapshot();
    assert_eq!(after.meta.generation, before.meta.generation + 1);
    let copies_after = all_copies(&live, &TEST_CAPACITY);
    for ((key, old), (_, new)) in before.vips.iter().zip(&after.vips) {
        let written = [0u32, 1].map(|copy| {
            copies_before[(old.id * 2 + copy) as usize]
                != copies_after[(old.id * 2 + copy) as usize]
        });
        if u16::from_be(key.port) == 1003 {
            assert_eq!(new.active, 1 - old.active, "the changed VIP flips");
            assert_eq!(
                written,
                [old.active == 1, old.active == 0],
                "only its inactive copy was written"
            );
        } else {
            assert_eq!(new, old, "VIP {} kept its entry", u16::from_be(key.port));
            assert_eq!(
                written,
                [false, false],
                "VIP {} kept both copies",
                u16::from_be(key.port)
            );
        }
    }
    let backends =
        lb_userspace::batch::array::<lb_common::Backend>(&live.ebpf, map_names::BACKENDS)
            .expect("backends");
    let differ = backends
        .iter()
        .zip(&before.backends)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differ, 1, "one backend entry (the new weight) written");

    // The same state again changes no VIP at all.
    let again: Desired = Desired::from_live(&after, &TEST_CAPACITY);
    let same = rollout::apply(&mut live.ebpf, &again).expect("apply");
    assert!(same.vips.iter().all(|vip| !vip.rebuilt));
}

/// Test that one backend checked the same way (TCP, port 8080, every 300 ms) in three VIPs is
/// probed once per interval, not three times: the connections its listener accepts over a
/// window stay within one per interval.
#[test]
fn a_backend_shared_by_three_vips_is_probed_once_per_interval() {
    require_privileges!();
    let mut setup = RunLab::new("sharedprobe");
    setup
        .lb
        .addr("lo", "198.18.0.10/32")
        .expect("backend address");
    let listener = setup
        .lb
        .run(|| TcpListener::bind("198.18.0.10:8080"))
        .expect("netns")
        .expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let mut text = format!(
        "[global]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n\
         [audit]\nmin_backends = 1\nmax_backend_share = 1.0\n\n",
        setup.pin_path.display()
    );
    for port in [80, 81, 82] {
        text += &format!(
            "[[vip]]\nname = \"p{port}\"\naddress = \"198.18.1.10\"\nport = {port}\nprotocol = \
             \"tcp\"\n[[vip.backend]]\naddress = \"198.18.0.10\"\nmac = \"02:00:00:00:03:00\"\n\
             [vip.backend.health]\ncheck = \"tcp\"\nport = 8080\ninterval_ms = 300\n\
             timeout_ms = 200\n[[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \
             \"02:00:00:00:03:01\"\n"
        );
    }
    std::fs::write(&setup.config, text).expect("config");
    let mut run = setup.lb.command(&setup.xlb);
    run.args(["run", "--config"])
        .arg(&setup.config)
        .args(["--stats-interval", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = setup.lab.spawn(run).expect("xlb run");
    let accept_until = |deadline: Instant| {
        let mut accepted = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok(_) => accepted += 1,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(err) => panic!("accept: {err}"),
            }
        }
        accepted
    };
    // Probing has started once a first connection comes; then count over a window.
    let started = Instant::now();
    while accept_until(Instant::now() + Duration::from_millis(100)) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon never probed the backend"
        );
    }
    let window = Duration::from_millis(3000);
    let accepted = accept_until(Instant::now() + window);
    let status = setup.lab.terminate(pid).expect("stop");
    let _ = std::process::Command::new(&setup.xlb)
        .args(["down", "--pin-path"])
        .arg(&setup.pin_path)
        .output();
    assert!(status.success(), "xlb run exited with {status}");
    // 10 intervals fit the window: one probe each, plus one at either edge. Three probes per
    // interval (one per VIP) would be about 30.
    assert!(
        (5..=12).contains(&accepted),
        "{accepted} probes in {window:?} at 300 ms: not one per interval"
    );
}
