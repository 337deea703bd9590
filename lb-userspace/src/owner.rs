//! One owner of the live state. While `xlb run --config` runs it is the only writer of its pin
//! path: it holds the pin directory's lock for its whole life and answers the verbs that change
//! live state (`apply`, `backend`, `down`) on a local control socket, so it records each change
//! and keeps it. Without a daemon those verbs take the same lock and write directly, so two
//! writers never interleave.
//!
//! The socket cannot live in the pin directory (bpffs holds only BPF objects and directories):
//! it is `/run/xlb/control-HASH.sock`, HASH naming the pin path, mode 0600 (0660 with group
//! `xlb` when that group exists). Requests and replies are one JSON line each.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::IpAddr,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    sync::mpsc,
};

use crate::{
    args::BackendAction,
    exit::{self, Coded, NotLoaded},
    rollout::config_hash,
};

/// Where control sockets live.
pub const RUN_DIR: &str = "/run/xlb";
/// The group whose members may use the control socket besides root.
const GROUP: &str = "xlb";
/// How long a writer waits for another writer's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting writer looks again.
const LOCK_POLL: Duration = Duration::from_millis(50);
/// How long a verb waits for the daemon's answer (an apply of a large config takes seconds).
const REPLY_WAIT: Duration = Duration::from_secs(120);
/// How long the daemon waits for a request line, or to write its answer.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The longest request or reply line.
pub const MAX_LINE: u64 = 1 << 20;

/// The control socket of the daemon owning `pin_path`.
pub fn socket_path(pin_path: &Path) -> PathBuf {
    run_file(pin_path, "control", "sock")
}

/// `RUN_DIR/KIND-HASH.EXTENSION`: a file kept for the xlb pinned at `pin_path` (HASH names
/// the absolute pin path, so the name stays short whatever the path).
pub fn run_file(pin_path: &Path, kind: &str, extension: &str) -> PathBuf {
    let absolute = std::path::absolute(pin_path).unwrap_or_else(|_| pin_path.to_path_buf());
    let hash = config_hash(absolute.as_os_str().as_encoded_bytes());
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

/// A connection to the daemon owning a pin path.
#[derive(Debug)]
pub struct Daemon {
    stream: UnixStream,
}

/// What a verb asks the daemon to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Reload the daemon's config file now (only its own file: the daemon keeps the live state
    /// in line with it, so another file's change would be undone), with these overrides.
    Apply {
        file: PathBuf,
        overrides: Vec<String>,
    },
    /// Drain, disable or enable a backend.
    Backend {
        vip: String,
        backend: IpAddr,
        action: BackendAction,
    },
    /// Withdraw from BGP, remove the pins (detaching the program) and exit.
    Down,
    /// Say who you are (the reply is the daemon's [`Identity`]).
    Identify,
}

/// The daemon's answer to [`Request::Identify`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    /// The config file the daemon keeps live.
    pub config: PathBuf,
}

/// The daemon's answer: its pid, and the verb's report or why it refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub pid: u32,
    pub outcome: Result<serde_json::Value, Refusal>,
}

/// Why the daemon did not do what it was asked: the message and the verb's exit code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refusal {
    pub code: u8,
    pub message: String,
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

impl Daemon {
    /// The daemon owning `pin_path`, if one answers.
    fn connect(pin_path: &Path) -> anyhow::Result<Option<Daemon>> {
        let socket = socket_path(pin_path);
        match UnixStream::connect(&socket) {
            Ok(stream) => Ok(Some(Daemon { stream })),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(NotLoaded(format!(
                    "an xlb daemon owns {} and only root (or group `{GROUP}`) may use its \
                     control socket {}: run as root",
                    pin_path.display(),
                    socket.display()
                ))
                .into())
            }
            Err(err) => Err(err).with_context(|| format!("connecting to {}", socket.display())),
        }
    }

    /// Sends `request` and returns the daemon's report (as `T`), or its refusal as an error
    /// carrying the exit code.
    pub fn ask<T: DeserializeOwned>(mut self, request: &Request) -> anyhow::Result<(u32, T)> {
        self.stream.set_read_timeout(Some(REPLY_WAIT))?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .context("sending the request to the xlb daemon")?;
        let reply: Reply =
            read_line(&mut self.stream).context("the xlb daemon gave no answer (did it stop?)")?;
        let pid = reply.pid;
        match reply.outcome {
            Ok(value) => Ok((
                pid,
                serde_json::from_value(value).context("the xlb daemon's answer is malformed")?,
            )),
            Err(refusal) => Err(Coded(
                refusal.code,
                format!("xlb run (pid {pid}): {}", refusal.message),
            )
            .into()),
        }
    }
}

