//! Scale-out: three xlb nodes behind a router doing ECMP over BGP routes from BIRD 2
//! (tests/src/scale_out.rs). One lab at a time: each runs seven BIRD/xlb processes.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, TcpStream},
    sync::Mutex,
    time::{Duration, Instant},
};

use xlb_tests::{
    require_privileges,
    scale_out::{DEAD_HEALTH_PORT, ScaleOut, VIP6, WEIGHTS, connect, echo},
    shares,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// How long BGP may take to converge (sessions up and routes in the router's kernel).
const CONVERGE: Duration = Duration::from_secs(20);
/// How long a withdrawal may take to reach the router's kernel.
const WITHDRAW: Duration = Duration::from_secs(10);

/// A lab with `nodes` nodes up and their routes on the router.
fn started(label: &str, nodes: usize) -> ScaleOut {
    let mut lab = ScaleOut::new(label, nodes).expect("lab");
    for i in 0..nodes {
        lab.start_node(i).expect("node");
    }
    let all: Vec<usize> = (0..nodes).collect();
    lab.wait_next_hops(&all, CONVERGE).expect("routes");
    lab
}

/// New flows per node (sum over backends).
fn node_flows(lab: &ScaleOut) -> Vec<u64> {
    (0..lab.nodes.len())
        .map(|i| lab.node_new_flows(i).expect("stats").iter().sum())
        .collect()
}

/// Opens `count` short connections; returns how many each backend answered.
fn ask_many(lab: &ScaleOut, count: usize) -> Vec<u64> {
    let names: Vec<String> = lab.backends.iter().map(|b| b.name.clone()).collect();
    lab.client(|| {
        let mut answered = vec![0u64; names.len()];
        for n in 0..count {
            let (_stream, name) = connect().unwrap_or_else(|e| panic!("connection {n}: {e:#}"));
            let at = names.iter().position(|b| *b == name).expect("a backend");
            answered[at] += 1;
        }
        answered
    })
    .expect("client")
}

/// `count` long-lived streams with the backend each reached.
fn open_streams(lab: &ScaleOut, count: usize) -> Vec<(TcpStream, String)> {
    lab.client(|| (0..count).map(|_| connect().expect("stream")).collect())
        .expect("client")
}

/// Sends a byte on every stream; returns the ones that failed.
fn broken(streams: &mut [(TcpStream, String)], byte: u8) -> Vec<String> {
    streams
        .iter_mut()
        .filter_map(|(stream, backend)| {
            echo(stream, byte).err().map(|e| {
                format!(
                    "{} -> {backend}: {e:#}",
                    stream
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                )
            })
        })
        .collect()
}

/// Asserts that every stream still echoes bytes 2, 3 and 4.
fn assert_none_break(streams: &mut [(TcpStream, String)]) {
    for byte in 2..5 {
        let failed = broken(streams, byte);
        assert!(
            failed.is_empty(),
            "{} streams broke: {failed:#?}",
            failed.len()
        );
    }
}

/// Test that with three nodes up, 600 new connections from many client ports spread over
/// all nodes (each node's own counters) and land on the backends by their weights.
#[test]
fn new_connections_spread_over_every_node_and_land_by_weight() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let lab = started("spread", 3);
    let before = node_flows(&lab);
    let answered = ask_many(&lab, 600);
    let after = node_flows(&lab);
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("per node {per_node:?}, per backend {answered:?}");
    assert_eq!(per_node.iter().sum::<u64>(), 600, "{per_node:?}");
    for (i, flows) in per_node.iter().enumerate() {
        assert!(
            *flows >= 100,
            "node n{i} steered {flows} of 600: {per_node:?}"
        );
    }
    shares::assert_within(&shares::shares(&answered, &WEIGHTS), 10.0, &answered);
    // Same config, same tables: every node audits clean against the others.
    for i in 0..3 {
        let mut args = vec!["audit".to_owned()];
        for j in (0..3).filter(|j| *j != i) {
            args.push("--peer".to_owned());
            args.push(lab.nodes[j].pin_path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.xlb(i, &args)
            .expect("audit")
            .ok()
            .expect("no drift between nodes");
    }
}

/// Test that when one node dies (kill -9, `xlb down`, BIRD stopped) while long-lived
/// streams run through every node, its route is withdrawn (two next hops left) and every
/// stream keeps working: the ones that move reach the same backend through another node.
#[test]
fn killed_node_is_withdrawn_and_its_streams_keep_their_backend() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = started("kill", 3);
    let before = node_flows(&lab);
    let mut streams = open_streams(&lab, 60);
    let opened: Vec<u64> = node_flows(&lab)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(opened.iter().all(|n| *n > 0), "streams per node {opened:?}");
    assert_eq!(broken(&mut streams, 1), Vec::<String>::new());
    let killed = Instant::now();
    lab.kill_node(1).expect("kill");
    let took = lab.wait_next_hops(&[0, 2], WITHDRAW).expect("withdrawn");
    eprintln!(
        "streams per node {opened:?}; withdrawn {took:?} after the kill ({:?} in all)",
        killed.elapsed()
    );
    assert_none_break(&mut streams);
}

/// Test that a node whose health checks fail for every backend (its config probes a port
/// nothing listens on) withdraws the VIP and gets no new flows, while the others serve.
#[test]
fn node_without_healthy_backends_withdraws_and_gets_no_new_flows() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let lab = started("unhealthy", 3);
    let text = lab.config_text(2, DEAD_HEALTH_PORT);
    lab.write_config(2, &text).expect("config");
    let took = lab.wait_next_hops(&[0, 1], WITHDRAW).expect("withdrawn");
    let before = node_flows(&lab);
    let answered = ask_many(&lab, 300);
    let after = node_flows(&lab);
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("withdrawn after {took:?}; per node {per_node:?}, per backend {answered:?}");
    assert_eq!(per_node[2], 0, "{per_node:?}");
    assert!(per_node[0] > 0 && per_node[1] > 0, "{per_node:?}");
    // Healthy again: announced again.
    let text = lab.config_text(2, xlb_tests::scale_out::VIP_PORT);
    lab.write_config(2, &text).expect("config");
    lab.wait_next_hops(&[0, 1, 2], CONVERGE).expect("announced");
}

