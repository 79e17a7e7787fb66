//! Free loopback ports for test servers.

use std::net::{Ipv4Addr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago: bound with port 0, read and released.
///
/// Another process may take it before the server binds it; servers that fail to bind retry
/// with a new port.
pub fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"));
    listener
        .local_addr()
        .unwrap_or_else(|err| panic!("cannot read the port of a loopback listener: {err}"))
        .port()
}

/// How many times a server is started on new ports after the ones chosen were taken.
pub const PORT_ATTEMPTS: usize = 5;

/// Starts a server on free loopback ports: `attempt` picks ports (with
/// [`free_loopback_port`]), spawns the server and waits until it is ready, giving its log on
/// failure. A failure whose log says the address was in use (another process took the port
/// between the pick and the bind) is tried again on new ports, [`PORT_ATTEMPTS`] times at
/// most; any other failure panics with the log, naming `program`.
pub fn start_on_free_ports<T>(program: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut last_log = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match attempt() {
            Ok(server) => return server,
            Err(log) if log.to_ascii_lowercase().contains("address already in use") => {
                last_log = log;
            }
            Err(log) => panic!("{program} did not start:\n{log}"),
        }
    }
    panic!("{program} did not start: its ports were taken {PORT_ATTEMPTS} times; last log:\n{last_log}")
}

/// A loopback port held closed: bound, never listening, so that every connection to it is
/// refused, and no other process (another test's server) can take it while this is alive.
///
/// A port from [`free_loopback_port`] is no good for "a server that is down": a test running
/// beside it may start a server there a moment later.
pub struct ClosedPort {
    // Bound without SO_REUSEADDR and never listening: connections get a reset (refused) and
    // binds by others fail with "address in use".
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Binds a free loopback port and keeps it closed until dropped.
    pub fn bind() -> Self {
        let socket = tokio::net::TcpSocket::new_v4()
            .unwrap_or_else(|err| panic!("cannot make a TCP socket: {err}"));
        socket
            .bind((Ipv4Addr::LOCALHOST, 0).into())
            .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"));
        Self { socket }
    }

    /// The port nothing listens on.
    pub fn port(&self) -> u16 {
        self.socket
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read the port of a bound socket: {err}"))
            .port()
    }
}
