//! The control socket of `xlb run --config` (see [`crate::owner`]): how the verbs that change
//! live state ask the daemon to make the change, and how the daemon answers. The socket is
//! `/run/xlb/control-HASH.sock` (bpffs holds only BPF objects and directories, so it cannot
//! live beside the pins), mode 0600, or 0660 with group `xlb` when that group exists; never
//! TCP. Requests and replies are one JSON line each.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::IpAddr,
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    sync::mpsc,
};

use crate::{
    backend::BackendAction,
    exit::{self, Coded, NotLoaded},
    owner::run_file,
};

/// The group whose members may use the control socket besides root.
const GROUP: &str = "xlb";
/// How long a verb waits for the daemon's answer (an apply of a large config takes seconds).
const REPLY_WAIT: Duration = Duration::from_secs(120);
/// How long the daemon waits for a request line, or to write its answer.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The longest request or reply line.
const MAX_LINE: u64 = 1 << 20;

/// The control socket of the daemon owning `pin_path`.
pub fn socket_path(pin_path: &Path) -> PathBuf {
    run_file(pin_path, "control", "sock")
}

/// A connection to the daemon owning a pin path.
#[derive(Debug)]
pub struct Daemon {
    stream: UnixStream,
}

/// What a verb asks the daemon to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Check the daemon's config file now and apply it if `options` accept it (only its own
    /// file: the daemon keeps the live state in line with it, so another file's change would
    /// be undone). The answer is the verb's [`crate::apply::ApplyReport`], its findings naming
    /// the file as `shown` (the operator's spelling).
    Apply {
        file: PathBuf,
        shown: PathBuf,
        options: crate::apply::Options,
    },
    /// Drain, disable or enable a backend (`force`: even past alerts.max_share).
    Backend {
        vip: String,
        backend: IpAddr,
        action: BackendAction,
        force: bool,
    },
    /// Start a canary of `file` (a candidate, not the daemon's own file): `percent` of the
    /// hash space for `watch_ms`; promoted, it is written into the daemon's file.
    Canary {
        file: PathBuf,
        overrides: Vec<String>,
        percent: u32,
        watch_ms: u64,
    },
    /// Promote or abort the running canary now.
    CanaryEnd { action: crate::canary::CanaryAction },
    /// Withdraw from BGP, remove the pins (detaching the program) and exit.
    Down,
    /// Say who you are (the reply is the daemon's [`Identity`]).
    Identify,
}

/// The daemon's answer to [`Request::Identify`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    /// The config file the daemon keeps live, as an absolute path.
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

impl Daemon {
    /// The daemon owning `pin_path`, if one answers.
    pub(crate) fn connect(pin_path: &Path) -> anyhow::Result<Option<Daemon>> {
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

/// Whether `a` and `b` name the same file (as spelled, if either cannot be resolved).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes.
fn read_line<T: DeserializeOwned>(stream: &mut impl std::io::Read) -> anyhow::Result<T> {
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE)).read_line(&mut line)?;
    anyhow::ensure!(line.ends_with('\n'), "no complete line");
    Ok(serde_json::from_str(&line)?)
}

/// Binds the socket at a temporary name, restricts it, then renames it into place: nobody can
/// connect before its permissions are set. A socket left by a killed daemon is replaced.
pub(crate) fn bind(socket: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
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
}