/// Test that a node added back (its BIRD and daemon started again after a kill) receives
/// new flows again, and that no stream established before it came back breaks.
#[test]
fn node_added_back_gets_flows_and_no_stream_breaks() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = started("add", 3);
    lab.kill_node(2).expect("kill");
    lab.wait_next_hops(&[0, 1], WITHDRAW).expect("withdrawn");
    let mut streams = open_streams(&lab, 60);
    assert_eq!(broken(&mut streams, 1), Vec::<String>::new());
    let back = Instant::now();
    lab.start_node(2).expect("restart");
    let took = lab.wait_next_hops(&[0, 1, 2], CONVERGE).expect("announced");
    eprintln!(
        "node back in the router's route {took:?} ({:?} from start)",
        back.elapsed()
    );
    assert_none_break(&mut streams);
    let before = lab.node_new_flows(2).expect("stats").iter().sum::<u64>();
    ask_many(&lab, 150);
    let after = lab.node_new_flows(2).expect("stats").iter().sum::<u64>();
    assert!(after > before, "the node that came back got no new flows");
}

/// Waits until the router's next hops are exactly `nodes` after `what`, and checks that node
/// `quiet`'s BIRD still runs: the withdrawal came from the daemon, not from a BGP session that
/// ended.
fn withdrawn_by_the_daemon(lab: &ScaleOut, what: &str, nodes: &[usize], quiet: usize) {
    let took = lab.wait_next_hops(nodes, WITHDRAW).unwrap_or_else(|err| {
        panic!(
            "after {what}: {err:#}\nnode log:\n{}",
            lab.nodes[quiet].log()
        )
    });
    eprintln!("withdrawn {took:?} after {what}");
    assert!(
        lab.bird_runs(quiet),
        "BIRD of node {quiet} stopped: the test proves nothing"
    );
}

