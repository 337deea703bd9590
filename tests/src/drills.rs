//! The lab's training drills (`cargo xtask lab --drill NAME`, `xlb-lab --drill NAME`): short
//! scripted stories of the failures xlb exists for, each on a fresh lab of [`crate::lab`]
//! (nginx backends behind the real `xlb run --config` daemon), narrowed to its IPv4 `dsr` VIP.
//! Each prints the commands an operator would type and their output as it goes, checks its own
//! outcome and ends with `drill NAME: PASS` or `drill NAME: FAIL: <why>`; the lab is removed
//! either way.
//!
//! - `one-backend`: the outage xlb was born from. A config sending all of the VIP's traffic to
//!   one server is flagged by `xlb validate` and `xlb plan` (XLB003, exit 1, the outage
//!   banner), forced live with `xlb apply --override XLB003 --allow-warnings`; traffic fires
//!   the skew/dominant alert (daemon log, `xlb_alert`), `xlb stats` shows where it went; the
//!   good config clears the alert.
//! - `one-server`: the outage in disguise. A config with three equal weights whose second
//!   entry carries the first one's MAC (a copy-paste slip) sends two thirds of the flows to one
//!   server: `xlb validate` and `xlb plan` refuse it (XLB005, naming the MAC). Then a
//!   maintenance round: disabling b1 is fine, disabling b2 as well would leave b0 with every
//!   new flow and is refused (exit 1, b0 named) until b1 is back; traffic never fails.
//! - `backend-dies`: one backend's nginx is stopped; the daemon takes it out of the table within
//!   interval×fall (plus slack), every request still succeeds and none reaches it, and only its
//!   flows move (`xlb explain` on a fixed list of flows); nginx comes back and so does it.
//! - `drain`: long rate-limited downloads run through the VIP while the backend serving some of
//!   them is drained (`xlb backend drain`): every download completes, new requests avoid it.
//! - `bad-config`: the running config file is edited into an invalid one; the daemon refuses it
//!   on SIGHUP, the generation stays and traffic is unaffected.
//! - `canary`: `xlb apply --canary`: a config sending everything to b0 (forced past XLB003)
//!   goes live on a slice, and the daemon rolls it back by itself; a good one (b2 weighted
//!   up) promotes itself after its watch; no request fails throughout.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    daemon_lab::VerbOutput,
    lab::{self, Running},
    lab_site::{self, Site},
    netns::Netns,
    topology::{CLIENT_V4, FABRIC_MTU, VIP_V4},
};

/// Every drill, in the order `--drill all` runs them.
pub const NAMES: [&str; 6] = [
    "one-backend",
    "one-server",
    "backend-dies",
    "drain",
    "bad-config",
    "canary",
];

/// The drills' VIP, as `xlb backend` and the metrics spell it.
const VIP_SPEC: &str = "198.18.1.10:80/tcp";
const METRICS_URL: &str = "http://127.0.0.1:9100/metrics";
/// Health checks in the drills: HTTP GET / every 500 ms, out after 2 failures, back after 2.
const INTERVAL: Duration = Duration::from_millis(500);
const FALL: u32 = 2;
const RISE: u32 = 2;
/// The alert window of `one-backend`.
const WINDOW: Duration = Duration::from_secs(2);
/// Extra time for a loaded host: a probe in flight, the daemon's 1 s tick, its apply.
const SLACK: Duration = Duration::from_secs(4);
/// curl processes at once in a burst.
const CONCURRENCY: usize = 4;
const POLL: Duration = Duration::from_millis(100);

/// Runs drill `name` (or every drill for `all`) with the `xlb` binary `xlb`; prints `drill
/// NAME: PASS` or `drill NAME: FAIL: <why>` for each. Returns whether all passed; errors only
/// on an unknown name.
pub fn run(xlb: &Path, name: &str) -> anyhow::Result<bool> {
    let names: Vec<&str> = if name == "all" {
        NAMES.to_vec()
    } else {
        ensure!(
            NAMES.contains(&name),
            "no drill {name:?}: use one of {} or all",
            NAMES.join(", ")
        );
        vec![name]
    };
    let xlb = std::fs::canonicalize(xlb)
        .with_context(|| format!("the xlb binary {} is not there", xlb.display()))?;
    let mut passed = 0;
    let mut verdicts = Vec::new();
    for name in &names {
        let start = Instant::now();
        let outcome = run_one(&xlb, name);
        lab_site::exit_if_interrupted();
        let verdict = match outcome {
            Ok(()) => {
                passed += 1;
                format!("drill {name}: PASS")
            }
            Err(err) => format!("drill {name}: FAIL: {}", one_line(&format!("{err:#}"))),
        };
        println!(
            "\n(drill {name} took {:.1} s, lab included)\n{verdict}",
            start.elapsed().as_secs_f64()
        );
        verdicts.push(verdict);
    }
    if names.len() > 1 {
        println!("\ndrills: {passed} of {} passed", names.len());
        for verdict in &verdicts {
            println!("  {verdict}");
        }
    }
    Ok(passed == names.len())
}

