//! Waiting in tests for something that happens in another process: polled every 50 ms,
//! bounded by a timeout.

use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it says yes and returns how long that took; panics with
/// `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> Duration {
    let mut last = None;
    try_wait_until(timeout, || {
        let result = done();
        let yes = matches!(result, Ok(true));
        last = Some(result);
        Ok(yes)
    })
    .unwrap_or_else(|| panic!("{what}: not within {timeout:?} (last check: {last:?})"))
}

/// Polls `done` every 50 ms until it says yes (how long that took) or `timeout` passes (None).
pub fn try_wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(true) = done() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
