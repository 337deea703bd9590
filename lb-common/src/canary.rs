//! Canary applies: which of a VIP's two Maglev table copies a new flow takes. One decision,
//! used by the XDP program and by userspace predictions (plan, tests) alike.

/// Hash thresholds are fractions of the 32-bit hash space in hundredths.
const HASH_SPACE: u64 = 1 << 32;

/// The copy of [`crate::Vip::tables`] a new flow with table hash `hash` takes: the live copy
/// `active`, except under a canary (`threshold` above 0), where hashes below `threshold`
/// take the other copy, which holds the table being tried. Threshold 0 is no canary: every
/// new flow takes `active`, so a rollback is one write of 0 and a promotion a flip of
/// `active` with 0.
#[inline(always)]
pub const fn table_copy(hash: u32, threshold: u32, active: u32) -> u32 {
    if hash < threshold { active ^ 1 } else { active }
}

/// The [`crate::Vip::canary`] threshold that sends `percent` of the hash space (the first
/// `percent` hundredths) to the tried table; `percent` is 1 to 99.
pub const fn threshold(percent: u32) -> u32 {
    (percent as u64 * HASH_SPACE / 100) as u32
}

/// The share of the hash space (0 to 1) below a threshold, for reports.
pub fn share(threshold: u32) -> f64 {
    threshold as f64 / HASH_SPACE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that without a canary every hash takes the live copy, whichever it is.
    #[test]
    fn threshold_zero_keeps_every_flow_on_the_live_copy() {
        for active in [0, 1] {
            for hash in [0, 1, 1 << 31, u32::MAX] {
                assert_eq!(table_copy(hash, 0, active), active);
            }
        }
    }

    /// Test that under a canary the hashes below the threshold, and only those, take the
    /// other copy.
    #[test]
    fn hashes_below_the_threshold_take_the_other_copy() {
        let t = threshold(10);
        for active in [0, 1] {
            assert_eq!(table_copy(0, t, active), active ^ 1);
            assert_eq!(table_copy(t - 1, t, active), active ^ 1);
            assert_eq!(table_copy(t, t, active), active);
            assert_eq!(table_copy(u32::MAX, t, active), active);
        }
    }

    /// Test that a percent's threshold cuts that share of the hash space, to within one hash.
    #[test]
    fn threshold_cuts_the_percent_of_the_hash_space() {
        for percent in [1, 5, 10, 50, 99] {
            let cut = share(threshold(percent));
            assert!(
                (cut - f64::from(percent) / 100.0).abs() < 1e-9,
                "{percent}%: {cut}"
            );
        }
        assert!(threshold(99) > threshold(98));
    }
}
