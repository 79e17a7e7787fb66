//! A loopback TCP proxy that a test controls, to cut one process off from its server the way
//! a network partition does, and to heal the cut the way TCP does afterwards.
//!
//! [`Proxy::start`] listens on a free port of 127.0.0.1 and forwards every connection to a
//! target. [`Proxy::cut`] holds the bytes in flight in both directions (nothing is lost, nothing
//! arrives) and leaves new connections hanging: the kernel completes their handshake, as a
//! listening socket does, but nothing is forwarded and no upstream connection is made.
//! [`Proxy::heal`] delivers what was held, late, as retransmits would, and forwards again.
//! [`Proxy::reset`] drops every open connection with a TCP RST; [`Proxy::down`] does that and
//! also resets every new connection until the heal, as a server that went away.
//! [`Proxy::cut_one_way`] holds one direction only (requests reach the server, replies do not,
//! or the reverse); [`Proxy::slow`] delays every chunk by a fixed time until the heal, as a
//! congested link. Dropping the proxy stops it.
//!
//! Why hold rather than drop: a partition that loses bytes is a reset, which clients notice at
//! once; a partition that delays them is what leaves a client waiting on its timeouts, and the
//! late delivery after the heal is what tests stale replies (a reply to a request that the
//! sender has already given up on).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How much one forwarding step reads at a time.
const CHUNK: usize = 16 * 1024;

/// A direction of the bytes through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server (requests).
    ToServer,
    /// From the server to the client (replies, watch events).
    ToClient,
}

/// Which directions are held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Held {
    to_server: bool,
    to_client: bool,
}

impl Held {
    const BOTH: Self = Self {
        to_server: true,
        to_client: true,
    };

    fn holds(self, direction: Direction) -> bool {
        match direction {
            Direction::ToServer => self.to_server,
            Direction::ToClient => self.to_client,
        }
    }
}

/// The controls every connection task reads.
#[derive(Debug)]
struct Controls {
    /// The directions held now (both while cut).
    cut: watch::Sender<Held>,
    /// How long every chunk waits before it is forwarded (zero: not slowed).
    delay: watch::Sender<Duration>,
    /// Grows by one with every [`Proxy::reset`].
    resets: watch::Sender<u64>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// True while new connections are reset at once ([`Proxy::down`]).
    down: std::sync::atomic::AtomicBool,
    /// Stops everything.
    stop: CancellationToken,
}

