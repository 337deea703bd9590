//! A TCP connection from a source address the test picks (bound before connecting, with
//! SO_REUSEADDR so the same source can connect again), given up after a timeout.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use socket2::{Domain, Socket, Type};

/// A blocking TCP stream from `local` to `remote` once the handshake is done; an error if it
/// is not done within `timeout`.
pub fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(remote), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&local.into())?;
    socket.connect_timeout(&remote.into(), timeout)?;
    Ok(socket.into())
}