/// Test that a node's VIP is withdrawn at the router by the daemon itself, while the node's
/// BIRD keeps running: on SIGTERM to `xlb run`; on `xlb down` after the daemon was killed with
/// SIGKILL (which withdraws nothing: the route stays until `xlb down`); and on a `[bgp]` change
/// that moves the routes file (the old file is emptied before the new one is used).
#[test]
fn vip_is_withdrawn_on_sigterm_on_down_and_on_a_bgp_change() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = started("withdraw", 2);

    lab.stop_daemon(0, libc::SIGTERM).expect("SIGTERM");
    withdrawn_by_the_daemon(&lab, "SIGTERM to node 0's daemon", &[1], 0);

    lab.start_node(0).expect("restart the daemon");
    lab.wait_next_hops(&[0, 1], CONVERGE)
        .expect("announced again");
    lab.stop_daemon(0, libc::SIGKILL).expect("SIGKILL");
    // Nothing withdraws after a SIGKILL: BIRD keeps announcing what the routes file holds.
    let hops = lab.next_hops().expect("next hops");
    assert_eq!(hops.len(), 2, "a SIGKILL withdrew the route: {hops:?}");
    lab.xlb(0, &["down"])
        .and_then(|out| out.ok())
        .unwrap_or_else(|err| panic!("xlb down: {err:#}"));
    withdrawn_by_the_daemon(&lab, "`xlb down` on node 0", &[1], 0);

    lab.start_node(0).expect("restart the daemon");
    lab.wait_next_hops(&[0, 1], CONVERGE)
        .expect("announced again");
    let old = lab.nodes[0].routes_file().display().to_string();
    let moved = lab.nodes[0].dir.join("elsewhere.conf");
    let text = lab
        .config_text(0, xlb_tests::scale_out::VIP_PORT)
        .replace(&old, &moved.display().to_string());
    assert!(text.contains("elsewhere.conf"), "{text}");
    lab.write_config(0, &text)
        .expect("config with a new [bgp] routes file");
    withdrawn_by_the_daemon(&lab, "a [bgp] change of node 0's routes file", &[1], 0);
    let route = format!("route {}/32", xlb_tests::scale_out::VIP);
    let announced = xlb_tests::wait::try_wait_until(WITHDRAW, || {
        Ok(std::fs::read_to_string(&moved).is_ok_and(|text| text.contains(&route)))
    });
    assert!(
        announced.is_some(),
        "the new routes file {} does not announce the VIP; node log:\n{}",
        moved.display(),
        lab.nodes[0].log()
    );
}

/// Test that every node announces the IPv6 VIP it serves (ipip to the IPv4 backends) over its
/// BGP session (an IPv4 session with an ipv6 channel and extended next hops), so the router's
/// BIRD learns the VIP's /128 from each node, with the node as next hop; and that a node
/// stopped with SIGTERM withdraws it there too.
#[test]
fn ipv6_vip_is_announced_by_every_node() {
    require_privileges!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = started("bgp6", 2);
    let want: BTreeSet<Ipv4Addr> = lab.nodes.iter().map(|n| n.host.address).collect();
    let deadline = Instant::now() + CONVERGE;
    let mut hops = BTreeSet::new();
    while hops != want {
        assert!(
            Instant::now() < deadline,
            "after {CONVERGE:?} the router learned {VIP6} from {hops:?}, not {want:?}; router \
             BIRD log:\n{}",
            std::fs::read_to_string(lab.dir.join("router/bird.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
        hops = lab.ipv6_next_hops().expect("birdc");
    }
    lab.stop_daemon(1, libc::SIGTERM).expect("SIGTERM");
    let left: BTreeSet<Ipv4Addr> = [lab.nodes[0].host.address].into();
    let deadline = Instant::now() + CONVERGE;
    while lab.ipv6_next_hops().expect("birdc") != left {
        assert!(Instant::now() < deadline, "n1 still announces {VIP6}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
