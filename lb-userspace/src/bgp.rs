//! Announcing VIPs through BIRD 2 (`[bgp]`): the daemon writes a BIRD include file holding the
//! static protocols `xlb_vips4` and `xlb_vips6`, one `blackhole` route per announced VIP
//! address, and runs the reload command (`birdc -s SOCKET configure` by default) whenever the
//! set changes. The operator's bird.conf includes the file and exports those protocols to its
//! BGP sessions; the route itself is never installed in the node's kernel (no kernel export).
//!
//! A record of where the routes go is kept in [`STATE_DIR`], keyed by the pin path, so
//! `xlb down` (which only knows the pins) can withdraw everything too.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::config::Bgp;

/// Where each running daemon records its `[bgp]` settings for `xlb down`.
pub const STATE_DIR: &str = "/run/xlb/bgp";
/// The longest the reload command may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The include file announcing `vips` (IPv4 as /32, IPv6 as /128).
pub fn render(vips: &BTreeSet<IpAddr>, pin_path: &Path) -> String {
    let mut text = format!(
        "# Written by xlb (pin path {}): the VIPs this node announces. Do not edit: xlb \
         rewrites it.\n",
        pin_path.display()
    );
    for (name, channel, v4) in [("xlb_vips4", "ipv4", true), ("xlb_vips6", "ipv6", false)] {
        text += &format!("protocol static {name} {{\n  {channel};\n");
        for vip in vips.iter().filter(|vip| vip.is_ipv4() == v4) {
            let length = if v4 { 32 } else { 128 };
            text += &format!("  route {vip}/{length} blackhole;\n");
        }
        text += "}\n";
    }
    text
}

