//! A VIP's weights against the table an apply would build: no outage on one server, no
//! starved backend, no dominant one (XLB001..XLB004, XLB026, XLB027).

use super::*;

impl Audit<'_> {
    /// XLB001..XLB004 and XLB026: where a VIP's new flows go, judged on the table an apply
    /// would build and the servers its entries reach (the effect model), not on the weights.
    pub(super) fn weights(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        entries: &[Entry],
        effect: Option<Effect>,
        thresholds: &AuditThresholds,
    ) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let backends = &vip.backend;
        // The weight's span, or the backend table's when the weight is the default.
        let weight_span = |b: &Spanned<BackendFile>| span_or(&b.get_ref().weight, b.span());
        let total: u64 = backends
            .iter()
            .map(|b| u64::from(weight(b.get_ref())))
            .sum();
        let taking: Vec<usize> = (0..backends.len())
            .filter(|&j| weight(backends[j].get_ref()) > 0)
            .collect();
        if backends.is_empty() {
            self.report(
                &ZERO_TOTAL_WEIGHT,
                vip.name.span(),
                format!("vip[{i}].backend"),
                format!("vip \"{name}\" has no backends: every packet for it would be dropped"),
                "add [[vip.backend]] entries (address, mac) under the VIP, or remove the VIP",
            );
            return;
        }
        if total == 0 {
            self.report(
                &ZERO_TOTAL_WEIGHT,
                weight_span(&backends[0]),
                format!("vip[{i}].backend[0].weight"),
                format!(
                    "every backend of vip \"{name}\" weighs 0: every packet for it would be \
                     dropped"
                ),
                "give the backends that should take traffic a positive weight, e.g. weight = 1",
            );
            return;
        }
        let size = maglev_size(vip);
        // An unusable size or a repeated address is reported on its own.
        let Some(effect) = effect else {
            return;
        };
        if let Some(server) = effect.all_on_one() {
            self.all_on_one(i, spanned, &effect, server, &taking, size);
            return;
        }
        for &j in &taking {
            if effect.entry_counts[j] > 0 {
                continue;
            }
            let needed = (total / u64::from(weight(backends[j].get_ref())))
                .max(backends.len() as u64 * u64::from(SLOTS_PER_BACKEND));
            self.report(
                &NO_SLOT,
                weight_span(&backends[j]),
                format!("vip[{i}].backend[{j}].weight"),
                format!(
                    "backend {} of vip \"{name}\" weighs {} of {total} but gets no slot of the \
                     {size}-slot table: it would take no new flow",
                    entries[j].address,
                    weight(backends[j].get_ref()),
                ),
                format!(
                    "use a table_size of at least {needed}, e.g. {}, or weights closer \
                     together; set weight = 0 if it is meant to take nothing",
                    prime_at_least(u32::try_from(needed).unwrap_or(u32::MAX))
                ),
            );
        }
        if effect.serving() >= 2 {
            for server in &effect.servers {
                // A slot of rounding is the table's, not the config's: two equal backends of
                // a 65,537-slot table get 32,769 and 32,768 slots.
                if server.count as f64 <= thresholds.max_backend_share * effect.total as f64 + 1.0 {
                    continue;
                }
                let first = server.entries[0];
                self.report(
                    &DOMINANT_BACKEND,
                    weight_span(&backends[first]),
                    format!("vip[{i}].backend[{first}].weight"),
                    format!(
                        "backend {} takes {} of the new flows of vip \"{name}\" ({} of {} table \
                         slots), more than audit.max_backend_share ({})",
                        server.address,
                        effect::percent(server.share, 0),
                        server.count,
                        effect.total,
                        effect::percent(thresholds.max_backend_share, 0)
                    ),
                    "spread the weight more evenly (e.g. equal weights), or raise \
                     audit.max_backend_share if this backend is meant to carry that much",
                );
            }
        }
        let min = thresholds.min_backends as usize;
        let count = effect.serving();
        if count < min {
            self.report(
                &SINGLE_BACKEND,
                vip.name.span(),
                format!("vip[{i}].backend"),
                format!(
                    "vip \"{name}\" has {count} backend{} taking traffic, fewer than \
                     audit.min_backends ({min}): {}",
                    if count == 1 { "" } else { "s" },
                    if count == 1 {
                        "if it fails, the VIP is down".to_owned()
                    } else {
                        format!("one failure takes {}% of its capacity", 100 / count)
                    },
                ),
                format!("add backends, or set audit.min_backends = {count} if so few are intended"),
            );
        }
    }

    /// The effect of the table an apply would build for `vip` (what XLB001..XLB004 and XLB026
    /// judge), `None` when no backend weighs more than 0 or the table cannot be built; and the
    /// slot counts behind it when a table gave them (from `known`, or built). Free of `self`
    /// so that every VIP's table is built in parallel.
    pub(super) fn table_effect(
        vip: &VipFile,
        known: &KnownCounts,
    ) -> (Option<Effect>, Option<(TableInputs, Vec<u64>)>) {
        let entries: Vec<Entry> = vip.backend.iter().map(|b| entry(b.get_ref())).collect();
        let inputs = TableInputs::new(table_inputs(vip), maglev_size(vip));
        let weighted = inputs.backends();
        let mut taking = (0..weighted.len()).filter(|&j| weighted[j].1 > 0);
        let Some(first) = taking.next() else {
            return (None, None);
        };
        let (counts, built) = match known.slot_counts(&inputs) {
            Ok(counts) => (counts.clone(), Some((inputs, counts))),
            // One weighted backend owns every slot of any table.
            Err(_) if taking.next().is_none() => {
                let mut counts = vec![0; weighted.len()];
                counts[first] = 1;
                (counts, None)
            }
            Err(_) => return (None, None),
        };
        let forwarding = value(&vip.forwarding).unwrap_or_default();
        (Some(Effect::of_counts(&entries, forwarding, counts)), built)
    }

    /// XLB003: every new flow of VIP `i` would reach `server` although it names more backends;
    /// the finding says why (weights, one server written twice, or a table too small).
    fn all_on_one(
        &mut self,
        i: usize,
        spanned: &Spanned<VipFile>,
        effect: &Effect,
        server: &effect::Server,
        taking: &[usize],
        size: u32,
    ) {
        let vip = spanned.get_ref();
        let name = vip.name.get_ref().0.as_str();
        let backends = &vip.backend;
        let address = server.address;
        let others = effect.named - 1;
        let list = |indices: &[usize]| {
            indices
                .iter()
                .map(|&j| {
                    format!(
                        "backend[{j}] ({})",
                        backends[j].get_ref().address.get_ref().0
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let [only] = taking {
            let only = &backends[*only];
            self.report(
                &ALL_WEIGHT_ON_ONE,
                span_or(&only.get_ref().weight, only.span()),
                format!("vip[{i}].backend[{}].weight", taking[0]),
                format!(
                    "all the weight of vip \"{name}\" is on one backend: every new flow of vip \
                     \"{name}\" would go to {address} (the other {others} backend{} weigh{} 0)",
                    if others == 1 { "" } else { "s" },
                    if others == 1 { "s" } else { "" },
                ),
                "give the other backends a positive weight (e.g. weight = 1 each); if one server \
                 really is meant to take everything, remove the drained entries so the config \
                 says so",
            );
        } else if taking.iter().all(|j| server.entries.contains(j)) {
            let first = server.entries[0];
            self.report(
                &ALL_WEIGHT_ON_ONE,
                backends[first].get_ref().address.span(),
                format!("vip[{i}].backend[{first}].address"),
                format!(
                    "every new flow of vip \"{name}\" would go to one server, {address}: its \
                     entries {} are the same server (same address or, for dsr, same MAC)",
                    list(&server.entries)
                ),
                "give each backend entry its own server's address and MAC; list a server once",
            );
        } else {
            let starved: Vec<usize> = taking
                .iter()
                .copied()
                .filter(|&j| effect.entry_counts[j] == 0)
                .collect();
            let wanted = (backends.len() as u32).saturating_mul(SLOTS_PER_BACKEND);
            let least = taking
                .iter()
                .map(|&j| weight(backends[j].get_ref()))
                .min()
                .unwrap_or(1)
                .max(1);
            let total: u32 = taking
                .iter()
                .map(|&j| weight(backends[j].get_ref()))
                .fold(0, u32::saturating_add);
            let needed = wanted.max(total / least);
            self.report(
                &ALL_WEIGHT_ON_ONE,
                span_or(&vip.table_size, spanned.span()),
                format!("vip[{i}].table_size"),
                format!(
                    "the {size}-slot table of vip \"{name}\" sends every new flow to {address}: \
                     {} weigh more than 0 but get no slot",
                    list(&starved)
                ),
                format!(
                    "use a table_size of at least {needed}, e.g. {}, or weights closer together",
                    prime_at_least(needed)
                ),
            );
        }
    }
}
