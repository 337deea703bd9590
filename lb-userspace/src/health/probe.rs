//! One probe of one backend: a TCP connection, or an HTTP GET whose status line is checked.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::{CheckKind, HealthCheck};

/// The most bytes read while looking for the end of the status line. A real one is a few dozen
/// bytes; more without a line end is not an HTTP answer (a backend must not keep a probe
/// reading forever, nor pass by sending "HTTP/1.1 200 " and junk).
const MAX_STATUS_LINE: usize = 2048;

/// Why a probe failed, kept as data: a backend that refuses every second costs no text until
/// a transition or a log shows it. Displays as e.g. "connect to 198.18.0.10:80: connection
/// refused", "connect to 198.18.0.10:80: timed out after 500 ms", "GET / answered 503,
/// expected 200".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection was not made.
    Connect { address: SocketAddr, cause: Cause },
    /// An HTTP check's exchange failed, in words.
    Http(String),
}

/// Why a connection was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The connect failed with this error (its OS error number, if it has one).
    Io {
        kind: io::ErrorKind,
        os: Option<i32>,
    },
    /// Not made within the check's timeout.
    TimedOut(Duration),
}

impl From<&io::Error> for Cause {
    fn from(err: &io::Error) -> Cause {
        Cause::Io {
            kind: err.kind(),
            os: err.raw_os_error(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::Io { kind, os } => match (phrase(kind), os) {
                (Some(phrase), _) => f.write_str(phrase),
                (None, Some(code)) => write!(f, "{}", io::Error::from_raw_os_error(code)),
                (None, None) => write!(f, "{}", io::Error::from(kind)),
            },
            Cause::TimedOut(after) => write!(f, "timed out after {} ms", after.as_millis()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect { address, cause } => write!(f, "connect to {address}: {cause}"),
            Failure::Http(text) => f.write_str(text),
        }
    }
}

/// One probe. TCP: a connection to `backend:port` is accepted within the timeout. HTTP:
/// `GET path HTTP/1.1` with `Host` and `Connection: close` is answered with `expect_status`
/// within the timeout. The failure says what failed (see [`Failure`]).
pub async fn probe(backend: IpAddr, check: &HealthCheck) -> Result<(), Failure> {
    Connector::default().probe(backend, check).await
}

/// The connections of one target's probes. A backend that refuses keeps refusing, probe
/// after probe: the socket of a failed connect is kept for the next one (Linux connects a
/// TCP socket again once its connect failed), so such a probe costs two `connect` calls and
/// an epoll registration and removal, without a socket made and freed and an error read. A
/// connection made, or one that timed out, is closed as always, and the next probe opens a
/// new socket. A kept socket holds a descriptor between probes; the probes of a round start
/// together, so each target's probe held one at the same moment anyway.
#[derive(Debug, Default)]
pub struct Connector {
    kept: Option<Socket>,
}

/// How a connect in progress ended, as a second `connect` tells.
enum Connect {
    Made,
    Pending,
    Failed(io::Error),
}

impl Connector {
    /// [`probe`], with this target's kept socket.
    pub async fn probe(&mut self, backend: IpAddr, check: &HealthCheck) -> Result<(), Failure> {
        let address = SocketAddr::new(backend, check.port);
        // One deadline for the whole probe, so an HTTP check's connect and answer share the
        // timeout.
        let deadline = Instant::now() + check.timeout;

        let connect = timeout_at(deadline, self.connect(address)).await;
        let socket = match connect {
            Ok(Ok(socket)) => socket,
            Ok(Err(err)) => {
                let cause = Cause::from(&err);
                return Err(Failure::Connect { address, cause });
            }
            Err(_) => {
                let cause = Cause::TimedOut(check.timeout);
                return Err(Failure::Connect { address, cause });
            }
        };
        let CheckKind::Http {
            path,
            expect_status,
        } = &check.check
        else {
            return Ok(());
        };
        let mut stream = TcpStream::from_std(socket.into_inner().into()).map_err(|err| {
            let cause = Cause::from(&err);
            Failure::Connect { address, cause }
        })?;
        let status = match timeout_at(deadline, get_status(&mut stream, address, path)).await {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => return Err(Failure::Http(format!("GET {path} on {address}: {err}"))),
            Err(_) => {
                let cause = Cause::TimedOut(check.timeout);
                return Err(Failure::Http(format!("GET {path} on {address}: {cause}")));
            }
        };
        if status == *expect_status {
            Ok(())
        } else {
            Err(Failure::Http(format!(
                "GET {path} answered {status}, expected {expect_status}"
            )))
        }
    }

    /// A socket connected to `address`: the kept one, or a new one. A connect that failed
    /// keeps the socket for the next probe; one that could not start, or was cut short by the
    /// timeout, closes it.
    async fn connect(&mut self, address: SocketAddr) -> io::Result<AsyncFd<Socket>> {
        let socket = match self.kept.take() {
            Some(kept) => kept,
            None => Socket::new(
                Domain::for_address(address),
                Type::STREAM.nonblocking(),
                None,
            )?,
        };
        match socket.connect(&address.into()) {
            Ok(()) => return register(socket),
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(err) => return Err(err),
        }
        // Registered once the connect is under way, and only until it ends: an unconnected
        // socket reads as closed, and tokio keeps "closed" for good.
        let socket = register(socket)?;
        loop {
            let mut ready = socket.writable().await?;
            // Connecting again says how the first connect ended; after a failure it returns
            // the error and leaves the socket unconnected, ready for the next probe.
            let ended = match socket.get_ref().connect(&address.into()) {
                Ok(()) => Connect::Made,
                Err(err) => match err.raw_os_error() {
                    Some(libc::EISCONN) => Connect::Made,
                    Some(libc::EALREADY | libc::EINPROGRESS) => Connect::Pending,
                    _ => Connect::Failed(err),
                },
            };
            match ended {
                Connect::Made => {
                    drop(ready);
                    return Ok(socket);
                }
                Connect::Pending => ready.clear_ready(),
                Connect::Failed(err) => {
                    drop(ready);
                    self.kept = Some(socket.into_inner());
                    return Err(err);
                }
            }
        }
    }
}

/// `socket` registered with tokio's reactor for writability (a connect's end).
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: the socket owns its descriptor and keeps it open, the same one, for as long as
    // the AsyncFd holds it (until dropped or `into_inner`).
    unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE) }.map_err(io::Error::from)
}

