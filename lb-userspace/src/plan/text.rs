//! The text report of `xlb plan`: a header, the warnings, then a section per VIP with a table
//! of its backends (`+` added, `-` removed, `~` changed) and a summary.

use std::fmt::Write as _;

use super::{BackendPlan, Change, FieldChange, Outage, PlanReport, VipPlan};
use crate::{config::rules, exit, validate::plural};

pub(super) fn render(report: &PlanReport) -> String {
    if !report.valid {
        return refused(report);
    }
    let mut out = format!("xlb plan {}\n", report.file);
    if let Some(live) = &report.live {
        if live.loaded {
            let _ = writeln!(
                out,
                "live:   xlb at {}, generation {}",
                live.pin_path,
                live.generation.unwrap_or(0)
            );
        } else {
            let _ = writeln!(
                out,
                "live:   nothing is loaded at {}: planning against an empty state, so \
                 everything is added",
                live.pin_path
            );
        }
        let config = &live.config_capacity;
        let _ = writeln!(
            out,
            "capacity: {} VIPs x {} backends, tables of up to {} slots: {}{}",
            config.vips,
            config.backends_per_vip,
            config.table_slots,
            live.memory,
            if live.loaded && live.capacity != *config {
                format!(
                    "; the running program holds {} VIPs x {} backends, {}-slot tables: the \
                     config's capacity takes effect when xlb restarts (`xlb run`; README, \
                     \"Capacity\")",
                    live.capacity.vips, live.capacity.backends_per_vip, live.capacity.table_slots
                )
            } else {
                String::new()
            }
        );
        if let Some(sample) = &report.sample {
            let _ = writeln!(
                out,
                "kernel: {} new flows per VIP (seed {:#x}) through a scratch copy of the XDP \
                 program ({} VIPs x {} backends, {}-slot tables); the running xlb is not \
                 touched",
                sample.flows,
                sample.seed,
                live.capacity.vips,
                live.capacity.backends_per_vip,
                live.capacity.table_slots
            );
        }
    }
    if !report.diagnostics.is_empty() {
        let _ = writeln!(
            out,
            "\n!! {}: the config is valid, but read {} before applying",
            plural(report.warnings, "WARNING"),
            if report.warnings == 1 { "it" } else { "them" }
        );
        for diagnostic in &report.diagnostics {
            for line in diagnostic.to_string().lines() {
                let _ = writeln!(out, "   {line}");
            }
        }
    }
    if !report.global.is_empty() {
        out.push_str("\n~ global\n");
        field_changes(&mut out, &report.global);
    }
    for vip in &report.vips {
        out.push('\n');
        vip_section(&mut out, vip);
    }
    if let Some(canary) = &report.canary {
        out += &crate::canary::render_plan(canary);
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\nsummary: VIPs {} added, {} removed, {} changed, {} unchanged; backends {} added, {} \
         removed, {} changed; the kernel agreed with the prediction on {} of {} sample flows",
        s.vips_added,
        s.vips_removed,
        s.vips_changed,
        s.vips_unchanged,
        s.backends_added,
        s.backends_removed,
        s.backends_changed,
        s.flows_agreed,
        s.flows_checked
    );
    for outage in &report.outages {
        outage_banner(&mut out, outage);
    }
    if report.code == exit::FAILED {
        out.push_str(
            "FAILED: the XDP program did not steer every sample flow where userspace \
             predicted. This is a bug in xlb: do not apply; report it with the output of \
             `xlb plan --output json`\n",
        );
    } else if !report.outages.is_empty() {
        out.push_str(
            "NOT SAFE: with these clients one server would take every new flow of a VIP; \
             nothing was changed: spread the clients (hash = \"5-tuple\") before applying\n",
        );
    } else if let Some(refusal) = &report.refusal {
        let _ = writeln!(
            out,
            "nothing was changed; `xlb apply {}` would refuse this: {refusal}",
            report.file
        );
    } else {
        let _ = writeln!(
            out,
            "nothing was changed; `xlb apply {}` makes this live",
            report.file
        );
    }
    out
}

/// A config with errors: the outage banner (XLB003) first, then every diagnostic.
fn refused(report: &PlanReport) -> String {
    let mut out = String::new();
    if report.code != exit::UNREADABLE {
        let _ = writeln!(
            out,
            "xlb plan {}: REFUSED ({}, {}); nothing was planned and nothing changed\n",
            report.file,
            plural(report.errors, "error"),
            plural(report.warnings, "warning")
        );
    }
    for outage in &report.outages {
        outage_banner(&mut out, outage);
    }
    for diagnostic in &report.diagnostics {
        let _ = writeln!(out, "{diagnostic}");
    }
    out
}

/// The banner of a VIP whose every new flow would go to one server.
fn outage_banner(out: &mut String, outage: &Outage) {
    let _ = writeln!(
        out,
        "!!! OUTAGE: EVERY new flow of vip \"{}\" ({}) would go to ONE server, {} !!!\n    {} \
         {}: {}: this is the mistake xlb was born from: {} would carry all the load, and when \
         it fails the VIP is down\n",
        outage.vip,
        outage.address,
        outage.backend,
        outage.rule,
        rules::ALL_WEIGHT_ON_ONE.name,
        outage.message,
        outage.backend
    );
}

