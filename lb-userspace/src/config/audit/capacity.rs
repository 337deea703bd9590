//! `[capacity]`: the config fits the maps `xlb run` sizes (XLB028).

use super::*;

impl Audit<'_> {
    /// XLB028: `[capacity]` in range, and the VIPs within it. The capacity in force, its
    /// defaults applied; `None` if it cannot be.
    pub(super) fn capacity(&mut self, file: &ConfigFile) -> Option<Capacity> {
        let table = file.capacity.as_ref();
        let fields = table.map(|t| t.get_ref());
        let defaults = Capacity::default();
        let ranges = [
            (
                "vips",
                fields.and_then(|f| f.vips.as_ref()),
                CAPACITY_VIPS_RANGE,
                defaults.vips,
            ),
            (
                "backends_per_vip",
                fields.and_then(|f| f.backends_per_vip.as_ref()),
                CAPACITY_BACKENDS_PER_VIP_RANGE,
                defaults.backends_per_vip,
            ),
            (
                "table_slots",
                fields.and_then(|f| f.table_slots.as_ref()),
                CAPACITY_TABLE_SLOTS_RANGE,
                defaults.table_slots,
            ),
        ];
        let mut values = [None; 3];
        for (value, (name, field, range, default)) in values.iter_mut().zip(ranges) {
            *value = self.integer(
                &CAPACITY,
                &field.cloned(),
                &format!("capacity.{name}"),
                range.clone(),
                default,
                format!(
                    "write {name} as a number in {}..={}, or leave it out for the default \
                     ({default})",
                    range.start(),
                    range.end(),
                ),
            );
        }
        let [Some(vips), Some(backends_per_vip), Some(table_slots)] = values else {
            return None;
        };
        let capacity = Capacity {
            vips,
            backends_per_vip,
            table_slots,
        };
        let whole = table.map(Spanned::span);
        let span_of = |field: Option<&Spanned<i64>>, otherwise: Range<usize>| {
            field
                .map(Spanned::span)
                .or(whole.clone())
                .unwrap_or(otherwise)
        };
        let backends = u64::from(capacity.vips) * u64::from(capacity.backends_per_vip);
        let slots = 2 * u64::from(capacity.vips) * u64::from(capacity.table_slots);
        if backends > CAPACITY_MAX_BACKENDS || slots > CAPACITY_MAX_SLOTS {
            self.report(
                &CAPACITY,
                whole.clone().unwrap_or_default(),
                "capacity".into(),
                format!(
                    "[capacity] asks for {backends} backends and {slots} table slots in all: \
                     at most {CAPACITY_MAX_BACKENDS} and {CAPACITY_MAX_SLOTS} fit"
                ),
                "lower capacity.vips, capacity.backends_per_vip or capacity.table_slots to \
                 what this host serves (the product is what the kernel allocates)",
            );
            return None;
        }
        let restart = "a change of capacity takes effect when `xlb run` starts (a restart)";
        let count = file.vip.len();
        if count > capacity.vips as usize {
            let first_over = file.vip[capacity.vips as usize].span();
            self.report(
                &CAPACITY,
                span_of(fields.and_then(|f| f.vips.as_ref()), first_over),
                "capacity.vips".into(),
                format!(
                    "the config has {count} VIPs but capacity.vips is {}{}",
                    capacity.vips,
                    if fields.and_then(|f| f.vips.as_ref()).is_none() {
                        " (the default)"
                    } else {
                        ""
                    }
                ),
                format!(
                    "set vips = {count} or more in [capacity] ({}); {restart}",
                    Capacity {
                        vips: u32::try_from(count).unwrap_or(u32::MAX),
                        ..capacity
                    }
                    .memory_here()
                ),
            );
        }
        for (i, spanned) in file.vip.iter().enumerate() {
            let vip = spanned.get_ref();
            let name = vip.name.get_ref().0.as_str();
            if vip.backend.len() > capacity.backends_per_vip as usize {
                self.report(
                    &CAPACITY,
                    spanned.span(),
                    "capacity.backends_per_vip".into(),
                    format!(
                        "vip \"{name}\" has {} backends but capacity.backends_per_vip is {}",
                        vip.backend.len(),
                        capacity.backends_per_vip
                    ),
                    format!(
                        "set backends_per_vip = {} or more in [capacity]; {restart}",
                        vip.backend.len()
                    ),
                );
            }
            let size = maglev_size(vip);
            if size > capacity.table_slots && size <= MAX_TABLE_SIZE {
                self.report(
                    &CAPACITY,
                    span_or(&vip.table_size, spanned.span()),
                    format!("vip[{i}].table_size"),
                    format!(
                        "table_size {size} of vip \"{name}\" is above capacity.table_slots = {}",
                        capacity.table_slots
                    ),
                    format!(
                        "set table_slots = {size} or more in [capacity] ({restart}), or give \
                         the VIP a prime table_size of at most {}",
                        capacity.table_slots
                    ),
                );
            }
        }
        Some(capacity)
    }
}
