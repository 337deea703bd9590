//! One owner of the live state. While `xlb run --config` runs it is the only writer of its pin
//! path: it holds the pin directory's lock for its whole life and answers the verbs that change
//! live state (`apply`, `backend`, `down`) on its control socket ([`crate::control`]), so it
//! records each change and keeps it. Without a daemon those verbs take the same lock and write
//! directly, so two writers never interleave.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    control::{self, Daemon, Identity, Request},
    exit::{self, Coded},
    rollout::fnv1a,
};

/// Where xlb keeps files for a pin path (bpffs holds only BPF objects).
pub const RUN_DIR: &str = "/run/xlb";
/// How long a writer waits for another writer's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting writer looks again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// `RUN_DIR/KIND-HASH.EXTENSION`: a file kept for the xlb pinned at `pin_path` (HASH names
/// the absolute pin path, so the name stays short whatever the path).
pub fn run_file(pin_path: &Path, kind: &str, extension: &str) -> PathBuf {
    let absolute = std::path::absolute(pin_path).unwrap_or_else(|_| pin_path.to_path_buf());
    let hash = fnv1a(absolute.as_os_str().as_encoded_bytes().iter().copied());
    Path::new(RUN_DIR).join(format!("{kind}-{hash:016x}.{extension}"))
}

/// An exclusive lock on a pin directory (flock), released when dropped.
#[derive(Debug)]
pub struct PinLock {
    _dir: File,
}

impl PinLock {
    /// The lock, or `None` while another process holds it.
    fn try_take(pin_path: &Path) -> anyhow::Result<Option<PinLock>> {
        let dir = File::open(pin_path)
            .with_context(|| format!("opening the pin directory {}", pin_path.display()))?;
        match dir.try_lock() {
            Ok(()) => Ok(Some(PinLock { _dir: dir })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(err)
                .with_context(|| format!("locking the pin directory {}", pin_path.display())),
        }
    }
}

/// A verb that changes live state asks the daemon to make the change (the daemon is the only
/// writer), or writes directly holding the pin directory's lock.
#[derive(Debug)]
pub enum Writer {
    Daemon(Daemon),
    Direct(PinLock),
}

/// Who writes to `pin_path`: the daemon owning it, or this process under the lock. Waits up to
/// [`LOCK_WAIT`] for another direct writer to finish.
pub fn writer(pin_path: &Path) -> anyhow::Result<Writer> {
    crate::pins::visible(pin_path)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if let Some(daemon) = Daemon::connect(pin_path)? {
            return Ok(Writer::Daemon(daemon));
        }
        // The daemon takes the lock before it opens its socket: holding the lock means no
        // daemon owns the pins.
        if let Some(lock) = PinLock::try_take(pin_path)? {
            return Ok(Writer::Direct(lock));
        }
        if Instant::now() >= deadline {
            return Err(Coded(
                exit::FAILED,
                format!(
                    "another xlb has held the lock on {} for {LOCK_WAIT:?} and answers on no \
                     control socket: find it with `fuser -v {}` and wait for it or stop it",
                    pin_path.display(),
                    pin_path.display()
                ),
            )
            .into());
        }
        std::thread::sleep(LOCK_POLL);
    }
}

/// The daemon's side: holds the pin directory's lock and the control socket, and removes the
/// socket when dropped.
#[derive(Debug)]
pub struct Owner {
    _lock: PinLock,
    socket: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl Owner {
    /// Takes ownership of `pin_path` (creating the directory): waits for a direct writer to
    /// finish, refuses when another daemon owns it, then opens the control socket.
    pub fn take(pin_path: &Path) -> anyhow::Result<Owner> {
        std::fs::create_dir_all(pin_path)
            .with_context(|| format!("creating {}: is bpffs mounted?", pin_path.display()))?;
        let deadline = Instant::now() + LOCK_WAIT;
        let lock = loop {
            if let Some(lock) = PinLock::try_take(pin_path)? {
                break lock;
            }
            if let Some(daemon) = Daemon::connect(pin_path)? {
                let (pid, identity) = daemon.ask::<Identity>(&Request::Identify)?;
                return Err(Coded(
                    exit::FAILED,
                    format!(
                        "another xlb run (pid {pid}, config {}) owns {}: stop it first, or give \
                         this one another global.pin_path",
                        identity.config.display(),
                        pin_path.display()
                    ),
                )
                .into());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "another xlb has held the lock on {} for {LOCK_WAIT:?}: find it with \
                 `fuser -v {}`",
                pin_path.display(),
                pin_path.display()
            );
            std::thread::sleep(LOCK_POLL);
        };
        let socket = control::socket_path(pin_path);
        let listener = control::bind(&socket)?;
        Ok(Owner {
            _lock: lock,
            socket,
            listener: Some(listener),
        })
    }

    /// The control socket's listener, for the daemon to serve (once).
    pub fn listener(&mut self) -> anyhow::Result<tokio::net::UnixListener> {
        let listener = self.listener.take().context("the listener was taken")?;
        listener.set_nonblocking(true)?;
        Ok(tokio::net::UnixListener::from_std(listener)?)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that a second lock on a locked pin directory is refused until the first goes.
    #[test]
    fn pin_lock_excludes_a_second_writer() {
        let dir = std::env::temp_dir().join(format!("xlb-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let first = PinLock::try_take(&dir).expect("lock").expect("free");
        assert!(PinLock::try_take(&dir).expect("lock").is_none());
        drop(first);
        assert!(PinLock::try_take(&dir).expect("lock").is_some());
        let _ = std::fs::remove_dir(&dir);
    }
}
