//! Shares of answered connections beside the shares the backends' weights give them: what the
//! lab tests assert about the spread.

use std::fmt::Debug;

/// One backend's share of the answers, in percent, beside the share its weight gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share {
    pub answered: u64,
    pub weight: u32,
    pub percent: f64,
    pub expected: f64,
}

/// Each backend's share of all `answered` (counted in the order of `weights`).
pub fn shares(answered: &[u64], weights: &[u32]) -> Vec<Share> {
    let total: u64 = answered.iter().sum();
    let weight_sum: u32 = weights.iter().sum();
    answered
        .iter()
        .zip(weights)
        .map(|(&answered, &weight)| Share {
            answered,
            weight,
            percent: 100.0 * answered as f64 / total as f64,
            expected: 100.0 * f64::from(weight) / f64::from(weight_sum),
        })
        .collect()
}

/// Asserts that every share lies within `points` percentage points of its weight's; a failure
/// names the backend (`b0`, `b1`, ...) and shows `context`.
pub fn assert_within(shares: &[Share], points: f64, context: &dyn Debug) {
    for (index, share) in shares.iter().enumerate() {
        let (percent, expected) = (share.percent, share.expected);
        assert!(
            (percent - expected).abs() <= points,
            "b{index}: {percent:.2}% against {expected:.2}% (±{points} points): {context:#?}"
        );
    }
}