/// A TCP proxy from a free port of 127.0.0.1 to a target, with cut, heal and reset; stopped
/// when dropped (the open connections are closed, the port no longer accepts).
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    target: SocketAddr,
    controls: Arc<Controls>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free loopback port; must run inside a tokio runtime.
    ///
    /// # Panics
    /// When no port of 127.0.0.1 can be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|err| panic!("cannot bind a proxy port on 127.0.0.1: {err}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("cannot read the proxy's port: {err}"));
        let controls = Arc::new(Controls {
            cut: watch::channel(Held::default()).0,
            delay: watch::channel(Duration::ZERO).0,
            resets: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept(listener, target, controls.clone()));
        Self {
            address,
            target,
            controls,
        }
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> u64 {
        self.controls.accepted.load(Ordering::SeqCst)
    }

    /// True while the proxy is [cut](Self::cut).
    pub fn is_cut(&self) -> bool {
        *self.controls.cut.borrow() == Held::BOTH
    }

    /// Holds every byte in both directions and leaves new connections hanging, until
    /// [`heal`](Self::heal).
    pub fn cut(&self) {
        self.controls.cut.send_replace(Held::BOTH);
    }

    /// Holds the bytes going `direction` only, until [`heal`](Self::heal); the other direction
    /// and new connections go on working (a route lost one way, as asymmetric partitions are).
    pub fn cut_one_way(&self, direction: Direction) {
        let held = match direction {
            Direction::ToServer => Held {
                to_server: true,
                to_client: false,
            },
            Direction::ToClient => Held {
                to_server: false,
                to_client: true,
            },
        };
        self.controls.cut.send_replace(held);
    }

    /// Delays every chunk, both ways, by `delay` until [`heal`](Self::heal) (order is kept).
    pub fn slow(&self, delay: Duration) {
        self.controls.delay.send_replace(delay);
    }

    /// Delivers what was held, forwards again at full speed (and accepts again after
    /// [`down`](Self::down)).
    pub fn heal(&self) {
        self.controls.down.store(false, Ordering::SeqCst);
        self.controls.delay.send_replace(Duration::ZERO);
        self.controls.cut.send_replace(Held::default());
    }

    /// Resets every open connection and every new one until [`heal`](Self::heal): the server
    /// seems gone, and clients notice at once.
    pub fn down(&self) {
        self.controls.down.store(true, Ordering::SeqCst);
        self.reset();
    }

    /// Drops every open connection with a TCP RST (both sides see "connection reset"); what was
    /// held is lost. New connections are served as before (or held, while cut).
    pub fn reset(&self) {
        self.controls.resets.send_modify(|count| *count += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.controls.stop.cancel();
    }
}

/// Accepts connections until the proxy stops, one task each.
async fn accept(listener: TcpListener, target: SocketAddr, controls: Arc<Controls>) {
    loop {
        let accepted = tokio::select! {
            () = controls.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                controls.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(client, target, controls.clone()));
            }
            // A connection that failed during its handshake, or descriptors running out: the
            // listener itself is fine; pause briefly so that a persistent error cannot spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Forwards one connection until either side closes, a reset, or the proxy stops.
async fn serve(mut client: TcpStream, target: SocketAddr, controls: Arc<Controls>) {
    if controls.down.load(Ordering::SeqCst) {
        return abort(&client);
    }
    let mut resets = controls.resets.subscribe();
    let mut cut = controls.cut.subscribe();
    // A connection that arrives while cut hangs: no upstream connection until the heal.
    let upstream = tokio::select! {
        () = controls.stop.cancelled() => return,
        _ = resets.changed() => return abort(&client),
        upstream = async {
            // Only a full cut hangs new connections; one held direction lets them through.
            let _ = cut.wait_for(|held| *held != Held::BOTH).await;
            TcpStream::connect(target).await
        } => upstream,
    };
    let Ok(mut upstream) = upstream else {
        // The target refuses: so does the proxy, as abruptly as a closed port.
        return abort(&client);
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let reset = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let forward = async {
            tokio::try_join!(
                pump(
                    &mut client_read,
                    &mut upstream_write,
                    Direction::ToServer,
                    &controls
                ),
                pump(
                    &mut upstream_read,
                    &mut client_write,
                    Direction::ToClient,
                    &controls
                ),
            )
        };
        tokio::select! {
            () = controls.stop.cancelled() => false,
            _ = resets.changed() => true,
            _ = forward => false,
        }
    };
    if reset {
        abort(&client);
        abort(&upstream);
    }
}

/// Copies `from` to `to` (bytes going `direction`), waiting while that direction is held
/// before each read and each write, so that bytes read just before a cut are held until the
/// heal, and sleeping the slow delay before each write; shuts `to` down for writing when
/// `from` ends.
async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    direction: Direction,
    controls: &Controls,
) -> io::Result<()> {
    let mut cut = controls.cut.subscribe();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        wait_until_open(&mut cut, direction).await;
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        let delay = *controls.delay.borrow();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        wait_until_open(&mut cut, direction).await;
        to.write_all(&buffer[..read]).await?;
    }
}

/// Returns once `direction` is not held (at once when it is not).
async fn wait_until_open(cut: &mut watch::Receiver<Held>, direction: Direction) {
    // The sender lives as long as the proxy's controls, which outlive every connection task.
    let _ = cut.wait_for(|held| !held.holds(direction)).await;
}

