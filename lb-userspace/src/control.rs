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
    owner::{RUN_DIR, run_file},
};

/// The group whose members may use the control socket besides root.
const GROUP: &str = "xlb";
/// How long a verb waits for the daemon's answer (an apply of a large config takes seconds).
const REPLY_WAIT: Duration = Duration::from_secs(120);
/// How long the daemon waits for a request line, or to write its answer.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// How long `xlb apply` waits for each running daemon to say which config it keeps: one busy
/// longer (a first apply at scale) is then found through the pin path its file names.
const IDENTIFY_WAIT: Duration = Duration::from_secs(1);
/// The longest request or reply line.
const MAX_LINE: u64 = 1 << 20;
/// The control socket's name in [`RUN_DIR`]: `KIND-HASH.EXTENSION` (see [`run_file`]).
const SOCKET_KIND: &str = "control";
const SOCKET_EXTENSION: &str = "sock";

/// The control socket of the daemon owning `pin_path`.
pub fn socket_path(pin_path: &Path) -> PathBuf {
    run_file(pin_path, SOCKET_KIND, SOCKET_EXTENSION)
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

    /// The running daemon whose config is `file`, found by asking each control socket in
    /// [`RUN_DIR`] (see [`keeping_in`]) rather than by reading `file` for the pin path it
    /// names: that is a 10 MB read and scan at 1,000 VIPs.
    pub(crate) fn keeping(file: &Path) -> Option<Daemon> {
        keeping_in(Path::new(RUN_DIR), file)
    }

    /// A connection to the control socket `socket`, if it accepts one.
    fn at(socket: &Path) -> Option<Daemon> {
        UnixStream::connect(socket)
            .ok()
            .map(|stream| Daemon { stream })
    }

    /// Sends `request` and returns the daemon's report (as `T`), or its refusal as an error
    /// carrying the exit code.
    pub fn ask<T: DeserializeOwned>(self, request: &Request) -> anyhow::Result<(u32, T)> {
        self.ask_within(request, REPLY_WAIT)
    }

    /// [`Daemon::ask`], waiting at most `wait` for the answer.
    fn ask_within<T: DeserializeOwned>(
        mut self,
        request: &Request,
        wait: Duration,
    ) -> anyhow::Result<(u32, T)> {
        self.stream.set_read_timeout(Some(wait))?;
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

/// The daemon, among those with a control socket in `dir`, whose config is `file` (a new
/// connection to it). A socket that refuses (left by a killed daemon) or that this user may not
/// use is passed over, as is a daemon that does not answer within [`IDENTIFY_WAIT`]: the caller
/// then looks where `file` says, and says why if that fails.
fn keeping_in(dir: &Path, file: &Path) -> Option<Daemon> {
    let prefix = format!("{SOCKET_KIND}-");
    let suffix = format!(".{SOCKET_EXTENSION}");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(&suffix)
        })
        .find_map(|entry| {
            let socket = entry.path();
            let (_, identity) = Daemon::at(&socket)?
                .ask_within::<Identity>(&Request::Identify, IDENTIFY_WAIT)
                .ok()?;
            same_file(file, &identity.config)
                .then(|| Daemon::at(&socket))
                .flatten()
        })
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

    /// A daemon's control socket named for `pin_path` in `dir`, served by a thread that
    /// answers every request with daemon `pid`'s identity: it keeps `config`.
    fn fake_daemon(dir: &Path, pin_path: &str, pid: u32, config: &Path) {
        let name = socket_path(Path::new(pin_path));
        let socket = dir.join(name.file_name().expect("a socket name"));
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
        let reply = Reply {
            pid,
            outcome: Ok(serde_json::to_value(Identity {
                config: config.to_path_buf(),
            })
            .expect("identity")),
        };
        let mut line = serde_json::to_vec(&reply).expect("reply");
        line.push(b'\n');
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = String::new();
                let _ = BufReader::new(&mut stream).read_line(&mut request);
                let _ = stream.write_all(&line);
            }
        });
    }

    /// Test that `xlb apply FILE` finds the daemon whose config is FILE among the control
    /// sockets of the run directory without reading FILE: past a socket left by a killed
    /// daemon, a daemon keeping another file and files that are no control socket, whatever
    /// the spelling of FILE; and none when no daemon keeps it.
    #[test]
    fn the_daemon_keeping_a_file_is_found_among_the_sockets() {
        let run = tempfile::tempdir().expect("run dir");
        let configs = tempfile::tempdir().expect("config dir");
        let (mine, other) = (
            configs.path().join("xlb.toml"),
            configs.path().join("b.toml"),
        );
        for file in [&mine, &other] {
            std::fs::write(file, "not read").expect("config");
        }
        let stale = run.path().join(
            socket_path(Path::new("/sys/fs/bpf/killed"))
                .file_name()
                .expect("a socket name"),
        );
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        std::fs::write(run.path().join("names-0123456789abcdef.json"), "{}").expect("names");
        fake_daemon(run.path(), "/sys/fs/bpf/other", 11, &other);
        fake_daemon(run.path(), "/sys/fs/bpf/mine", 22, &mine);

        let spelled = configs.path().join(".").join("xlb.toml");
        let daemon = keeping_in(run.path(), &spelled).expect("the daemon keeping xlb.toml");
        let (pid, identity) = daemon
            .ask::<Identity>(&Request::Identify)
            .expect("an answer");
        assert_eq!((pid, identity.config), (22, mine));
        let elsewhere = configs.path().join("c.toml");
        assert!(keeping_in(run.path(), &elsewhere).is_none());
        assert!(keeping_in(&run.path().join("missing"), &spelled).is_none());
    }
}