/// Sends the request and reads the status code of the answer.
async fn get_status(
    stream: &mut TcpStream,
    address: SocketAddr,
    path: &str,
) -> Result<u16, String> {
    // RFC 9112 3.2: Host carries the port unless it is the scheme's default; an IPv6 literal
    // goes in brackets, as in a URI.
    let host = match (address.ip(), address.port()) {
        (IpAddr::V4(ip), 80) => ip.to_string(),
        (IpAddr::V6(ip), 80) => format!("[{ip}]"),
        _ => address.to_string(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xlb-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("sending the request: {}", describe(&err)))?;
    let line = read_status_line(stream).await?;
    parse_status(&line).ok_or_else(|| {
        let shown: String = String::from_utf8_lossy(&line).chars().take(60).collect();
        format!("the answer is not HTTP: it starts {shown:?}, not \"HTTP/1.1 200 OK\"")
    })
}

/// The first line of the answer without its CRLF. RFC 9112 2.2 ends a status line with CRLF:
/// one that ends at EOF, or runs past [`MAX_STATUS_LINE`] bytes without a line end, is not an
/// answer, whatever it starts with.
async fn read_status_line(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::with_capacity(128);
    let mut chunk = [0; 512];
    loop {
        if let Some(end) = line.iter().position(|&b| b == b'\n')
            && end <= MAX_STATUS_LINE
        {
            line.truncate(end);
            if line.pop() != Some(b'\r') {
                return Err("the status line ends in a bare LF, not CRLF".to_owned());
            }
            return Ok(line);
        }
        if line.len() > MAX_STATUS_LINE {
            return Err(format!(
                "no line end in the first {MAX_STATUS_LINE} bytes of the answer"
            ));
        }
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|err| format!("reading the answer: {}", describe(&err)))?;
        if read == 0 {
            return Err(if line.is_empty() {
                "the connection closed without an answer".to_owned()
            } else {
                let shown: String = String::from_utf8_lossy(&line).chars().take(60).collect();
                format!("the connection closed in the status line {shown:?}, before its CRLF")
            });
        }
        line.extend_from_slice(&chunk[..read]);
    }
}

