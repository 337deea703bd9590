//! The backend servers of the namespace tests: each answers a connection with its name, then
//! echoes until the client closes, the test ends or a connection's time is up — so tests can
//! both see where a connection went and keep long-lived streams open.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How often server threads look at their stop flags.
const POLL: Duration = Duration::from_millis(50);
/// The longest a server keeps one connection: every stream of a test ends well before.
const MAX_CONNECTION: Duration = Duration::from_secs(90);

/// Reads one line (without its newline) of at most 64 bytes.
pub fn read_line(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match stream.read(&mut byte) {
            Ok(0) => bail!("closed after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err).context("reading the backend's name"),
        }
    }
    bail!("no line end in {:?}", String::from_utf8_lossy(&line))
}

/// State shared by every server of a lab.
#[derive(Default)]
pub struct Shared {
    /// Set when the lab goes: every connection handler ends.
    pub shutdown: AtomicBool,
    /// Connection handlers, joined when the lab goes.
    pub handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Waits for every connection handler to end (after the shutdown flag is set).
    pub fn join_handlers(&self) {
        let handlers = std::mem::take(
            &mut *self
                .handlers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

/// Accepts on `listener` (non-blocking) until `stop` or the shutdown flag is set, serving
/// each connection on its own thread as the backend `name`.
pub fn accept(listener: &TcpListener, name: &str, stop: &AtomicBool, shared: &Arc<Shared>) {
    while !stop.load(Ordering::Relaxed) && !shared.shutdown.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a socket this function borrows.
        if unsafe { libc::poll(&mut poll, 1, POLL.as_millis() as i32) } <= 0 {
            continue;
        }
        while let Ok((stream, _)) = listener.accept() {
            let reply = format!("{name}\n");
            let handler_shared = Arc::clone(shared);
            let handler = std::thread::spawn(move || serve(stream, &reply, &handler_shared));
            let mut handlers = shared
                .handlers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            handlers.retain(|h| !h.is_finished());
            handlers.push(handler);
        }
    }
}

/// Answers the backend's name, then echoes until the client closes, the lab goes, or
/// MAX_CONNECTION passes.
fn serve(mut stream: TcpStream, reply: &str, shared: &Shared) {
    let deadline = Instant::now() + MAX_CONNECTION;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(reply.as_bytes()).is_err() {
        return;
    }
    let mut buffer = [0u8; 512];
    while !shared.shutdown.load(Ordering::Relaxed) && Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}
