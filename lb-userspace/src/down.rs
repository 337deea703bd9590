//! `xlb down`: withdraw the VIPs from BGP, then detach the data plane and remove its pins. With
//! an `xlb run --config` daemon owning the pins, the daemon does it and exits (see
//! [`crate::owner`]): no daemon is left running over removed pins.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    control,
    exit::{self, Coded},
    owner::{self, Writer},
    pins,
};

/// How long `xlb down` waits for the daemon it stopped to exit (its exit closes the last
/// reference to the XDP link).
const DAEMON_EXIT_WAIT: Duration = Duration::from_secs(20);

/// What `xlb down` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownReport {
    pub pin_path: PathBuf,
    /// The BGP routes file emptied to withdraw the VIPs, when `[bgp]` was configured.
    pub withdrawn: Option<PathBuf>,
    /// Why withdrawing failed (the pins were removed anyway: the data plane must go).
    pub withdraw_error: Option<String>,
    /// The pid of the `xlb run` daemon that took the data plane down and exited.
    #[serde(default)]
    pub daemon: Option<u32>,
}

/// Takes the xlb pinned under `pin_path` down: through its daemon when one owns the pins
/// (waiting for it to exit), else here under the pin lock.
pub fn down(pin_path: &Path) -> anyhow::Result<DownReport> {
    let report = match owner::writer(pin_path)? {
        Writer::Daemon(daemon) => {
            let (pid, report) = daemon.ask::<DownReport>(&control::Request::Down)?;
            wait_for_exit(pid)?;
            DownReport {
                daemon: Some(pid),
                ..report
            }
        }
        Writer::Direct(_lock) => take_down(pin_path, || crate::bgp::withdraw_recorded(pin_path))?,
    };
    Ok(report)
}

/// Withdraws with `withdraw` (routers must stop sending flows before the data plane goes),
/// then removes every pin under `pin_path`, which detaches the program once no process holds
/// its link.
pub fn take_down(
    pin_path: &Path,
    withdraw: impl FnOnce() -> anyhow::Result<Option<PathBuf>>,
) -> anyhow::Result<DownReport> {
    let (withdrawn, withdraw_error) = match withdraw() {
        Ok(file) => (file, None),
        Err(err) => (None, Some(format!("{err:#}"))),
    };
    pins::remove(pin_path)?;
    crate::names::forget(pin_path);
    Ok(DownReport {
        pin_path: pin_path.to_path_buf(),
        withdrawn,
        withdraw_error,
        daemon: None,
    })
}

/// Waits until process `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn wait_for_exit(pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + DAEMON_EXIT_WAIT;
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, s)| s.trim().chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
    };
    while running() {
        if Instant::now() >= deadline {
            return Err(Coded(
                exit::FAILED,
                format!(
                    "xlb run (pid {pid}) removed the pins but has not exited after \
                     {DAEMON_EXIT_WAIT:?}: the program stays attached until it does; stop it \
                     with `kill {pid}`"
                ),
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What `xlb down` prints.
pub fn render(report: &DownReport) -> String {
    let mut out = String::new();
    if let Some(file) = &report.withdrawn {
        out += &format!(
            "xlb: withdrew every VIP from BGP ({} emptied, BIRD reloaded)\n",
            file.display()
        );
    }
    if let Some(err) = &report.withdraw_error {
        out += &format!("xlb: withdrawing the VIPs from BGP failed: {err}\n");
    }
    out += &format!(
        "xlb: removed the pins under {}; the program is detached",
        report.pin_path.display()
    );
    match report.daemon {
        Some(pid) => out += &format!(" and xlb run (pid {pid}) has exited\n"),
        None => out += "\n",
    }
    out
}
