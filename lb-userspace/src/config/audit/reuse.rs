//! What a check found for each VIP, kept so that the daemon's next check of its file takes it
//! again for every VIP the reparse took again (the same text, in place or moved), instead of
//! checking that VIP again: a change to one VIP among 1,000 checks one.
//!
//! A VIP's findings and model depend on its own text (the reparse vouches for it), its index,
//! the surroundings its checks read (`[global]`, the `[audit]` thresholds, every VIP's address
//! and name for XLB006, which also fix every index) and, for the tunnel sources it lacks, on
//! whether an earlier VIP already reported them missing (each is reported once per file). Its
//! place only moves its findings: those of a VIP that moved are placed anew from their spans.
//! Which tables are counted from known slot counts never changes a finding.

use super::*;
use crate::config::{reparse::Origin, shift::shifted};

/// The per-VIP results of the last check, by position in the file.
#[derive(Debug, Default)]
pub struct CheckedVips {
    vips: Vec<CheckedVip>,
    /// How many VIPs the last check judged (it took the others from here).
    judged: usize,
}

#[derive(Debug)]
pub(super) struct CheckedVip {
    /// The VIP as the parse gave it (shared): the next reparse names it as the origin of the
    /// VIP it takes again, the same text in place or moved.
    pub(super) file: Arc<Spanned<VipFile>>,
    pub(super) surroundings: u64,
    /// The 1-based line the VIP starts on, if it has findings (they name lines); else 0.
    pub(super) line: usize,
    /// The tunnel sources the VIP lacks, and whether each was reported missing before it
    /// (its findings report those that were not).
    pub(super) wanted_sources: Vec<&'static str>,
    pub(super) reported_before: Vec<bool>,
    pub(super) findings: Vec<Diagnostic>,
    /// The span of each finding.
    pub(super) spans: Vec<Range<usize>>,
    pub(super) model: Option<Arc<VipModel>>,
    /// Its table's inputs and slot counts, when a table gave them.
    pub(super) counts: Option<(TableInputs, Vec<u64>)>,
}

/// What every VIP's check reads besides the VIP itself, as one number.
pub(super) fn surroundings(file: &ConfigFile, thresholds: &AuditThresholds) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(format!("{:?}\n{thresholds:?}\n", file.global).as_bytes());
    for vip in &file.vip {
        let vip = vip.get_ref();
        // The family first: an IPv4 address's bytes cannot read as the start of an IPv6 one.
        match vip.address.get_ref().0 {
            IpAddr::V4(address) => {
                hasher.update(&[4]);
                hasher.update(&address.octets());
            }
            IpAddr::V6(address) => {
                hasher.update(&[6]);
                hasher.update(&address.octets());
            }
        }
        let name = vip.name.get_ref().0.as_bytes();
        // The length first: the names' bytes cannot run into the next VIP's.
        hasher.update(&name.len().to_le_bytes());
        hasher.update(name);
    }
    hasher.digest()
}

impl CheckedVips {
    /// The results kept for each VIP of `file` that the reparse took again (`origins`) and
    /// that hold for it if the tunnel sources it lacks were reported missing before it as they
    /// were then (see [`CheckedVip::holds_after`]), with how many bytes the VIP moved; the
    /// others `None`. Leaves nothing kept.
    pub(super) fn candidates(
        &mut self,
        file: &ConfigFile,
        origins: &[Option<Origin>],
        surroundings: u64,
    ) -> Vec<Option<(CheckedVip, isize)>> {
        self.judged = 0;
        let mut kept = std::mem::take(&mut self.vips).into_iter();
        (0..file.vip.len())
            .map(|i| {
                let checked = kept.next()?;
                let origin = origins.get(i)?.as_ref()?;
                (Arc::ptr_eq(&checked.file, &origin.from) && checked.surroundings == surroundings)
                    .then_some((checked, origin.by))
            })
            .collect()
    }

    /// Keeps what the check found for the next VIP, `judged` if it judged it (rather than
    /// taking it from here).
    pub(super) fn keep(&mut self, checked: CheckedVip, judged: bool) {
        self.judged += usize::from(judged);
        self.vips.push(checked);
    }

    /// How many VIPs the last check judged; it took the others from here.
    pub fn judged(&self) -> usize {
        self.judged
    }
}

impl CheckedVip {
    /// Whether these results hold after the tunnel sources `reported` were reported missing.
    pub(super) fn holds_after(&self, reported: &[&'static str]) -> bool {
        (self.wanted_sources.iter().zip(&self.reported_before))
            .all(|(source, was)| reported.contains(source) == *was)
    }
}

impl Audit<'_> {
    /// What `checked` found, found again for `vip`, the same text `by` bytes further: its
    /// findings (naming this check's file, placed anew if the VIP moved) and the tunnel
    /// sources it reported missing. Gives the results to keep for the next check.
    pub(super) fn take_checked(
        &mut self,
        checked: CheckedVip,
        vip: &Arc<Spanned<VipFile>>,
        by: isize,
    ) -> CheckedVip {
        let line = match checked.findings.is_empty() {
            true => 0,
            false => self.source.position(vip.span().start).0,
        };
        let spans: Vec<Range<usize>> = (checked.spans.iter())
            .map(|span| shifted(span.clone(), by))
            .collect();
        let findings: Vec<Diagnostic> = (checked.findings.iter().zip(&spans))
            .map(|(finding, span)| match by == 0 && line == checked.line {
                true => Diagnostic {
                    file: self.source.file.to_path_buf(),
                    ..finding.clone()
                },
                false => self.source.placed(finding, span.clone()),
            })
            .collect();
        self.findings.extend(findings.iter().cloned());
        self.spans.extend(spans.iter().cloned());
        for source in &checked.wanted_sources {
            if !self.missing_sources.contains(source) {
                self.missing_sources.push(source);
            }
        }
        CheckedVip {
            file: Arc::clone(vip),
            line,
            findings,
            spans,
            ..checked
        }
    }
}
