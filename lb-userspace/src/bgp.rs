//! Announcing VIPs through BIRD 2 (`[bgp]`): the daemon writes a BIRD include file holding the
//! static protocols `xlb_vips4` and `xlb_vips6`, one `blackhole` route per announced VIP
//! address, and makes BIRD reload (`birdc -s SOCKET configure`, run with an argument vector, or
//! the config's own `reload_command` through `sh -c`) whenever the set changes. Both reloads
//! run without capabilities ([`crate::child`]). The operator's bird.conf includes the file and exports those protocols to its
//! BGP sessions; the route itself is never installed in the node's kernel (no kernel export).
//!
//! A record of where the routes go is kept in [`STATE_DIR`], keyed by the pin path, so
//! `xlb down` (which only knows the pins) can withdraw everything too.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    child,
    config::{Bgp, Reload},
    trusted_dir,
};

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

/// Writes `text` to `path` with `mode` in one step ([`trusted_dir::replace`]), so BIRD never
/// reads half, in a directory no other user can write ([`trusted_dir::check`]; a missing one
/// is created 0755, as BIRD must read the file).
pub fn write_atomically(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .with_context(|| format!("{} names no directory", path.display()))?;
    trusted_dir::create(dir, 0o755).with_context(|| {
        format!(
            "refusing to write {}: its directory is not safe from other users",
            path.display()
        )
    })?;
    trusted_dir::replace(path, text.as_bytes(), mode)
}

/// The process that makes BIRD reload: `birdc` with an argument vector, or `sh -c` with the
/// config author's command; either without capabilities.
fn reload_command(reload: &Reload) -> Command {
    let mut command = match reload {
        Reload::Birdc { socket } => {
            let mut command = Command::new("birdc");
            command.arg("-s").arg(socket).arg("configure");
            command
        }
        Reload::Shell { command: text } => {
            let mut command = Command::new("sh");
            command.args(["-c", text]);
            command
        }
    };
    // SAFETY: shed_capabilities only makes system calls.
    unsafe { command.pre_exec(child::shed_capabilities) };
    command
}

/// How a reload shows in messages.
fn describe(reload: &Reload) -> String {
    match reload {
        Reload::Birdc { socket } => format!("birdc -s {} configure", socket.display()),
        Reload::Shell { command } => command.clone(),
    }
}

/// Runs the reload, bounded by [`RELOAD_TIMEOUT`]; fails unless it exits 0.
pub fn reload(reload: &Reload) -> anyhow::Result<()> {
    let shown = describe(reload);
    let mut child = reload_command(reload)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{shown}`"))?;
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            ensure!(
                status.success(),
                "`{shown}` failed ({status}): {}",
                stderr.trim()
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` took more than {RELOAD_TIMEOUT:?}: killed");
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
        // BIRD runs as its own user on most systems: it must be able to read the file.
        write_atomically(&self.bgp.routes_file, &render(vips, &self.pin_path), 0o644)?;
        reload(&self.bgp.reload)?;
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

/// Records `bgp` for the daemon pinned at `pin_path`, as JSON (only root may read it).
fn record(pin_path: &Path, bgp: &Bgp) -> anyhow::Result<()> {
    write_atomically(
        &state_path(pin_path),
        &serde_json::to_string(bgp).context("encoding the [bgp] record")?,
        0o600,
    )
}

/// For `xlb down`: withdraws every VIP the daemon pinned at `pin_path` announced, if it
/// recorded `[bgp]` settings; returns the routes file it emptied.
pub fn withdraw_recorded(pin_path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let state = state_path(pin_path);
    if !state.exists() {
        return Ok(None);
    }
    // The record names a command `xlb down` runs as root: only one root wrote will do.
    trusted_dir::check(Path::new(STATE_DIR))
        .and_then(|()| trusted_dir::check_entries(Path::new(STATE_DIR)))
        .context("refusing the [bgp] record of the daemon")?;
    let Ok(text) = std::fs::read_to_string(&state) else {
        return Ok(None);
    };
    let Ok(bgp) = serde_json::from_str::<Bgp>(&text) else {
        let _ = std::fs::remove_file(&state);
        return Ok(None);
    };
    let file = bgp.routes_file.clone();
    Announcer::new(bgp, pin_path).withdraw_all()?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

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
                reload: Reload::Shell {
                    command: format!("echo x >> {}", count.display()),
                },
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
                reload: Reload::Shell {
                    command: "exit 3".to_owned(),
                },
            },
            &dir.join("pins"),
        );
        let one: BTreeSet<IpAddr> = ["198.18.1.10".parse().unwrap()].into();
        assert!(announcer.update(&one).is_err());
        assert!(announcer.update(&one).is_err());
    }

    /// Test that the default reload runs birdc with the socket as one argument: a socket path
    /// holding shell syntax (`;touch${IFS}FILE;#`) reaches birdc verbatim, fails there, and
    /// runs nothing.
    #[test]
    fn birdc_gets_the_socket_as_an_argument_not_through_a_shell() {
        let planted = std::env::temp_dir().join(format!("xlb-bgp-pwned-{}", std::process::id()));
        let _ = std::fs::remove_file(&planted);
        let socket = format!("/run/xlb-no-bird.ctl;touch${{IFS}}{};#", planted.display());
        let err = reload(&Reload::Birdc {
            socket: socket.clone().into(),
        })
        .expect_err("no BIRD listens there");
        assert!(format!("{err:#}").contains(&socket), "{err:#}");
        assert!(
            !planted.exists(),
            "the socket path ran as a shell command: {} exists",
            planted.display()
        );
    }

    /// Test that the routes file is never written through a symlink planted at the old
    /// staging name or at the target, keeps mode 0644 (BIRD reads it as its own user), and
    /// that a directory other users can write is refused before anything is written.
    #[test]
    fn routes_file_is_replaced_not_written_through_planted_links() {
        let dir = std::env::temp_dir().join(format!("xlb-bgp-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        trusted_dir::create(&dir, 0o755).expect("scratch dir");
        let victim = dir.join("victim");
        std::fs::write(&victim, "root's file\n").unwrap();
        let routes = dir.join("vips.conf");
        std::os::unix::fs::symlink(&victim, dir.join(".vips.conf.xlb-tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &routes).unwrap();
        write_atomically(&routes, "route\n", 0o644).expect("write");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        let meta = routes.symlink_metadata().unwrap();
        assert!(meta.is_file(), "the routes file is still a link");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read_to_string(&routes).unwrap(), "route\n");

        let open = dir.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = write_atomically(&open.join("vips.conf"), "route\n", 0o644)
            .expect_err("a world-writable directory was used");
        assert!(
            format!("{err:#}").contains("writable by other users"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
