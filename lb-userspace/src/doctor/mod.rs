//! `xlb doctor`: checks this host against what xlb needs and every trap we know of, on the
//! load balancer or (with `--backend`) on a backend. The checks are data: one table per role
//! ([`lb::CHECKS`], [`backend::CHECKS`]), each entry a small function returning typed
//! findings, each finding with what is wrong, why it matters and the command that fixes it.

pub mod backend;
pub mod host;
pub mod lb;

use std::{net::IpAddr, path::PathBuf};

use serde::Serialize;

use crate::exit;

/// What to check: this host as the load balancer (its config, interface and pins), or as a
/// backend serving `vips`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The load balancer's config.
    pub config: Option<PathBuf>,
    /// The interface (default: the config's); required for a backend.
    pub interface: Option<String>,
    /// The pins to check against the attachment (default: the config's, else the default).
    pub pin_path: Option<PathBuf>,
    /// Check this host as a backend.
    pub backend: bool,
    /// A backend's VIPs.
    pub vips: Vec<IpAddr>,
    /// xlb reaches the backend through `ipip` tunnels.
    pub ipip: bool,
    /// How long to watch xdp_tx_errors for growth, in seconds.
    pub sample: f64,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Worth knowing; xlb works.
    Warning,
    /// Traffic is or will be lost or mis-steered: `xlb doctor` exits 1.
    Problem,
    /// Does not apply here (e.g. no `ipip` VIP).
    Skipped,
}

/// One finding of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's name, e.g. `veth_peer`.
    pub check: &'static str,
    pub status: Status,
    /// What was found (what is wrong, for a problem).
    pub what: String,
    /// Why it matters; empty when nothing is wrong.
    pub why: String,
    /// The command that fixes it, naming the real interface or address.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, what: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            what: what.into(),
            why: String::new(),
            fix: None,
        }
    }

    pub fn skipped(check: &'static str, what: impl Into<String>) -> Finding {
        Finding {
            status: Status::Skipped,
            ..Finding::ok(check, what)
        }
    }

    pub fn problem(
        check: &'static str,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Problem,
            what: what.into(),
            why: why.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn warning(
        check: &'static str,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Warning,
            what: what.into(),
            why: why.into(),
            fix,
        }
    }
}

/// A check: its name and the function that makes its findings.
pub struct Check<C> {
    pub name: &'static str,
    pub run: fn(&C) -> Vec<Finding>,
}

/// Runs every check of `table` on `context`.
pub fn run_checks<C>(table: &[Check<C>], context: &C) -> Vec<Finding> {
    table
        .iter()
        .flat_map(|check| {
            let findings = (check.run)(context);
            debug_assert!(findings.iter().all(|f| f.check == check.name));
            findings
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// `load_balancer` or `backend`.
    pub role: &'static str,
    pub problems: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

/// Runs every check of the role `options` asks for.
pub fn check(options: &Options) -> anyhow::Result<Report> {
    let (role, findings) = if options.backend {
        let context = backend::Context::from_options(options)?;
        ("backend", run_checks(backend::CHECKS, &context))
    } else {
        let context = lb::Context::from_options(options)?;
        ("load_balancer", run_checks(lb::CHECKS, &context))
    };
    let count = |status| findings.iter().filter(|f| f.status == status).count();
    Ok(Report {
        role,
        problems: count(Status::Problem),
        warnings: count(Status::Warning),
        findings,
    })
}

impl Report {
    /// `xlb doctor`'s exit code: 1 on any problem.
    pub fn code(&self) -> u8 {
        if self.problems > 0 {
            exit::INVALID
        } else {
            exit::OK
        }
    }
}

/// What `xlb doctor` prints.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for finding in &report.findings {
        let mark = match finding.status {
            Status::Ok => "ok     ",
            Status::Warning => "WARN   ",
            Status::Problem => "PROBLEM",
            Status::Skipped => "skip   ",
        };
        out += &format!("{mark} {:<16} {}\n", finding.check, finding.what);
        if !finding.why.is_empty() {
            out += &format!("        {:<16} why: {}\n", "", finding.why);
        }
        if let Some(fix) = finding.fix.as_deref().filter(|fix| !fix.is_empty()) {
            out += &format!("        {:<16} fix: {fix}\n", "");
        }
    }
    out += &format!(
        "{}: {} problems, {} warnings\n",
        report.role.replace('_', " "),
        report.problems,
        report.warnings
    );
    out
}
