//! A TCP proxy in front of a shared server (PostgreSQL, RabbitMQ, Redis) that a test can
//! switch to make that dependency unreachable or hanging **for one service under test**,
//! without touching the shared server other tests use.
//!
//! Modes ([`ProxyMode`]):
//! * `Forward`: pipe bytes both ways to the target.
//! * `Refuse`: accept then close at once; switching to it also closes every open
//!   connection (piped or blackholed), like a dependency that went down.
//! * `Blackhole`: accept and never answer (nor forward); switching to it freezes open piped
//!   connections too, like a network partition. Connections stay open until `Refuse` or
//!   the proxy is dropped.
//!
//! Dropping the proxy closes the listener and every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Forward,
    Refuse,
    Blackhole,
}

/// A running proxy on `127.0.0.1:<random port>`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl TcpProxy {
    /// Starts a proxy to `target` in `Forward` mode. Needs a Tokio runtime.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(ProxyMode::Forward);
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, target, mode.subscribe(), accepted.clone(), stop.clone()));
        TcpProxy { addr, target, mode, accepted, stop }
    }

    /// Where clients connect (use it in the service's `DATABASE_URL` & co).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxied server.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches mode; takes effect at once for new and open connections.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// How many connections have been accepted so far (all modes).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<ProxyMode>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            result = listener.accept() => match result {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let current = *mode.borrow();
        match current {
            ProxyMode::Refuse => drop(client),
            ProxyMode::Blackhole => {
                tokio::spawn(hold(client, None, mode.clone(), stop.clone()));
            }
            ProxyMode::Forward => {
                tokio::spawn(forward(client, target, mode.clone(), stop.clone()));
            }
        }
    }
}

/// Keeps `client` (and `server`, if any) open without moving bytes until the mode becomes
/// `Refuse` or the proxy stops.
async fn hold(
    client: TcpStream,
    server: Option<TcpStream>,
    mut mode: watch::Receiver<ProxyMode>,
    stop: CancellationToken,
) {
    let _open = (client, server);
    loop {
        if *mode.borrow_and_update() == ProxyMode::Refuse {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
    stop: CancellationToken,
) {
    let Ok(mut server) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    mode.mark_unchanged();
    let next = loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *mode.borrow_and_update();
                if now != ProxyMode::Forward {
                    break now;
                }
            }
        }
    };
    // Note: `copy_bidirectional` was cancelled above; bytes it had read but not yet written
    // are lost, which is what a connection failing mid-flight looks like anyway.
    if next == ProxyMode::Blackhole {
        hold(client, Some(server), mode, stop).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echo_once(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(msg).await?;
        let mut buf = vec![0; msg.len()];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Whether the peer closed: a read returns EOF or an error within a second.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false, // still open, silent
        }
    }

    #[tokio::test]
    async fn forward_pipes_both_ways() {
        let proxy = TcpProxy::start(echo_server().await).await;
        assert_eq!(proxy.mode(), ProxyMode::Forward);
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo_once(&mut stream, b"hello").await.unwrap(), b"hello");
        assert_eq!(echo_once(&mut stream, b"again").await.unwrap(), b"again");
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn refuse_closes_new_and_existing_connections() {
        let proxy = TcpProxy::start(echo_server().await).await;
        let mut piped = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo_once(&mut piped, b"x").await.unwrap(), b"x");

        proxy.set_mode(ProxyMode::Refuse);
        assert!(closed(&mut piped).await, "the open connection was closed");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut fresh).await, "new connections are closed at once");

        proxy.set_mode(ProxyMode::Forward);
        let mut back = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo_once(&mut back, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn blackhole_accepts_and_never_answers() {
        let proxy = TcpProxy::start(echo_server().await).await;
        let mut piped = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo_once(&mut piped, b"x").await.unwrap(), b"x");

        proxy.set_mode(ProxyMode::Blackhole);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        fresh.write_all(b"anyone?").await.unwrap();
        assert!(!closed(&mut fresh).await, "open but silent");
        // Give the piped connection's task a moment to see the mode change.
        tokio::time::sleep(Duration::from_millis(50)).await;
        piped.write_all(b"y").await.unwrap();
        assert!(!closed(&mut piped).await, "the piped connection is frozen, not closed");

        proxy.set_mode(ProxyMode::Refuse);
        assert!(closed(&mut fresh).await, "refuse releases blackholed connections");
        assert!(closed(&mut piped).await);
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_everything() {
        let proxy = TcpProxy::start(echo_server().await).await;
        let addr = proxy.addr();
        let mut piped = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echo_once(&mut piped, b"x").await.unwrap(), b"x");
        drop(proxy);
        assert!(closed(&mut piped).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