/// A request as the daemon receives it, with the connection to answer on.
pub type Incoming = (Request, tokio::net::UnixStream);

/// Accepts connections on the control socket and passes each request to the daemon's loop
/// through `requests`; a connection that sends no valid request line is answered here.
pub async fn serve(listener: tokio::net::UnixListener, requests: mpsc::Sender<Incoming>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_WAIT, receive(stream, requests)).await;
        });
    }
}

/// Reads one request line from `stream` and queues it with the stream.
async fn receive(
    mut stream: tokio::net::UnixStream,
    requests: mpsc::Sender<Incoming>,
) -> anyhow::Result<()> {
    let mut line = Vec::new();
    {
        let mut reader = tokio::io::BufReader::new((&mut stream).take(MAX_LINE));
        reader.read_until(b'\n', &mut line).await?;
    }
    match serde_json::from_slice::<Request>(&line) {
        Ok(request) => requests.send((request, stream)).await?,
        Err(err) => {
            let refusal = Refusal {
                code: exit::FAILED,
                message: format!("malformed request ({err}): use the xlb of the same version"),
            };
            answer(&mut stream, Err(refusal)).await?;
        }
    }
    Ok(())
}

/// Writes the daemon's reply to a request.
pub async fn answer(
    stream: &mut tokio::net::UnixStream,
    outcome: Result<serde_json::Value, Refusal>,
) -> anyhow::Result<()> {
    let reply = Reply {
        pid: std::process::id(),
        outcome,
    };
    let mut line = serde_json::to_vec(&reply)?;
    line.push(b'\n');
    tokio::time::timeout(REQUEST_WAIT, stream.write_all(&line)).await??;
    Ok(())
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes.
pub fn read_line<T: DeserializeOwned>(stream: &mut impl std::io::Read) -> anyhow::Result<T> {
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE)).read_line(&mut line)?;
    anyhow::ensure!(line.ends_with('\n'), "no complete line");
    Ok(serde_json::from_str(&line)?)
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
        let socket = socket_path(pin_path);
        let listener = bind(&socket)?;
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

/// Binds the socket at a temporary name, restricts it, then renames it into place: nobody can
/// connect before its permissions are set. A socket left by a killed daemon is replaced.
fn bind(socket: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    let dir = socket.parent().context("the socket has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = socket.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = std::os::unix::net::UnixListener::bind(&staging)
        .with_context(|| format!("opening the control socket {}", staging.display()))?;
    let restrict = || -> std::io::Result<()> {
        let mode = match group_id(GROUP) {
            Some(gid) => {
                std::os::unix::fs::chown(&staging, None, Some(gid))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staging, socket)
    };
    if let Err(err) = restrict() {
        let _ = std::fs::remove_file(&staging);
        return Err(err).with_context(|| format!("setting up {}", socket.display()));
    }
    Ok(listener)
}

/// The id of group `name` from /etc/group, if it exists.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that every spelling of a pin path names one socket, distinct pin paths distinct
    /// sockets, and the socket path fits in sun_path (108 bytes) however long the pin path.
    #[test]
    fn socket_path_names_the_pin_path() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            socket_path(&cwd.join("pins")),
            socket_path(Path::new("pins"))
        );
        assert_ne!(
            socket_path(Path::new("/sys/fs/bpf/a")),
            socket_path(Path::new("/sys/fs/bpf/b"))
        );
        let long = Path::new("/sys/fs/bpf").join("x".repeat(200));
        assert!(socket_path(&long).as_os_str().len() < 108);
    }

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