fn one_line(text: &str) -> String {
    let mut line = text.lines().next().unwrap_or_default().to_owned();
    if text.lines().count() > 1 {
        line.push_str(" (...)");
    }
    line
}

/// One drill on a fresh lab, removed afterwards whatever happened; the drill's outcome.
fn run_one(xlb: &Path, name: &str) -> anyhow::Result<()> {
    println!("\n=== drill {name}");
    let mut site = Site::removable()?;
    let running = match lab::start(&mut site, xlb) {
        Ok(running) => running,
        Err(err) => return Err(err.context("building the lab")),
    };
    let namespaces = running.topology.namespaces();
    let pin_path = running.pin_path.clone();
    let mut drill = Drill {
        config_path: site.dir.join("xlb.toml"),
        site,
        running,
        xlb: xlb.to_path_buf(),
    };
    let outcome = drill.narrow().and_then(|()| match name {
        "one-backend" => drill.one_backend(),
        "one-server" => drill.one_server(),
        "backend-dies" => drill.backend_dies(),
        "drain" => drill.drain(),
        "bad-config" => drill.bad_config(),
        "canary" => drill.canary(),
        other => bail!("no drill {other:?}"),
    });
    if outcome.is_err() {
        println!("\ndaemon log (last lines):\n{}", tail(&drill.log(), 15));
    }
    let Drill {
        mut site, running, ..
    } = drill;
    let stopped = lab::stop(&mut site, xlb, &running);
    drop(site);
    outcome?;
    stopped.context("taking the lab down")?;
    let left: Vec<&String> = namespaces
        .iter()
        .filter(|name| Path::new("/run/netns").join(name).exists())
        .collect();
    ensure!(left.is_empty(), "namespaces left after the drill: {left:?}");
    ensure!(
        !pin_path.exists(),
        "pins left after the drill under {}",
        pin_path.display()
    );
    println!("lab: removed (namespaces, pins, processes)");
    Ok(())
}

struct Drill {
    site: Site,
    running: Running,
    xlb: PathBuf,
    config_path: PathBuf,
}

/// One HTTP burst: answers per backend name, failures.
#[derive(Debug, Default)]
struct Burst {
    answered: BTreeMap<String, u64>,
    failed: Vec<String>,
}

impl Burst {
    fn total(&self) -> u64 {
        self.answered.values().sum()
    }
    fn of(&self, name: &str) -> u64 {
        self.answered.get(name).copied().unwrap_or(0)
    }
    fn render(&self) -> String {
        let mut text = String::new();
        for (name, n) in &self.answered {
            let _ = write!(text, "{name}: {n}  ");
        }
        if !self.failed.is_empty() {
            let _ = write!(
                text,
                "FAILED: {} (first: {})",
                self.failed.len(),
                self.failed[0]
            );
        }
        text.trim_end().to_owned()
    }
}

impl Drill {
    fn lb(&self) -> &Netns {
        self.running.topology.lb()
    }

    fn client(&self) -> &Netns {
        &self.running.topology.client
    }

    fn backend_name(&self, address: &str) -> String {
        self.running
            .topology
            .backends
            .iter()
            .find(|h| h.address.to_string() == address)
            .map_or_else(|| address.to_owned(), |h| h.name.clone())
    }

    fn log(&self) -> String {
        lab::daemon_log(&self.site.dir)
    }

    /// The drills' config: only the IPv4 dsr VIP, over the three backends with `weights`,
    /// quick HTTP health checks, and the `[alerts]` table of `one-backend`.
    fn config(&self, weights: [u32; 3]) -> String {
        let mut text = format!(
            "# The xlb lab's drill config.\n[global]\ninterface = \"eth0\"\n\
             xdp_mode = \"native\"\npin_path = \"{}\"\nmetrics_address = \"127.0.0.1:9100\"\n\
             mtu = {FABRIC_MTU}\n\n[alerts]\nwindow_seconds = {}\nmin_new_flows = 20\n\n\
             [[vip]]\nname = \"web-v4\"\naddress = \"{VIP_V4}\"\nport = 80\nprotocol = \"tcp\"\n\
             forwarding = \"dsr\"\n",
            self.running.pin_path.display(),
            WINDOW.as_secs()
        );
        for (host, weight) in self.running.topology.backends.iter().zip(weights) {
            let _ = write!(
                text,
                "\n  [[vip.backend]]\n  address = \"{}\"\n  weight = {weight}\n  mac = \"{}\"\n\
                 \x20   [vip.backend.health]\n    check = \"http\"\n    path = \"/\"\n\
                 \x20   interval_ms = {}\n    timeout_ms = 300\n    rise = {RISE}\n    \
                 fall = {FALL}\n",
                host.address,
                host.mac,
                INTERVAL.as_millis()
            );
        }
        text
    }

