//! `xlb decap attach|status|detach` on real backends: the program the verb attaches strips the
//! `ipip` tunnels of real TCP connections, survives the command's exit, is reported by
//! `status`, and is gone after `detach`; bad input is refused with the documented exit codes.

use std::net::IpAddr;

use xlb_tests::{
    daemon_lab::{VerbOutput, xlb_verb},
    demo,
    netns::Lab,
    require_privileges,
    topology::{Forwarding, Options, Topology, VIP_V4},
};

/// Runs `xlb decap ARGS --pin-path ROOT --output json` in backend `id`'s namespace.
fn decap(topology: &Topology, id: usize, root: &std::path::Path, args: &[&str]) -> VerbOutput {
    let xlb = demo::xlb_binary().expect("xlb binary");
    let mut full = vec!["decap"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--output", "json"]);
    xlb_verb(&topology.backends[id].ns, &xlb, root, &full).expect("running xlb decap")
}

/// An `ipip` topology of `backends` equal backends that strip no tunnels yet.
fn without_decap(label: &str, backends: u32) -> Topology {
    let options = Options {
        forwarding: Forwarding::IpipV4,
        attach_decap: false,
        ..Options::equal(backends)
    };
    Topology::new(label, &options).expect("ipip topology")
}

/// Test that `xlb decap attach` on each backend makes real `ipip` connections work (none
/// without it), that `status` shows the program attached natively with its addresses and a
/// decapsulated count covering the connections, and that after `detach` the interface runs no
/// program, the backend's connections fail again and a second `detach` is exit 3.
#[test]
fn decap_attach_strips_real_ipip_traffic_until_detached() {
    require_privileges!();
    let topology = without_decap("decapcli", 2);
    let mut lab = Lab::new("decappins").expect("lab");
    let roots: Vec<_> = (0..2)
        .map(|id| lab.pin_dir(&format!("b{id}")).expect("pin dir"))
        .collect();
    let vip = IpAddr::V4(VIP_V4);

    // Without the program the tunnels reach no server.
    assert!(
        topology.ask(vip, 30_000).is_err(),
        "a connection was answered before any backend stripped tunnels"
    );

    for (id, root) in roots.iter().enumerate() {
        let host = &topology.backends[id];
        let (v4, v6) = (host.v4.to_string(), host.v6.to_string());
        let attached = decap(
            &topology,
            id,
            root,
            &["attach", "eth0", "--address", &v4, "--address", &v6],
        )
        .ok()
        .expect("attach")
        .json()
        .expect("json");
        assert_eq!(attached["attached"], true, "{attached}");
        assert_eq!(attached["mode"], "native", "{attached}");
        assert_eq!(
            attached["addresses"],
            serde_json::json!([v4, v6]),
            "{attached}"
        );
    }

    let total = 40u16;
    let mut answered = [0u64; 2];
    for sport in 30_001..30_001 + total {
        let id = topology
            .ask(vip, sport)
            .unwrap_or_else(|err| panic!("connection from port {sport}: {err:#}"));
        answered[id as usize] += 1;
    }
    for (id, root) in roots.iter().enumerate() {
        let status = decap(&topology, id, root, &["status"])
            .ok()
            .expect("status")
            .json()
            .expect("json");
        eprintln!("b{id}: answered {}; status {status}", answered[id]);
        let entry = &status[0];
        assert_eq!(entry["interface"], "eth0", "{status}");
        assert_eq!(entry["attached"], true, "{status}");
        let stripped = entry["decapsulated"].as_u64().expect("decapsulated");
        assert!(
            answered[id] > 0 && stripped >= answered[id],
            "b{id} answered {} connections, decapsulated {stripped}: {status}",
            answered[id]
        );
    }

    let detached = decap(&topology, 0, &roots[0], &["detach", "eth0"])
        .ok()
        .expect("detach")
        .json()
        .expect("json");
    assert_eq!(detached["interface"], "eth0", "{detached}");
    let link = topology.backends[0]
        .ns
        .run(|| lb_userspace::netdev::link("eth0"))
        .expect("netns")
        .expect("eth0");
    assert_eq!(link.xdp, None, "eth0 still runs a program: {link:?}");
    let status = decap(&topology, 0, &roots[0], &["status"])
        .ok()
        .expect("status");
    assert_eq!(status.json().expect("json"), serde_json::json!([]));
    // A flow that the table sends to b0 is no longer answered.
    let client = Topology::client_addr(vip);
    let sport = (31_000..32_000)
        .find(|&sport| topology.v4.predict(client, sport) == 0)
        .expect("a port steered to b0");
    assert!(
        topology.ask(vip, sport).is_err(),
        "b0 answered a tunnelled connection after detach"
    );

    let again = decap(&topology, 0, &roots[0], &["detach", "eth0"]);
    assert_eq!(again.code, Some(3), "{again:?}");
    let error = again.json().expect("json error");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("xlb decap status")),
        "{error}"
    );
}

/// Test that `xlb decap attach` refuses a missing interface (exit 4, naming it and how to
/// list interfaces), a second attach to the same interface (exit 4, naming `detach`) and a
/// missing --address (exit 2), leaving no pins behind.
#[test]
fn decap_attach_refuses_bad_input_naming_the_fix() {
    require_privileges!();
    let topology = without_decap("decapbad", 1);
    let mut lab = Lab::new("decapbadpins").expect("lab");
    let root = lab.pin_dir("b0").expect("pin dir");
    let attach = |dev: &str| {
        decap(
            &topology,
            0,
            &root,
            &["attach", dev, "--address", "198.18.0.10"],
        )
    };
    // The error of an attach refused with exit 4.
    let refused = |attached: &str| {
        let out = attach(attached);
        assert_eq!(out.code, Some(4), "{out:?}");
        out.json().expect("json")["error"].to_string()
    };
    let message = refused("eth9");
    assert!(
        message.contains("`eth9`") && message.contains("ip link"),
        "{message}"
    );
    assert_eq!(std::fs::read_dir(&root).expect("root").count(), 0);

    attach("eth0").ok().expect("first attach");
    let message = refused("eth0");
    assert!(message.contains("xlb decap detach eth0"), "{message}");

    let no_address = decap(&topology, 0, &root, &["attach", "eth0"]);
    assert_eq!(no_address.code, Some(2), "{no_address:?}");
    assert!(no_address.stdout.contains("--address"), "{no_address:?}");
}