/// Writes `text` to `path` through a temporary file and a rename, so BIRD never reads half.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path.file_name().context("the routes file has no name")?;
    let staging = path.with_file_name(format!(".{}.xlb-tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))
}

/// Runs `command` with `sh -c`, bounded by [`RELOAD_TIMEOUT`]; fails unless it exits 0.
pub fn reload(command: &str) -> anyhow::Result<()> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            ensure!(
                status.success(),
                "`{command}` failed ({status}): {}",
                stderr.trim()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{command}` took more than {RELOAD_TIMEOUT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Keeps the routes file in line with the VIPs that should be announced.
#[derive(Debug)]
pub struct Announcer {
    bgp: Bgp,
    pin_path: PathBuf,
    /// What BIRD was last told successfully; none before the first success (or after a
    /// failure, so the next update retries).
    announced: Option<BTreeSet<IpAddr>>,
}

impl Announcer {
    pub fn new(bgp: Bgp, pin_path: &Path) -> Announcer {
        Announcer {
            bgp,
            pin_path: pin_path.to_path_buf(),
            announced: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Bgp {
        &self.bgp
    }

    /// Announces exactly `vips`: rewrites the file and reloads BIRD if that changes anything
    /// (or the last attempt failed). Returns whether BIRD was told something new.
    pub fn update(&mut self, vips: &BTreeSet<IpAddr>) -> anyhow::Result<bool> {
        if self.announced.as_ref() == Some(vips) {
            return Ok(false);
        }
        self.announced = None;
        if !vips.is_empty() {
            // Without the record only `xlb down` cannot withdraw; announcing still works.
            if let Err(err) = record(&self.pin_path, &self.bgp) {
                tracing::warn!("recording the [bgp] settings for `xlb down` failed: {err:#}");
            }
        }
        write_atomically(&self.bgp.routes_file, &render(vips, &self.pin_path))?;
        reload(&self.bgp.reload_command)?;
        self.announced = Some(vips.clone());
        Ok(true)
    }

    /// Withdraws every VIP and forgets the record (shutdown).
    pub fn withdraw_all(&mut self) -> anyhow::Result<()> {
        self.announced = None;
        self.update(&BTreeSet::new())?;
        let _ = std::fs::remove_file(state_path(&self.pin_path));
        Ok(())
    }
}

/// The record of the daemon pinned at `pin_path`.
pub fn state_path(pin_path: &Path) -> PathBuf {
    let key: String = pin_path
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    state_dir(pin_path).join(key)
}

/// [`STATE_DIR`]; in this crate's unit tests a directory beside the pin path (in the test's
/// own temporary directory), so they never write to /run/xlb and leave nothing behind.
fn state_dir(pin_path: &Path) -> PathBuf {
    if cfg!(test) {
        pin_path.parent().unwrap_or(pin_path).join("bgp-state")
    } else {
        PathBuf::from(STATE_DIR)
    }
}

/// Records `bgp` for the daemon pinned at `pin_path`: two lines, the routes file and the
/// reload command.
fn record(pin_path: &Path, bgp: &Bgp) -> anyhow::Result<()> {
    write_atomically(
        &state_path(pin_path),
        &format!("{}\n{}\n", bgp.routes_file.display(), bgp.reload_command),
    )
}

/// For `xlb down`: withdraws every VIP the daemon pinned at `pin_path` announced, if it
/// recorded `[bgp]` settings; returns the routes file it emptied.
pub fn withdraw_recorded(pin_path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let state = state_path(pin_path);
    let Ok(text) = std::fs::read_to_string(&state) else {
        return Ok(None);
    };
    let mut lines = text.lines();
    let (Some(file), Some(command)) = (lines.next(), lines.next()) else {
        let _ = std::fs::remove_file(&state);
        return Ok(None);
    };
    let mut announcer = Announcer::new(
        Bgp {
            routes_file: file.into(),
            reload_command: command.to_owned(),
        },
        pin_path,
    );
    announcer.withdraw_all()?;
    Ok(Some(PathBuf::from(file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_file_holds_one_blackhole_route_per_vip_by_family() {
        // Test that each VIP address becomes a host route in the static protocol of its
        // family, and that no VIP leaves both protocols empty but declared.
        let vips: BTreeSet<IpAddr> = ["198.18.1.10", "2001:db8:1::10", "198.18.1.20"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let text = render(&vips, Path::new("/sys/fs/bpf/xlb"));
        let v4 = text.find("protocol static xlb_vips4").unwrap();
        let v6 = text.find("protocol static xlb_vips6").unwrap();
        let at = |route: &str| {
            text.find(route)
                .unwrap_or_else(|| panic!("{route}\n{text}"))
        };
        assert!(v4 < at("route 198.18.1.10/32 blackhole;"));
        assert!(at("route 198.18.1.20/32 blackhole;") < v6);
        assert!(v6 < at("route 2001:db8:1::10/128 blackhole;"));
        let empty = render(&BTreeSet::new(), Path::new("/x"));
        assert!(!empty.contains("route "));
        assert!(empty.contains("protocol static xlb_vips4 {\n  ipv4;\n}"));
    }

    #[test]
    fn announcer_writes_reloads_only_on_change_and_withdraws() {
        // Test that the routes file is rewritten and the reload command run when the set
        // changes, not when it stays, and that withdrawing empties the file.
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path();
        let routes = dir.join("vips.conf");
        let count = dir.join("reloads");
        let pins = dir.join("pins");
        let mut announcer = Announcer::new(
            Bgp {
                routes_file: routes.clone(),
                reload_command: format!("echo x >> {}", count.display()),
            },
            &pins,
        );
        let reloads = || {
            std::fs::read_to_string(&count)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let one: BTreeSet<IpAddr> = ["198.18.1.10".parse().unwrap()].into();
        assert!(announcer.update(&one).unwrap());
        assert!(!announcer.update(&one).unwrap());
        assert_eq!(reloads(), 1);
        assert!(
            std::fs::read_to_string(&routes)
                .unwrap()
                .contains("198.18.1.10/32")
        );
        assert!(state_path(&pins).starts_with(dir) && state_path(&pins).exists());
        assert!(
            !state_path(&pins).starts_with(STATE_DIR),
            "a unit test wrote to /run/xlb"
        );
        announcer.withdraw_all().unwrap();
        assert_eq!(reloads(), 2);
        assert!(!std::fs::read_to_string(&routes).unwrap().contains("route "));
        assert!(
            !state_path(&pins).exists(),
            "withdrawing forgets the record"
        );
    }

    #[test]
    fn a_failing_reload_is_an_error_and_is_retried() {
        // Test that a reload command exiting non-zero fails the update, and that the same set
        // is tried again on the next update.
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path();
        let mut announcer = Announcer::new(
            Bgp {
                routes_file: dir.join("vips.conf"),
                reload_command: "exit 3".to_owned(),
            },
            &dir.join("pins"),
        );
        let one: BTreeSet<IpAddr> = ["198.18.1.10".parse().unwrap()].into();
        assert!(announcer.update(&one).is_err());
        assert!(announcer.update(&one).is_err());
    }
}