    /// Narrows the running lab to the drills' config (one VIP, equal weights) by rewriting
    /// its config file, and waits for the daemon to apply it.
    fn narrow(&mut self) -> anyhow::Result<()> {
        let generation = self.generation()?;
        write_atomically(&self.config_path, &self.config([1, 1, 1]))?;
        wait_for("the daemon to apply the drill config", SLACK * 2, || {
            Ok(self.generation()? > generation)
        })?;
        println!(
            "lab: narrowed to VIP web-v4 {VIP_V4}:80 (dsr) over b0, b1, b2 with equal weights; \
             HTTP health checks every {INTERVAL:?}, fall {FALL}, rise {RISE}\n"
        );
        Ok(())
    }

    /// Runs `xlb ARGS` in the lb namespace; with `pins`, adds `--pin-path`. Prints the
    /// command and its output (at most `lines` lines) when `lines` > 0.
    fn xlb(&self, args: &[&str], pins: bool, lines: usize) -> anyhow::Result<VerbOutput> {
        let mut command = self.lb().command(&self.xlb);
        command.args(args).stdin(Stdio::null()).env("NO_COLOR", "1");
        let mut shown = format!("$ xlb {}", args.join(" "));
        if pins {
            command.arg("--pin-path").arg(&self.running.pin_path);
            let _ = write!(shown, " --pin-path {}", self.running.pin_path.display());
        }
        let out = command
            .output()
            .with_context(|| format!("running {command:?}"))?;
        let out = VerbOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if lines > 0 {
            let text = format!("{}{}", out.stdout, out.stderr);
            println!("{shown}\n{}", head(&text, lines));
            if out.code != Some(0) {
                println!("(exit {})", out.code.map_or("?".into(), |c| c.to_string()));
            }
        }
        Ok(out)
    }

    fn generation(&self) -> anyhow::Result<u64> {
        let status = self
            .xlb(&["status", "--output", "json"], true, 0)?
            .ok()?
            .json()?;
        status["generation"]
            .as_u64()
            .with_context(|| format!("no generation in {status}"))
    }