/// The status code of a status line, `HTTP/1.1 200 OK` (RFC 9112 4: version, space, three
/// digits, then a space and a reason of visible characters, blanks and obs-text, which may be
/// empty; the space is optional here, as some servers leave it out).
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let (version, rest) = rest.split_at_checked(3)?;
    if !matches!(version, [major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit())
    {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let (code, reason) = rest.split_at_checked(3)?;
    let reason_ok = match reason {
        [] => true,
        [b' ', text @ ..] => text
            .iter()
            .all(|&b| b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80),
        _ => false,
    };
    if !code.iter().all(u8::is_ascii_digit) || !reason_ok {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// An I/O error as a short phrase: "connection refused" rather than "Connection refused (os
/// error 111)".
fn describe(err: &io::Error) -> String {
    phrase(err.kind()).map_or_else(|| err.to_string(), str::to_owned)
}

/// The short phrase for the errors a probe meets most, if `kind` is one of them.
fn phrase(kind: io::ErrorKind) -> Option<&'static str> {
    Some(match kind {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by the backend",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe => "the backend closed the connection",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "no local address can reach it",
        io::ErrorKind::TimedOut => "timed out in the kernel",
        _ => return None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::{Ipv4Addr, TcpStream as StdTcpStream};
    use std::time::Duration;

    use tokio::io::AsyncBufReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const TIMEOUT: Duration = Duration::from_millis(300);
    /// How late past its timeout a probe may end (a loaded CI host).
    const SLACK: Duration = Duration::from_millis(700);

    fn tcp(port: u16) -> HealthCheck {
        HealthCheck {
            check: CheckKind::Tcp,
            port,
            interval: Duration::from_secs(1),
            timeout: TIMEOUT,
            rise: 2,
            fall: 3,
        }
    }

    fn http(port: u16, path: &str, expect_status: u16) -> HealthCheck {
        HealthCheck {
            check: CheckKind::Http {
                path: path.to_owned(),
                expect_status,
            },
            ..tcp(port)
        }
    }

    /// A port that refuses connections and stays so: a socket bound to it that never listens
    /// (connects get a reset), held by the returned socket so no parallel test can take it.
    pub(crate) fn refusing_port() -> (TcpSocket, u16) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).expect("bind");
        let port = socket.local_addr().expect("local address").port();
        (socket, port)
    }

    /// A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs
    /// until its own timeout. Returns the listener and the connections that fill it, which must
    /// stay open.
    fn full_listener() -> (TcpListener, u16, Vec<StdTcpStream>) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).expect("bind");
        let port = socket.local_addr().expect("local address").port();
        // Backlog 0: Linux still queues one connection, so a couple of connects fill it.
        let listener = socket.listen(0).expect("listen");
        let mut fillers = Vec::new();
        for _ in 0..16 {
            let address = SocketAddr::new(LOOPBACK, port);
            match StdTcpStream::connect_timeout(&address, Duration::from_millis(200)) {
                Ok(stream) => fillers.push(stream),
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return (listener, port, fillers);
                }
                Err(err) => panic!("filling the accept queue of port {port}: {err}"),
            }
        }
        panic!("the accept queue of port {port} never filled after 16 connections");
    }

    /// A loopback HTTP server that reads one request per connection, sends `answer` (or nothing
    /// if `None`, holding the connection open) and hands the request head back.
    async fn server(
        answer: Option<&'static str>,
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let (requests, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let _ = requests.send(head);
                    match answer {
                        Some(answer) => {
                            let _ = stream.get_mut().write_all(answer.as_bytes()).await;
                        }
                        // Never answer; the probe's timeout must end it.
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        (port, received)
    }

    /// Runs a probe, panicking if it takes longer than its timeout and the slack.
    async fn timed_probe(check: &HealthCheck) -> (Result<(), String>, Duration) {
        let started = Instant::now();
        let result = tokio::time::timeout(check.timeout + SLACK, probe(LOOPBACK, check))
            .await
            .unwrap_or_else(|_| panic!("the probe outlived its timeout of {:?}", check.timeout));
        (
            result.map_err(|failure| failure.to_string()),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn tcp_probe_of_a_listening_port_succeeds() {
        // Test that a TCP check passes as soon as the connection is accepted.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let (result, _) = timed_probe(&tcp(port)).await;
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn tcp_probe_of_a_closed_port_names_the_refusal() {
        // Test that a refused connection fails at once, naming the address and the refusal.
        let (_held, port) = refusing_port();
        let (result, took) = timed_probe(&tcp(port)).await;
        assert_eq!(
            result,
            Err(format!("connect to 127.0.0.1:{port}: connection refused"))
        );
        assert!(took < TIMEOUT, "a refusal took {took:?}");
    }

    /// Test that a refused probe keeps its socket for the next one, which connects it again
    /// (and is refused again, naming the refusal), and that the kept socket connects once the
    /// backend listens.
    #[tokio::test]
    async fn a_refused_probe_keeps_its_socket_for_the_next() {
        use std::os::fd::AsRawFd as _;
        let (held, port) = refusing_port();
        let mut connector = Connector::default();
        let kept = |connector: &Connector| connector.kept.as_ref().map(|s| s.as_raw_fd());
        let refused = Err(format!("connect to 127.0.0.1:{port}: connection refused"));
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let result = connector.probe(LOOPBACK, &tcp(port)).await;
            assert_eq!(result.map_err(|failure| failure.to_string()), refused);
            sockets.extend(kept(&connector));
        }
        assert_eq!(sockets.len(), 3, "the refused socket is kept");
        assert!(
            sockets.iter().all(|s| *s == sockets[0]),
            "one socket: {sockets:?}"
        );
        let _listener = held.listen(16).expect("listen");
        assert_eq!(connector.probe(LOOPBACK, &tcp(port)).await, Ok(()));
        assert_eq!(kept(&connector), None, "a connection made is closed");
    }

    #[tokio::test]
    async fn tcp_probe_of_a_silent_endpoint_times_out() {
        // Test that a connection the backend never completes fails after the timeout, not before
        // and not long after.
        let (_listener, port, _fillers) = full_listener();
        let (result, took) = timed_probe(&tcp(port)).await;
        assert_eq!(
            result,
            Err(format!(
                "connect to 127.0.0.1:{port}: timed out after 300 ms"
            ))
        );
        assert!(took >= TIMEOUT, "timed out early, after {took:?}");
    }

    #[tokio::test]
    async fn http_probe_answered_with_the_expected_status_succeeds() {
        // Test that an HTTP check sends a GET with Host and Connection: close and passes on the
        // expected status.
        let (port, mut requests) =
            server(Some("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
        let (result, _) = timed_probe(&http(port, "/healthz", 200)).await;
        assert_eq!(result, Ok(()));
        let head = requests.recv().await.expect("the request");
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("GET /healthz HTTP/1.1"));
        let headers: Vec<&str> = lines.collect();
        assert!(
            headers.contains(&format!("Host: 127.0.0.1:{port}").as_str()),
            "{head}"
        );
        assert!(headers.contains(&"Connection: close"), "{head}");
    }

    #[tokio::test]
    async fn http_probe_answered_with_another_status_names_both() {
        // Test that a 503 where 200 is expected fails, naming the status and the expectation.
        let (port, _requests) = server(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n")).await;
        let (result, _) = timed_probe(&http(port, "/", 200)).await;
        assert_eq!(result, Err("GET / answered 503, expected 200".to_owned()));
    }

    #[tokio::test]
    async fn http_probe_expecting_a_non_200_status_accepts_it() {
        // Test that expect_status is what counts, not success: a 204 passes when 204 is
        // expected, and a status line without a reason phrase is accepted.
        let (port, _requests) = server(Some("HTTP/1.0 204\r\n\r\n")).await;
        let (result, _) = timed_probe(&http(port, "/ready", 204)).await;
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn http_probe_answered_with_garbage_fails() {
        // Test that an answer that is not HTTP fails and quotes what came back.
        let (port, _requests) = server(Some("SSH-2.0-OpenSSH_9.6\r\n")).await;
        let (result, _) = timed_probe(&http(port, "/", 200)).await;
        let err = result.expect_err("garbage passed");
        assert!(err.starts_with(&format!(
            "GET / on 127.0.0.1:{port}: the answer is not HTTP"
        )));
        assert!(err.contains("SSH-2.0-OpenSSH_9.6"), "{err}");
    }

    #[tokio::test]
    async fn http_probe_closed_without_answer_fails() {
        // Test that a connection closed before any answer fails and says so.
        let (port, _requests) = server(Some("")).await;
        let (result, _) = timed_probe(&http(port, "/", 200)).await;
        assert_eq!(
            result,
            Err(format!(
                "GET / on 127.0.0.1:{port}: the connection closed without an answer"
            ))
        );
    }

    /// Test that a backend cannot pass a probe with a status line that never ends properly:
    /// "HTTP/1.1 200 " then 2 KiB and more without a line end (or with one only after that),
    /// one ending at EOF without CRLF, or one ending in a bare LF, each fail and say why.
    #[tokio::test]
    async fn http_probe_needs_a_status_line_ending_in_crlf() {
        let long = |end: &str| -> &'static str {
            let line = format!("HTTP/1.1 200 {}{end}", "x".repeat(MAX_STATUS_LINE + 512));
            Box::leak(line.into_boxed_str())
        };
        for (answer, why) in [
            (long(""), "no line end in the first 2048 bytes"),
            (long("\r\n\r\n"), "no line end in the first 2048 bytes"),
            ("HTTP/1.1 200 OK", "closed in the status line"),
            ("HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF"),
        ] {
            let (port, _requests) = server(Some(answer)).await;
            let (result, _) = timed_probe(&http(port, "/", 200)).await;
            let err = result.expect_err(&format!("{answer:.40} passed"));
            assert!(err.contains(why), "{answer:.40}: {err}");
        }
    }

    #[tokio::test]
    async fn http_probe_of_a_server_that_never_answers_times_out() {
        // Test that a server that accepts and reads the request but never answers fails after
        // the timeout.
        let (port, _requests) = server(None).await;
        let (result, took) = timed_probe(&http(port, "/", 200)).await;
        assert_eq!(
            result,
            Err(format!("GET / on 127.0.0.1:{port}: timed out after 300 ms"))
        );
        assert!(took >= TIMEOUT, "timed out early, after {took:?}");
    }

    #[test]
    fn status_lines_parse_strictly() {
        // Test which first lines count as HTTP status lines.
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.1 404 "), Some(404));
        assert_eq!(parse_status(b"HTTP/1.1 204"), Some(204));
        for bad in [
            &b""[..],
            b"HTTP/1.1",
            b"HTTP/1.1 20",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 2x0 OK",
            b"HTTP/x.1 200 OK",
            b"http/1.1 200 OK",
            b"ICY 200 OK",
            b"<html>",
            b"HTTP/1.1 200 OK\x00\x1b[2J",
            b"HTTP/1.1 200OK",
        ] {
            assert_eq!(
                parse_status(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
