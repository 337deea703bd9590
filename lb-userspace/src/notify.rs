//! systemd's notify protocol for `Type=notify` (sd_notify(3), through the sd-notify crate):
//! READY=1 once the first config is live and attached, WATCHDOG=1 every half watchdog period
//! while the daemon's loop runs and its maps answer, STOPPING=1 on the way out. Without
//! NOTIFY_SOCKET (not started by systemd, or `Type=simple`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

/// The service manager's socket, if any, and its watchdog period.
#[derive(Clone, Copy, Debug)]
pub struct Notifier {
    /// `WATCHDOG_USEC` (for this process when `WATCHDOG_PID` is set).
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// How often to ping the watchdog: half its period, as sd_watchdog_enabled(3) advises,
    /// so one late tick does not get the daemon killed. `None` without a watchdog.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|period| period / 2)
    }

    /// The config is live: systemd finishes `systemctl start` and starts the units after xlb.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The daemon is alive and can reach its maps.
    pub fn ping(&self) {
        send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!("telling systemd {states:?} over NOTIFY_SOCKET failed: {err}");
    }
}