/// Makes the coming close of `stream` a TCP RST (linger 0) instead of an orderly FIN.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(10);

    /// An echo server on a free loopback port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        let answer = tokio::time::timeout(LONG, round_trip(&mut stream, b"hello"))
            .await
            .expect("an echo in time")
            .unwrap();
        assert_eq!(answer, b"hello");
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn a_cut_holds_bytes_and_the_heal_delivers_them_late() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut stream, b"warm").await.unwrap();
        proxy.cut();
        assert!(proxy.is_cut());
        stream.write_all(b"held").await.unwrap();
        let mut answer = [0u8; 4];
        assert!(
            tokio::time::timeout(SHORT, stream.read_exact(&mut answer))
                .await
                .is_err(),
            "nothing arrives while cut"
        );
        proxy.heal();
        tokio::time::timeout(LONG, stream.read_exact(&mut answer))
            .await
            .expect("the held bytes arrive after the heal")
            .unwrap();
        assert_eq!(&answer, b"held");
    }

    #[tokio::test]
    async fn a_connection_made_while_cut_hangs_until_the_heal() {
        let proxy = Proxy::start(echo_server().await).await;
        proxy.cut();
        let mut stream = tokio::time::timeout(LONG, TcpStream::connect(proxy.address()))
            .await
            .expect("the kernel completes the handshake")
            .unwrap();
        stream.write_all(b"early").await.unwrap();
        let mut answer = [0u8; 5];
        assert!(
            tokio::time::timeout(SHORT, stream.read_exact(&mut answer))
                .await
                .is_err(),
            "no answer while cut"
        );
        proxy.heal();
        tokio::time::timeout(LONG, stream.read_exact(&mut answer))
            .await
            .expect("answered after the heal")
            .unwrap();
        assert_eq!(&answer, b"early");
    }

    #[tokio::test]
    async fn a_reset_drops_connections_and_new_ones_work() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut stream, b"one").await.unwrap();
        proxy.reset();
        let mut buffer = [0u8; 1];
        let read = tokio::time::timeout(LONG, stream.read(&mut buffer))
            .await
            .expect("the reset is seen in time");
        match read {
            Err(err) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}"),
            Ok(count) => panic!("read {count} bytes instead of a reset"),
        }
        let mut again = TcpStream::connect(proxy.address()).await.unwrap();
        let answer = tokio::time::timeout(LONG, round_trip(&mut again, b"two"))
            .await
            .expect("an echo in time")
            .unwrap();
        assert_eq!(answer, b"two");
    }

    #[tokio::test]
    async fn a_one_way_cut_lets_requests_through_and_holds_replies() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        round_trip(&mut stream, b"warm").await.unwrap();
        proxy.cut_one_way(Direction::ToClient);
        assert!(!proxy.is_cut(), "one way is not a full cut");
        stream.write_all(b"late").await.unwrap();
        let mut answer = [0u8; 4];
        assert!(
            tokio::time::timeout(SHORT, stream.read_exact(&mut answer))
                .await
                .is_err(),
            "the echo is held on its way back"
        );
        // A new connection is made at once (only a full cut hangs them).
        let mut other = tokio::time::timeout(LONG, TcpStream::connect(proxy.address()))
            .await
            .expect("connects")
            .unwrap();
        other.write_all(b"x").await.unwrap();
        proxy.heal();
        tokio::time::timeout(LONG, stream.read_exact(&mut answer))
            .await
            .expect("the held reply arrives after the heal")
            .unwrap();
        assert_eq!(&answer, b"late");
    }

    #[tokio::test]
    async fn a_slow_proxy_delays_every_chunk_until_the_heal() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
        proxy.slow(SHORT);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(LONG, round_trip(&mut stream, b"slow"))
            .await
            .expect("slow, not lost")
            .unwrap();
        assert_eq!(answer, b"slow");
        // One delay each way.
        assert!(started.elapsed() >= SHORT * 2, "{:?}", started.elapsed());
        proxy.heal();
        let started = std::time::Instant::now();
        round_trip(&mut stream, b"fast").await.unwrap();
        assert!(started.elapsed() < SHORT, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_port() {
        let proxy = Proxy::start(echo_server().await).await;
        let address = proxy.address();
        drop(proxy);
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "the port still accepts after the drop");
    }
}