/// One aligned `~ field  before -> after` line per changed field.
fn field_changes(out: &mut String, changes: &[FieldChange]) {
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                format!("~ {}", c.field),
                format!("{} -> {}", c.before, c.after),
            ]
        })
        .collect();
    for line in columns(&rows, &[]) {
        let _ = writeln!(out, "    {line}");
    }
}

fn vip_section(out: &mut String, vip: &VipPlan) {
    let name = vip
        .name
        .as_ref()
        .map_or_else(String::new, |n| format!("\"{n}\" "));
    let _ = writeln!(
        out,
        "{} vip {name}{}  {}, {} hash, {} slots",
        vip.change.marker(),
        vip.vip,
        vip.forwarding,
        vip.hash,
        vip.table_size
    );
    field_changes(out, &vip.changes);
    for rule in &vip.warnings {
        let _ = writeln!(out, "    !! warning {rule} (see above)");
    }
    for note in &vip.notes {
        let _ = writeln!(out, "    {note}");
    }
    match (vip.change, vip.moved_share) {
        (Change::Added, _) => {
            let _ = writeln!(out, "    new VIP: every flow to it is new");
        }
        (Change::Removed, _) => {}
        (_, Some(moved)) => {
            let how = if vip.moved_estimated {
                " (estimated from the sample: the table size or hash mode changes)".to_owned()
            } else {
                format!(
                    " ({} of {} table slots change backend)",
                    (moved * f64::from(vip.table_size)).round(),
                    vip.table_size
                )
            };
            let _ = writeln!(
                out,
                "    moved: {} of new flows would go to another backend than today{how}\n    \
                 established flows stay on their backend through the flow table, except those \
                 of removed or disabled backends",
                percent(moved)
            );
        }
        (_, None) => {}
    }
    if let Some(kernel) = &vip.kernel {
        let packets = if kernel.packet == "udp" {
            "UDP datagrams"
        } else {
            "TCP SYNs"
        };
        if kernel.agrees {
            let _ = writeln!(
                out,
                "    kernel: {} {packets}: every one went where userspace predicted{}; largest \
                 gap to the expected share {:.1} points",
                kernel.flows,
                if kernel.dropped > 0 {
                    format!(" ({} dropped: no backend in their slot)", kernel.dropped)
                } else {
                    String::new()
                },
                kernel.max_deviation * 100.0
            );
        } else {
            let _ = writeln!(
                out,
                "    KERNEL DISAGREES: {} of {} {packets} did not go where userspace predicted \
                 (a bug in xlb; do not apply):",
                kernel.disagreed, kernel.flows
            );
            for d in &kernel.disagreements {
                let _ = writeln!(
                    out,
                    "      {} -> {}: predicted {}, the kernel {}",
                    d.source, d.destination, d.predicted, d.observed
                );
            }
        }
    }
    for backend in &vip.backends {
        if backend.warnings.contains(&rules::DOMINANT_BACKEND.id) {
            let kernel = backend.kernel_share.map_or_else(String::new, |k| {
                format!("; the kernel sent it {}", percent(k))
            });
            let _ = writeln!(
                out,
                "    !! {} would take {} of the new flows ({} {}){kernel}",
                backend.address,
                percent(backend.share_after),
                rules::DOMINANT_BACKEND.id,
                rules::DOMINANT_BACKEND.name
            );
        }
    }
    let mut rows = vec![
        [
            "  backend",
            "weight",
            "mac",
            "before",
            "after",
            "kernel",
            "notes",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    rows.extend(vip.backends.iter().map(backend_row));
    for line in columns(&rows, &[3, 4, 5]) {
        let _ = writeln!(out, "    {}", line.trim_end());
    }
}

fn backend_row(backend: &BackendPlan) -> Vec<String> {
    let field = |name: &str, now: String| {
        backend
            .changes
            .iter()
            .find(|c| c.field == name)
            .map_or(now, |c| format!("{} -> {}", c.before, c.after))
    };
    let mut notes: Vec<String> = backend.state.iter().map(|s| (*s).to_owned()).collect();
    notes.extend(
        backend
            .warnings
            .iter()
            .map(|rule| format!("warning {rule}")),
    );
    vec![
        format!("{} {}", backend.change.marker(), backend.address),
        field("weight", backend.weight.to_string()),
        field("mac", backend.mac.clone()),
        // An added backend had no share before: a dash, not a misleading 0%.
        if backend.change == Change::Added {
            "-".to_owned()
        } else {
            percent(backend.share_before)
        },
        percent(backend.share_after),
        backend.kernel_share.map_or_else(|| "-".to_owned(), percent),
        notes.join(", "),
    ]
}

/// Rows padded to aligned columns; the columns in `right` are right-aligned.
fn columns(rows: &[Vec<String>], right: &[usize]) -> Vec<String> {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(c, cell)| {
                    if right.contains(&c) {
                        format!("{cell:>w$}", w = widths[c])
                    } else {
                        format!("{cell:<w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect()
}

fn percent(share: f64) -> String {
    crate::diff::effect::percent(share, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_left_and_right() {
        // Test that cells are padded to the widest of their column, numbers to the right.
        let rows = vec![
            vec!["a".to_owned(), "1.0%".to_owned()],
            vec!["longer".to_owned(), "100.0%".to_owned()],
        ];
        assert_eq!(columns(&rows, &[1]), ["a         1.0%", "longer  100.0%"]);
    }
}
