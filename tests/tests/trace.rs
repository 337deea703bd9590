//! `xlb trace` on a running daemon with real TCP traffic: the packets xlb forwards by XDP_TX
//! (which tcpdump on the load balancer never sees) land in a pcap that `tcpdump -r` reads and
//! in the JSON report with their verdict, reason, VIP, backend and flow event; the VIP,
//! backend, reason and client filters keep only what they name; the trace stops at --count or
//! --duration and switches tracing off when it ends.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_common::{Config, config::CONFIG_TRACE, map_names};
use lb_userspace::maps::{Pinned, array};
use serde_json::Value;
use xlb_tests::{
    daemon_lab::{CLIENT, DaemonLab, VIP_NAME, VIP_SPEC},
    netns::run_checked,
    require_privileges,
};

/// How long a trace may take at most, traffic included.
const TRACE_BUDGET: Duration = Duration::from_secs(30);

/// Runs `xlb trace ARGS --output json` in the lb's namespace while the client keeps opening
/// connections to the VIP, until the trace exits; returns its exit code and JSON report.
fn trace_under_traffic(lab: &DaemonLab, args: &[&str]) -> (Option<i32>, Value) {
    let mut command = lab.lb.command(&lab.xlb);
    command
        .arg("trace")
        .args(args)
        .args(["--output", "json", "--pin-path"])
        .arg(&lab.pin_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting xlb trace");
    let deadline = Instant::now() + TRACE_BUDGET;
    let finished = lab
        .connector()
        .session(|session| {
            while child.try_wait().expect("waiting for xlb trace").is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    return false;
                }
                // Failures do not matter here: the trace is what is under test.
                let _ = session.ask();
            }
            true
        })
        .expect("client session");
    assert!(
        finished,
        "xlb trace {args:?} ran longer than {TRACE_BUDGET:?}"
    );
    let out = child.wait_with_output().expect("xlb trace output");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "xlb trace {args:?} printed no JSON ({err}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn packets(report: &Value) -> &Vec<Value> {
    report["packets"].as_array().expect("packets")
}

/// Whether the live config has the trace flag set.
fn tracing_on(lab: &DaemonLab) -> bool {
    let mut maps = Pinned::open(&lab.pin_path, &[map_names::CONFIG]).expect("pins");
    let config: Config = array::<Config>(&mut maps, map_names::CONFIG)
        .expect("config map")
        .get(&0, 0)
        .expect("config");
    config.flags & CONFIG_TRACE != 0
}

/// Test that a trace of the VIP by name stops at --count, with every packet forwarded (`tx`,
/// `forwarded_dsr`) to a backend, from the client to the VIP; that its pcap holds the same
/// number of frames, which `tcpdump -r` reads as the client's TCP to the VIP on port 80; and
/// that tracing is off again afterwards.
#[test]
fn trace_writes_forwarded_packets_to_a_pcap_tcpdump_reads() {
    require_privileges!();
    let lab = DaemonLab::started("trace", 2).expect("lab with xlb run");
    let pcap = lab.dir.join("trace.pcap");
    let pcap_arg = pcap.display().to_string();
    let (code, report) = trace_under_traffic(
        &lab,
        &["--vip", VIP_NAME, "--count", "12", "--write", &pcap_arg],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["stopped"], "count", "{report}");
    let traced = packets(&report);
    assert_eq!(traced.len(), 12, "{report}");
    let backends: Vec<String> = lab.backends.iter().map(|b| b.address.to_string()).collect();
    for packet in traced {
        assert_eq!(packet["verdict"], "tx", "{packet}");
        assert_eq!(packet["reason"], "forwarded_dsr", "{packet}");
        assert_eq!(packet["vip"], VIP_SPEC, "{packet}");
        assert_eq!(packet["vip_name"], VIP_NAME, "{packet}");
        assert!(
            packet["backend"]
                .as_str()
                .is_some_and(|b| backends.iter().any(|a| a == b)),
            "{packet}"
        );
        assert!(packet["event"].is_string(), "{packet}");
        assert_eq!(packet["destination"], "198.18.1.10:80", "{packet}");
        assert!(
            packet["source"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{CLIENT}:"))),
            "{packet}"
        );
    }
    assert!(
        !tracing_on(&lab),
        "the trace flag is still set after the trace"
    );

    let text = run_checked(Command::new("tcpdump").args(["-nn", "-r"]).arg(&pcap))
        .unwrap_or_else(|err| panic!("{err:#}"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    for line in lines {
        assert!(
            line.contains(&format!("{CLIENT}.")) && line.contains("> 198.18.1.10.80: Flags"),
            "not the client's TCP to the VIP: {line}"
        );
    }
}

/// Test that the backend and client filters keep only their packets, that a reason filter
/// keeps only packets of that reason (`not_vip`, passed up) and one no traffic matches yields
/// nothing until --duration stops the trace, and that a backend
/// unknown to the live maps is refused with exit 2, naming the fix.
#[test]
fn trace_filters_keep_only_what_they_name_and_stop_at_the_duration() {
    require_privileges!();
    let lab = DaemonLab::started("tracefilt", 2).expect("lab with xlb run");
    let b1 = lab.backends[1].address.to_string();
    let client = CLIENT.to_string();
    let (code, report) = trace_under_traffic(
        &lab,
        &["--backend", &b1, "--client", &client, "--count", "6"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["stopped"], "count", "{report}");
    assert_eq!(packets(&report).len(), 6, "{report}");
    for packet in packets(&report) {
        assert_eq!(packet["backend"], b1.as_str(), "{packet}");
    }

    // The backends' answers to the daemon's health checks pass up to the lb's own stack.
    let (code, report) = trace_under_traffic(&lab, &["--reason", "not_vip", "--count", "2"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(packets(&report).len(), 2, "{report}");
    for packet in packets(&report) {
        assert_eq!(packet["verdict"], "pass", "{packet}");
        assert_eq!(packet["reason"], "not_vip", "{packet}");
        assert_eq!(packet["vip"], Value::Null, "{packet}");
    }

    let started = Instant::now();
    let (code, report) = trace_under_traffic(
        &lab,
        &[
            "--reason",
            "no_backend",
            "--duration",
            "1.5",
            "--count",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["stopped"], "duration", "{report}");
    assert!(packets(&report).is_empty(), "{report}");
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let (code, report) = trace_under_traffic(
        &lab,
        &["--client", "198.18.0.99", "--duration", "1", "--count", "1"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert!(packets(&report).is_empty(), "{report}");

    let refused = lab
        .xlb(&["trace", "--backend", "198.18.0.99", "--output", "json"])
        .expect("xlb trace");
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stdout.contains("xlb stats"), "{refused:?}");
    let refused = lab
        .xlb(&["trace", "--reason", "bogus", "--output", "json"])
        .expect("xlb trace");
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(refused.stdout.contains("not_vip"), "{refused:?}");
    assert!(!tracing_on(&lab), "a refused trace left the flag set");
}