    /// `xlb stats --output json`: new flows per backend name, and each backend's row.
    fn stats(&self) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let stats = self
            .xlb(&["stats", "--output", "json"], true, 0)?
            .ok()?
            .json()?;
        let mut rows = BTreeMap::new();
        for vip in stats["vips"].as_array().into_iter().flatten() {
            if vip["vip"] != VIP_SPEC {
                continue;
            }
            for row in vip["backends"].as_array().into_iter().flatten() {
                let address = row["address"].as_str().unwrap_or_default();
                rows.insert(self.backend_name(address), row.clone());
            }
        }
        ensure!(!rows.is_empty(), "no backends of {VIP_SPEC} in {stats}");
        Ok(rows)
    }

    fn new_flows(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(self
            .stats()?
            .into_iter()
            .map(|(name, row)| (name, row["new_flows"].as_u64().unwrap_or(0)))
            .collect())
    }

    /// Whether `name` takes new flows (active, with slots).
    fn in_table(&self, name: &str) -> anyhow::Result<bool> {
        let rows = self.stats()?;
        let row = rows.get(name).context("no such backend")?;
        Ok(row["state"] == "active" && row["expected_share"].as_f64().unwrap_or(0.0) > 0.0)
    }

    /// The `xlb_alert` samples of the VIP that are 1: their kinds.
    fn firing(&self) -> anyhow::Result<Vec<String>> {
        let body = self.metrics()?;
        Ok(alert_lines(&body)
            .into_iter()
            .filter(|line| line.ends_with(" 1"))
            .filter_map(|line| {
                let kind = line.split("kind=\"").nth(1)?.split('"').next()?;
                Some(kind.to_owned())
            })
            .collect())
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let out = self
            .lb()
            .command("curl")
            .args(["-sS", "--max-time", "5", METRICS_URL])
            .stdin(Stdio::null())
            .output()
            .context("curl for the metrics")?;
        ensure!(
            out.status.success(),
            "scraping {METRICS_URL}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `requests` HTTP requests to the VIP, [`CONCURRENCY`] at a time, each a new connection.
    fn burst(&self, requests: usize) -> Burst {
        let url = lab::url(IpAddr::V4(VIP_V4));
        let client = self.client();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let burst = std::sync::Mutex::new(Burst::default());
        std::thread::scope(|scope| {
            for _ in 0..CONCURRENCY {
                scope.spawn(|| {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                        let answer = lab::curl(client, &url, &["--max-time", "3"]);
                        let mut burst = burst.lock().unwrap_or_else(|p| p.into_inner());
                        match answer {
                            Ok(name) => *burst.answered.entry(name).or_default() += 1,
                            Err(err) => burst.failed.push(format!("{err:#}")),
                        }
                    }
                });
            }
        });
        burst.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// A burst, shown as the operator's loop of curls.
    fn show_burst(&self, requests: usize, why: &str) -> Burst {
        let burst = self.burst(requests);
        println!(
            "$ for i in $(seq {requests}); do ip netns exec {} curl -s http://{VIP_V4}/; done \
             | sort | uniq -c   # {why}\n  {}",
            self.client().name,
            burst.render()
        );
        burst
    }

    /// The daemon log from byte `from` on, only lines containing one of `needles`.
    fn log_lines(&self, from: usize, needles: &[&str]) -> String {
        let log = self.log();
        let text = log.get(from..).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| needles.iter().any(|n| line.contains(n)))
            .collect();
        lines.join("\n")
    }

    // ---- the drills ----

    fn one_backend(&mut self) -> anyhow::Result<()> {
        println!(
            "The outage xlb was born from: a config that sends every request to one server.\n"
        );
        let forced = self.site.dir.join("all-on-b0.toml");
        write_atomically(&forced, &self.config([1, 0, 0]))?;
        let forced = path_str(&forced)?;
        let config = path_str(&self.config_path)?.to_owned();
        println!("The new config gives b0 weight 1, b1 and b2 weight 0. Check it first:");
        let validate = self.xlb(&["validate", forced], false, 12)?;
        ensure!(
            validate.refused_with(&["XLB003"], &[]),
            "xlb validate did not flag XLB003 with exit 1 (exit {:?})",
            validate.code
        );
        println!();
        let plan = self.xlb(&["plan", forced], false, 8)?;
        let plan_text = format!("{}{}", plan.stdout, plan.stderr);
        ensure!(
            plan.code == Some(1) && plan_text.contains("OUTAGE") && plan_text.contains("XLB003"),
            "xlb plan did not flag it (exit {:?}, banner {})",
            plan.code,
            plan_text.contains("OUTAGE")
        );
        println!("\nWithout an override xlb refuses it:");
        let refused = self.xlb(&["apply", forced], false, 3)?;
        ensure!(
            refused.code != Some(0),
            "xlb apply took XLB003 without --override"
        );
        println!(
            "\nThe drill forces it live anyway, as someone in a hurry would: into the daemon's \
             own config (the daemon owns the pins and refuses any other file; on its own it \
             refuses to reload this one), then `xlb apply` with the override:"
        );
        write_atomically(&self.config_path, &self.config([1, 0, 0]))?;
        self.xlb(
            &["apply", &config, "--override", "XLB003", "--allow-warnings"],
            false,
            6,
        )?
        .ok()?;

        let before = self.new_flows()?;
        let log_from = self.log().len();
        println!("\nTraffic, until the daemon alerts (window {WINDOW:?}, from 20 new flows on):");
        let budget = WINDOW + Duration::from_secs(1) + SLACK * 2;
        let start = Instant::now();
        let mut fired = Vec::new();
        let mut sent = 0;
        let mut tally = Burst::default();
        while start.elapsed() < budget {
            let burst = self.burst(20);
            sent += 20;
            ensure!(
                burst.failed.is_empty(),
                "requests failed while forced: {}",
                burst.render()
            );
            for (name, n) in burst.answered {
                *tally.answered.entry(name).or_default() += n;
            }
            fired = self.firing()?;
            if sent >= 40 && !fired.is_empty() {
                break;
            }
        }
        ensure!(
            !fired.is_empty(),
            "no skew or dominant alert within {budget:?} and {sent} requests"
        );
        println!(
            "  {sent} requests answered by {}; the alert fired {:.1} s in",
            tally.render(),
            start.elapsed().as_secs_f64()
        );
        let after = self.new_flows()?;
        println!("\nThe daemon's log:");
        let alert_log = self.log_lines(log_from, &["ALERT"]);
        println!("{}", head(&alert_log, 4));
        println!(
            "\n$ ip netns exec {} curl -s {METRICS_URL} | grep '^xlb_alert'",
            self.lb().name
        );
        println!("{}", alert_lines(&self.metrics()?).join("\n"));
        println!();
        self.xlb(&["stats"], true, 12)?.ok()?;
        let delta: BTreeMap<&String, u64> = after
            .iter()
            .map(|(name, n)| (name, n - before.get(name).copied().unwrap_or(0)))
            .collect();
        let total: u64 = delta.values().sum();
        let b0 = delta.get(&"b0".to_owned()).copied().unwrap_or(0);
        let share = if total == 0 {
            0.0
        } else {
            b0 as f64 / total as f64
        };
        println!(
            "\nWhile forced, b0 took {b0} of {total} new flows ({:.1}%): the overload that \
             crashed the server.",
            share * 100.0
        );
        ensure!(
            alert_log.contains("ALERT"),
            "the daemon logged no ALERT line"
        );
        ensure!(
            total >= 40 && share >= 0.99,
            "stats show {b0} of {total} new flows on b0 while forced, not ~100%"
        );

        println!(
            "\nThe fix: the good config back in the daemon's file and applied, then watch the alert clear."
        );
        write_atomically(&self.config_path, &self.config([1, 1, 1]))?;
        self.xlb(&["apply", &config], false, 6)?.ok()?;
        let log_from = self.log().len();
        let budget = WINDOW * 2 + Duration::from_secs(1) + SLACK * 2;
        let start = Instant::now();
        let mut cleared = false;
        while start.elapsed() < budget {
            let burst = self.burst(20);
            ensure!(
                burst.failed.is_empty(),
                "requests failed after the fix: {}",
                burst.render()
            );
            if self.firing()?.is_empty() {
                cleared = true;
                break;
            }
        }
        ensure!(cleared, "the alert still fires {budget:?} after the fix");
        println!(
            "  cleared {:.1} s after the fix; the daemon's log:\n{}",
            start.elapsed().as_secs_f64(),
            head(&self.log_lines(log_from, &["alert cleared"]), 4)
        );
        self.show_burst(60, "spread again");
        Ok(())
    }

    fn backend_dies(&mut self) -> anyhow::Result<()> {
        println!("A backend's server dies. Watch xlb take it out, then put it back.\n");
        let victim = 1;
        let name = self.running.topology.backends[victim].name.clone();
        let flows: Vec<String> = (0..48)
            .map(|i| format!("{CLIENT_V4}:{}", 42000 + i))
            .collect();
        println!("Where a fixed list of 48 client flows goes (one shown in full):");
        self.xlb(
            &["explain", &flows[0], &format!("{VIP_V4}:80"), "tcp"],
            true,
            12,
        )?
        .ok()?;
        let before = self.assignments(&flows)?;
        println!("  {}", render_assignments(&before));
        let burst = self.show_burst(30, "all three answer");
        ensure!(
            burst.failed.is_empty(),
            "requests failed before: {}",
            burst.render()
        );

        let pid = self.running.servers[victim];
        let log_from = self.log().len();
        println!("\n$ kill {pid}   # the nginx of {name} dies");
        self.running.servers.retain(|&p| p != pid);
        self.site.stop_nginx(pid)?;
        let killed = Instant::now();
        let within = INTERVAL * FALL + SLACK;
        wait_for(&format!("{name} to leave the table"), within, || {
            Ok(!self.in_table(&name)?)
        })?;
        println!(
            "{name} left the table {:.1} s after its nginx died (interval × fall = {:?}, \
             allowed {within:?}). The daemon's log:\n{}",
            killed.elapsed().as_secs_f64(),
            INTERVAL * FALL,
            head(&self.log_lines(log_from, &["backend down"]), 3)
        );
        ensure!(
            killed.elapsed() <= within,
            "{name} left the table only after {:?}",
            killed.elapsed()
        );
        self.xlb(&["stats"], true, 12)?.ok()?;
        let burst = self.clean_burst(60, &format!("with {name} down (none may reach it)"))?;
        ensure!(
            burst.of(&name) == 0,
            "{name} answered while down: {}",
            burst.render()
        );

        let during = self.assignments(&flows)?;
        println!(
            "\nThe same 48 flows now (explain):\n  {}",
            render_assignments(&during)
        );
        let mut moved_others = Vec::new();
        let mut moved_victims = 0;
        for ((flow, was), now) in flows.iter().zip(&before).zip(&during) {
            if *was == name {
                ensure!(*now != name, "flow {flow} still goes to the dead {name}");
                moved_victims += 1;
            } else if was != now {
                moved_others.push(format!("{flow}: {was} -> {now}"));
            }
        }
        println!(
            "  {moved_victims} flows of {name} moved; flows of the other backends that moved: {}",
            moved_others.len()
        );
        ensure!(
            moved_others.is_empty(),
            "flows of healthy backends moved: {}",
            moved_others.join(", ")
        );

        println!("\n$ (restart the nginx of {name})");
        let log_from = self.log().len();
        let host = self.running.topology.backends[victim].clone();
        let pid = lab::start_nginx(&mut self.site, &host)?;
        self.running.servers.push(pid);
        lab::wait_for_nginx(&self.site, &host, pid)?;
        let restarted = Instant::now();
        let within = INTERVAL * RISE + SLACK;
        wait_for(&format!("{name} to come back"), within, || {
            self.in_table(&name)
        })?;
        println!(
            "{name} was back {:.1} s after its nginx restarted. The daemon's log:\n{}",
            restarted.elapsed().as_secs_f64(),
            head(&self.log_lines(log_from, &["backend up"]), 3)
        );
        let burst = self.show_burst(60, &format!("{name} answers again"));
        ensure!(
            burst.failed.is_empty() && burst.of(&name) > 0,
            "after the restart: {}",
            burst.render()
        );
        let after = self.assignments(&flows)?;
        ensure!(
            after == before,
            "the flows did not return to where they were before {name} died"
        );
        println!("  every one of the 48 flows is back where it was before {name} died");
        Ok(())
    }

    /// Which backend `xlb explain` says each flow's new connection gets.
    fn assignments(&self, flows: &[String]) -> anyhow::Result<Vec<String>> {
        let vip = format!("{VIP_V4}:80");
        flows
            .iter()
            .map(|flow| {
                let out = self
                    .xlb(&["explain", flow, &vip, "tcp", "--output", "json"], true, 0)?
                    .ok()?
                    .json()?;
                let address = out["syn"]["backend"]["address"]
                    .as_str()
                    .or_else(|| out["table"]["backend"]["address"].as_str())
                    .with_context(|| format!("explain {flow}: no backend in {out}"))?;
                Ok(self.backend_name(address))
            })
            .collect()
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        println!(
            "Taking a backend out for maintenance without cutting anyone off: long downloads \
             run while it is drained.\n"
        );
        let files = self.site.dir.join("files");
        std::fs::create_dir_all(&files)?;
        const SIZE: usize = 1_500_000;
        std::fs::write(files.join("big.bin"), vec![b'x'; SIZE])?;
        let downloads = 9;
        let url = format!("http://{VIP_V4}/files/big.bin");
        println!(
            "$ for i in $(seq {downloads}); do ip netns exec {} curl -s -D head$i -o \
             body$i {url} & done   # {SIZE} bytes each; nginx sends 300 KB/s: ~5 s",
            self.client().name
        );
        let mut children: Vec<(Child, PathBuf, PathBuf)> = Vec::new();
        for i in 0..downloads {
            let head = self.site.dir.join(format!("head{i}"));
            let body = self.site.dir.join(format!("body{i}"));
            let mut command = self.client().command("curl");
            command
                .args(["-sS", "--max-time", "40", "-D"])
                .arg(&head)
                .arg("-o")
                .arg(&body)
                .arg(&url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            lab_site::die_with_parent(&mut command, libc::SIGKILL);
            children.push((command.spawn().context("starting curl")?, head, body));
        }
        let result = self.drain_with(&mut children, SIZE);
        for (child, _, _) in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    fn drain_with(
        &mut self,
        children: &mut [(Child, PathBuf, PathBuf)],
        size: usize,
    ) -> anyhow::Result<()> {
        let mut served = vec![String::new(); children.len()];
        wait_for("every download to start", SLACK * 2, || {
            for (i, (_, head, _)) in children.iter().enumerate() {
                let text = std::fs::read_to_string(head).unwrap_or_default();
                served[i] = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Backend: "))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
            }
            Ok(served.iter().all(|s| !s.is_empty()))
        })?;
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for name in &served {
            *per.entry(name).or_default() += 1;
        }
        let (drained, count) = per
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(name, n)| (name.to_string(), *n))
            .context("no downloads")?;
        println!("downloads per backend (their X-Backend header): {per:?}");
        let host = self
            .running
            .topology
            .backends
            .iter()
            .find(|h| h.name == drained)
            .context("no such backend")?
            .clone();
        println!("\n{drained} serves {count} of them. Drain it:");
        self.xlb(
            &["backend", "drain", VIP_SPEC, &host.address.to_string()],
            true,
            4,
        )?
        .ok()?;
        let drained_at = Instant::now();
        let unfinished: Vec<usize> = (0..children.len())
            .filter(|&i| served[i] == drained)
            .filter(|&i| std::fs::metadata(&children[i].2).map_or(0, |m| m.len() as usize) < size)
            .collect();
        ensure!(
            !unfinished.is_empty(),
            "every download from {drained} finished before the drain: too fast to test"
        );
        self.xlb(&["stats"], true, 10)?.ok()?;
        let burst =
            self.clean_burst(60, &format!("after draining {drained} (new ones avoid it)"))?;
        ensure!(
            burst.of(&drained) == 0,
            "the drained {drained} got new requests: {}",
            burst.render()
        );

        println!("\nThe downloads, as they finish:");
        let mut problems = Vec::new();
        let mut left: Vec<usize> = (0..children.len()).collect();
        let deadline = Instant::now() + Duration::from_secs(40);
        while !left.is_empty() {
            ensure!(
                Instant::now() < deadline,
                "downloads {left:?} still running 40 s after the drain"
            );
            let mut still = Vec::new();
            for i in left {
                let (child, _, body) = &mut children[i];
                let Some(status) = child.try_wait().context("waiting for curl")? else {
                    still.push(i);
                    continue;
                };
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                }
                let got = std::fs::metadata(&*body).map_or(0, |m| m.len() as usize);
                let mark = if served[i] == drained {
                    "  (on the drained backend)"
                } else {
                    ""
                };
                println!(
                    "  download {i} from {}: {got} of {size} bytes, curl {status}, {:.1} s \
                     after the drain{mark}",
                    served[i],
                    drained_at.elapsed().as_secs_f64()
                );
                if !status.success() || got != size {
                    problems.push(format!(
                        "download {i} from {}: {got} of {size} bytes, {status} {}",
                        served[i],
                        err.trim()
                    ));
                }
            }
            left = still;
            std::thread::sleep(POLL);
        }
        ensure!(problems.is_empty(), "{}", problems.join("; "));
        println!(
            "every download completed, the {} on {drained} that were mid-transfer when it was \
             drained included",
            unfinished.len()
        );
        Ok(())
    }

    fn one_server(&mut self) -> anyhow::Result<()> {
        println!(
            "The outage in disguise: weights that look even, but two entries are one server.\n"
        );
        let hosts = &self.running.topology.backends;
        let (b0, b1, b2) = (hosts[0].clone(), hosts[1].clone(), hosts[2].clone());
        let slipped = self.site.dir.join("copied-mac.toml");
        let from = format!("mac = \"{}\"", b1.mac);
        let text = self.config([1, 1, 1]);
        ensure!(text.contains(&from), "no {from} in the config");
        write_atomically(
            &slipped,
            &text.replacen(&from, &format!("mac = \"{}\"", b0.mac), 1),
        )?;
        let slipped = path_str(&slipped)?;
        println!(
            "b1's entry got b0's MAC ({}) by a copy-paste slip. Check it first:",
            b0.mac
        );
        let validate = self.xlb(&["validate", slipped], false, 12)?;
        ensure!(
            validate.refused_with(&["XLB005", &b1.address.to_string()], &[]),
            "xlb validate did not flag the shared MAC with XLB005 (exit {:?})",
            validate.code
        );
        println!();
        let plan = self.xlb(&["plan", slipped], false, 6)?;
        ensure!(
            plan.code == Some(1) && !plan.stdout.contains("makes this live"),
            "xlb plan did not refuse it (exit {:?})",
            plan.code
        );
        println!(
            "
A maintenance round: take b1 and b2 out, one after the other."
        );
        let vip = VIP_SPEC;
        let (a1, a2) = (b1.address.to_string(), b2.address.to_string());
        self.xlb(&["backend", "disable", vip, &a1], true, 2)?.ok()?;
        let refused = self.xlb(&["backend", "disable", vip, &a2], true, 4)?;
        ensure!(
            refused.refused_with(&[], &["refused", &b0.address.to_string()]),
            "disabling b2 too was not refused naming b0 (exit {:?})",
            refused.code
        );
        let burst = self.show_burst(30, "while b1 is out");
        ensure!(
            burst.failed.is_empty()
                && burst.of("b0") > 0
                && burst.of("b2") > 0
                && burst.of("b1") == 0,
            "traffic with b1 disabled: {}",
            burst.render()
        );
        println!(
            "
The right order: b1 back first, then b2 out."
        );
        self.xlb(&["backend", "enable", vip, &a1], true, 2)?.ok()?;
        self.xlb(&["backend", "disable", vip, &a2], true, 2)?.ok()?;
        let audit = self.xlb(&["audit"], true, 6)?;
        ensure!(
            !audit.stdout.contains("outage"),
            "xlb audit reports an outage with two servers in: {}",
            audit.stdout
        );
        let burst = self.show_burst(30, "while b2 is out");
        ensure!(
            burst.failed.is_empty() && burst.of("b2") == 0,
            "traffic with b2 disabled: {}",
            burst.render()
        );
        self.xlb(&["backend", "enable", vip, &a2], true, 2)?.ok()?;
        Ok(())
    }

    fn bad_config(&mut self) -> anyhow::Result<()> {
        println!("Someone edits the live config file and breaks it. xlb must keep running.\n");
        self.xlb(&["status"], true, 8)?.ok()?;
        let generation = self.generation()?;
        let burst = self.show_burst(30, "before");
        ensure!(
            burst.failed.is_empty(),
            "requests failed before: {}",
            burst.render()
        );

        let good = std::fs::read_to_string(&self.config_path)?;
        let from = format!(
            "address = \"{}\"",
            self.running.topology.backends[2].address
        );
        let to = format!("address = \"{}", self.running.topology.backends[2].address);
        ensure!(good.contains(&from), "no {from} in the config");
        let bad = good.replacen(&from, &to, 1);
        let path = path_str(&self.config_path)?.to_owned();
        println!("\n$ sed -i 's/{from}/{to}/' {path}   # a closing quote lost in an edit");
        let log_from = self.log().len();
        write_atomically(&self.config_path, &bad)?;
        let validate = self.xlb(&["validate", &path], false, 8)?;
        ensure!(
            validate.refused_with(&[], &[]),
            "xlb validate did not reject the broken file (exit {:?})",
            validate.code
        );
        let pid = self.running.daemon;
        println!("\n$ kill -HUP {pid}   # reload");
        // SAFETY: signalling the daemon this lab started.
        if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
            bail!("kill -HUP {pid}: {}", std::io::Error::last_os_error());
        }
        let refusal = "the new config is invalid; keeping the running one";
        wait_for("the daemon to refuse the file", SLACK, || {
            Ok(self.log_lines(log_from, &[refusal]).contains(refusal))
        })?;
        println!(
            "The daemon's log:\n{}",
            head(
                &self.log_lines(log_from, &["reloading", "invalid", "error", "ERROR"]),
                6
            )
        );
        println!();
        self.xlb(&["status"], true, 8)?.ok()?;
        let now = self.generation()?;
        ensure!(
            now == generation,
            "the generation changed from {generation} to {now}"
        );
        println!("generation {now}: unchanged");
        let burst = self.show_burst(60, "traffic unaffected");
        ensure!(
            burst.failed.is_empty()
                && burst.total() == 60
                && ["b0", "b1", "b2"].iter().all(|b| burst.of(b) > 0),
            "traffic after the refused reload: {}",
            burst.render()
        );
        println!("\nThe fix: put the quote back; the daemon notices the file and reloads.");
        write_atomically(&self.config_path, &good)?;
        self.xlb(&["validate", &path], false, 3)?.ok()?;
        Ok(())
    }
}

