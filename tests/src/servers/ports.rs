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
