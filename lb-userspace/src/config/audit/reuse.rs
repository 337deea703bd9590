//! What a check found for each VIP, kept so that the daemon's next check of its file takes it
//! again for every VIP whose text the reparse reused, instead of checking that VIP again: a
//! change to one VIP among 1,000 checks one.
//!
//! A VIP's findings and model depend on its own text and place (its spans, its index, the line
//! it starts on), on the surroundings its checks read (`[global]`, the `[audit]` thresholds,
//! every VIP's address and name for XLB006) and, for the tunnel sources it lacks, on whether
//! an earlier VIP already reported them missing (each is reported once per file). The reparse shares a reused VIP (the same `Arc`)
//! only when its text is the same at the same offset; the rest is compared here. Which tables
//! are counted from known slot counts never changes a finding.

use std::fmt::Write as _;

use super::*;

/// The per-VIP results of the last check, by position in the file.
#[derive(Debug, Default)]
pub struct CheckedVips {
    vips: Vec<CheckedVip>,
    /// How many VIPs the last check judged (it took the others from here).
    judged: usize,
}

#[derive(Debug)]
pub(super) struct CheckedVip {
    /// Shared with the parse it came from: the same pointer is the same text at the same offset.
    pub(super) file: Arc<Spanned<VipFile>>,
    pub(super) surroundings: u64,
    /// The 1-based line the VIP starts on: its findings name lines.
    pub(super) line: usize,
    /// The tunnel sources the VIP lacks, and whether each was reported missing before it
    /// (its findings report those that were not).
    pub(super) wanted_sources: Vec<&'static str>,
    pub(super) reported_before: Vec<bool>,
    pub(super) findings: Vec<Diagnostic>,
    pub(super) model: Option<Arc<VipModel>>,
    /// Its table's slot counts, when a table gave them.
    pub(super) counts: Option<Vec<u64>>,
}

/// What every VIP's check reads besides the VIP itself, as one number.
pub(super) fn surroundings(file: &ConfigFile, thresholds: &AuditThresholds) -> u64 {
    let mut text = format!("{:?}\n{thresholds:?}\n", file.global);
    for vip in &file.vip {
        let vip = vip.get_ref();
        let _ = write!(
            text,
            "{} {};",
            vip.address.get_ref().0,
            vip.name.get_ref().0
        );
    }
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl CheckedVips {
    /// The results kept for each VIP of `file` that hold for it if the tunnel sources it
    /// lacks were reported missing before it as they were then (see
    /// [`CheckedVip::holds_after`]), the others `None`; leaves nothing kept.
    pub(super) fn candidates(
        &mut self,
        file: &ConfigFile,
        source: &Source<'_>,
        surroundings: u64,
    ) -> Vec<Option<CheckedVip>> {
        self.judged = 0;
        let mut kept = std::mem::take(&mut self.vips).into_iter();
        file.vip
            .iter()
            .map(|vip| {
                kept.next().filter(|checked| {
                    Arc::ptr_eq(&checked.file, vip)
                        && checked.surroundings == surroundings
                        && checked.line == source.position(vip.span().start).0
                })
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
    /// What `checked` found, found again: its findings (naming this check's file) and the
    /// tunnel sources it reported missing.
    pub(super) fn take_checked(&mut self, checked: &CheckedVip) {
        let file = self.source.file;
        self.findings
            .extend(checked.findings.iter().map(|finding| Diagnostic {
                file: file.to_path_buf(),
                ..finding.clone()
            }));
        for source in &checked.wanted_sources {
            if !self.missing_sources.contains(source) {
                self.missing_sources.push(source);
            }
        }
    }
}