/// The `xlb_alert` lines of the drills' VIP in a metrics page.
fn alert_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter(|line| line.starts_with("xlb_alert{") && line.contains(VIP_SPEC))
        .map(str::to_owned)
        .collect()
}

fn render_assignments(names: &[String]) -> String {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for name in names {
        *per.entry(name).or_default() += 1;
    }
    per.iter()
        .map(|(name, n)| format!("{name}: {n} flows"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drill {
    /// Whether `xlb status` shows a canary on the drills' VIP.
    fn canary_running(&self) -> anyhow::Result<bool> {
        let status = self
            .xlb(&["status", "--output", "json"], true, 0)?
            .ok()?
            .json()?;
        Ok(status["vips"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|vip| vip["vip"] == VIP_SPEC && !vip["canary"].is_null()))
    }

    /// Waits up to `within` for the canary to end, shows what the daemon logged about it
    /// since byte `log_from`, and checks that it said `outcome`.
    fn canary_ends(&self, log_from: usize, within: Duration, outcome: &str) -> anyhow::Result<()> {
        wait_for(&format!("\"{outcome}\""), within, || {
            Ok(!self.canary_running()?)
        })?;
        let said = self.log_lines(log_from, &["canary"]);
        println!("The daemon's log:\n{}", head(&said, 4));
        ensure!(
            said.contains(outcome),
            "the daemon did not say {outcome:?}:\n{said}"
        );
        Ok(())
    }

    /// A burst that must all succeed, shown; `why` says when.
    fn clean_burst(&self, requests: usize, why: &str) -> anyhow::Result<Burst> {
        let burst = self.show_burst(requests, why);
        ensure!(
            burst.failed.is_empty() && burst.total() == requests as u64,
            "requests failed {why}: {}",
            burst.render()
        );
        Ok(burst)
    }

    fn canary(&mut self) -> anyhow::Result<()> {
        println!(
            "A canary apply: a new config takes a slice of new flows first, watched by the \
             daemon, and undoes itself on an alarm.\n"
        );
        self.clean_burst(30, "before")?;
        let bad = self.site.dir.join("all-on-b0.toml");
        write_atomically(&bad, &self.config([1, 0, 0]))?;
        let bad = path_str(&bad)?.to_owned();
        println!("\nThe bad config sends everything to b0. What would a 20% canary move?");
        let plan = self.xlb(
            &["plan", &bad, "--canary", "20", "--override", "XLB003"],
            false,
            0,
        )?;
        let section = plan
            .stdout
            .find("\ncanary ")
            .map_or("", |at| &plan.stdout[at + 1..]);
        println!(
            "$ xlb plan {bad} --canary 20 --override XLB003\n{}",
            head(section, 4)
        );
        ensure!(
            plan.stdout.contains("canary 20%") && plan.stdout.contains("of all new flows move"),
            "xlb plan --canary said nothing of the slice:\n{}",
            plan.stdout
        );
        println!("\nForced live on a 20% slice for at most 20 s:");
        let log_from = self.log().len();
        self.xlb(
            &[
                "apply",
                &bad,
                "--canary",
                "20",
                "--watch",
                "20s",
                "--override",
                "XLB003",
                "--allow-warnings",
            ],
            true,
            4,
        )?
        .ok()?;
        self.canary_ends(log_from, Duration::from_secs(20), "canary rolled back")?;
        let burst = self.clean_burst(60, "after the rollback")?;
        ensure!(
            ["b0", "b1", "b2"].iter().all(|b| burst.of(b) > 0),
            "after the rollback not every backend answers: {}",
            burst.render()
        );

        let good_text = self.config([1, 1, 2]);
        let good = self.site.dir.join("b2-heavier.toml");
        write_atomically(&good, &good_text)?;
        let good = path_str(&good)?.to_owned();
        println!("\nA good change (b2 weight 2) on a 30% slice, watched 3 s:");
        let log_from = self.log().len();
        self.xlb(
            &["apply", &good, "--canary", "30", "--watch", "3s"],
            true,
            4,
        )?
        .ok()?;
        self.xlb(&["status"], true, 11)?.ok()?;
        self.clean_burst(60, "during the canary")?;
        self.canary_ends(log_from, Duration::from_secs(3) + SLACK, "canary promoted")?;
        ensure!(
            std::fs::read_to_string(&self.config_path)? == good_text,
            "the promoted config is not the daemon's config file"
        );
        self.clean_burst(60, "after the promotion")?;
        let metrics = self.metrics()?;
        let lines: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("xlb_canary_promotions") || l.contains("concentrated"))
            .collect();
        println!(
            "\n$ curl -s {METRICS_URL} | grep xlb_canary_\n  {}",
            lines.join("\n  ")
        );
        Ok(())
    }
}

/// Polls `done` every [`POLL`] until it says yes, or fails after `timeout`.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let last = done();
        if matches!(last, Ok(true)) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!("waited {timeout:?} for {what} (last check: {last:?})");
        }
        std::thread::sleep(POLL);
    }
}

/// At most `lines` lines of `text`, indented, with a note of how many were left out.
fn head(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let mut out: Vec<String> = all.iter().take(lines).map(|l| format!("  {l}")).collect();
    if all.len() > lines {
        out.push(format!("  ... ({} more lines)", all.len() - lines));
    }
    out.join("\n")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, text).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))
}
