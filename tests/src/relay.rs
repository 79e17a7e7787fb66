//! A TCP relay on a free loopback port in front of a server, which a test can cut: every open
//! connection is dropped and new ones are closed at once, as when the network between a client
//! and its server fails. TLS passes through untouched (the relay is on 127.0.0.1, like the
//! servers the helpers start, so their certificates still match).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running relay; dropping it stops it and drops its connections.
#[derive(Debug)]
pub struct TcpRelay {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Tells the connections to end (the value grows with every cut).
    cuts: watch::Sender<u64>,
    acceptor: JoinHandle<()>,
}

impl TcpRelay {
    /// Relays connections on a free loopback port to `127.0.0.1:target`.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("cannot bind a loopback port for a relay: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("the relay's address: {err}"))
            .port();
        let cut = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0);
        let acceptor = tokio::spawn(accept(listener, target, cut.clone(), cuts.clone()));
        Self {
            port,
            cut,
            cuts,
            acceptor,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: u16,
    cut: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut ended = cuts.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let (mut client, mut server) = (client, server);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = ended.changed() => {}
            }
        });
    }
}
