//! Roll-site, the federation gateway of eggroll-rs.
//!
//! A roll-site speaks EggRoll's cross-party protocol (`DataTransferService`, `RouteService`)
//! on one port (plus a mutual-TLS port when it has a certificate), routes each packet by
//! EggRoll's route table, stores what arrives for its own party in a durable buffer until a
//! `get` takes it, and forwards everything else to the next hop. The algorithm-facing
//! `remote` / `get` API is `eggroll-federation`, which this crate serves (in-process too:
//! [`site::Site`] implements its `LocalRollsite`).

pub mod buffer;
pub mod error;
pub mod forward;
pub mod inbox;
pub mod liveness;
mod local;
pub mod metrics;
pub mod peer;
pub mod ping;
pub mod poller;
pub mod polling;
pub mod route;
pub mod service;
pub mod site;
pub mod spares;
pub mod status_page;
pub mod tls;

/// Roll-site packets: the transfer key, headers and table batch format (shared with eggs).
pub use eggroll_core::transfer as packet;
pub use error::{Error, Result};

use eggroll_core::config::EggrollConfig;
use eggroll_proto::proxy::data_transfer_service_server::DataTransferServiceServer;
use eggroll_proto::proxy::route_service_server::RouteServiceServer;
use site::Site;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

/// A running roll-site.
pub struct RollSite {
    site: Arc<Site>,
    addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RollSite {
    /// The plaintext address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mutual-TLS address, when a certificate is configured.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// Its state (routes, buffer), for inspection.
    pub fn site(&self) -> &Arc<Site> {
        &self.site
    }

    /// Serves `/healthz`, `/readyz`, `/metrics` and the status page on `host:http_port`
    /// (0: a free port) until the roll-site stops; returns the bound address.
    pub async fn serve_http(&self, http_port: u16) -> Result<SocketAddr> {
        let mut stop = self.stop.subscribe();
        let view = Arc::new(status_page::SiteView(self.site.clone()));
        eggroll_core::ops_http::serve(
            "rollsite",
            &self.site.config.host,
            http_port,
            view,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await
        .map_err(Error::Core)
    }

    /// Stops serving and waits until its storage is closed, so it can be reopened.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.site.hub.close_all();
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // Blocking writes may still hold the site for a moment; the buffer closes when the
        // last of them ends.
        let site = self.site;
        for _ in 0..200 {
            if Arc::strong_count(&site) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        drop(site);
        tracing::info!("roll-site stopped");
    }
}

async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|source| Error::Io {
            what: format!("cannot listen on {host}:{port} (is another roll-site running there?)"),
            source,
        })
}

fn spawn_server(
    site: Arc<Site>,
    listener: tokio::net::TcpListener,
    secure: bool,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    let max = site.config.max_message_bytes as usize;
    let svc = service::Service::new(site.clone(), secure);
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(forward::STREAM_WINDOW)
        .initial_connection_window_size(forward::CONNECTION_WINDOW)
        .max_frame_size(forward::MAX_FRAME)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    let acceptor = if secure {
        let files = site
            .tls
            .as_ref()
            .ok_or_else(|| Error::Config("a TLS listener needs a certificate".into()))?;
        Some(files.acceptor()?)
    } else {
        None
    };
    let router = builder
        .add_service(
            DataTransferServiceServer::new(svc.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(RouteServiceServer::new(svc));
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Some(acceptor) = acceptor {
        let incoming = tls_handshakes(listener, acceptor, site);
        return Ok(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "roll-site TLS server failed");
            }
        }));
    }
    let incoming = TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::error!(error = %e, "roll-site server failed");
        }
    }))
}

/// How long a peer may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connections of `listener`, each handshake on a task of its own so that a slow or
/// refused peer holds up no other; a failed one is counted, logged with the peer's address
/// and dropped.
fn tls_handshakes(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    site: Arc<Site>,
) -> tokio_stream::wrappers::ReceiverStream<
    std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "cannot accept a TLS connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, site) = (acceptor.clone(), tx.clone(), site.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        site.metrics.tls_failure("inbound");
                        tracing::warn!(peer = %addr, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        site.metrics.tls_failure("inbound");
                        tracing::warn!(peer = %addr, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Starts a roll-site as `config` says and returns once it listens.
pub async fn start(config: &EggrollConfig) -> Result<RollSite> {
    let (stop, stop_rx) = watch::channel(false);
    // Opening the receive buffer opens RocksDB and sweeps its files: not on this async task.
    let (c, rx) = (config.clone(), stop_rx.clone());
    let site = Arc::new(tokio::task::spawn_blocking(move || Site::new(&c, rx)).await??);
    let rs = &site.config;
    let listener = bind(&rs.host, rs.port).await?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        what: "cannot read the listening address".into(),
        source,
    })?;
    let mut listen = vec![addr];
    let mut tasks = vec![spawn_server(
        site.clone(),
        listener,
        false,
        stop_rx.clone(),
    )?];
    let mut secure_addr = None;
    if site.tls.is_some() {
        let l = bind(&rs.host, rs.secure_port).await?;
        let a = l.local_addr().map_err(|source| Error::Io {
            what: "cannot read the listening address".into(),
            source,
        })?;
        listen.push(a);
        secure_addr = Some(a);
        tasks.push(spawn_server(site.clone(), l, true, stop_rx.clone())?);
    }
    let _ = site.listen.set(listen);
    // Route table reloads: the watcher holds the site weakly, so shutdown can close it.
    let weak = Arc::downgrade(&site);
    let every = Duration::from_millis(rs.route_reload_ms.max(50));
    let mut stop_watch = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop_watch.wait_for(|s| *s) => return,
            }
            let Some(site) = weak.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || {
                let before = site.routes.last_error();
                if site.routes.reload_if_changed() {
                    site.metrics.route_reload(true);
                } else if let Some(e) = site
                    .routes
                    .last_error()
                    .filter(|e| Some(e) != before.as_ref())
                {
                    tracing::debug!("route reload refused: {e}");
                    site.metrics.route_reload(false);
                }
            })
            .await;
        }
    }));
    if rs.buffer_expiry_hours > 0 {
        // Transfers nobody took: checked at start, then a few times per expiry period.
        let weak = Arc::downgrade(&site);
        let age = Duration::from_secs(rs.buffer_expiry_hours.saturating_mul(3600));
        let every = (age / 8).clamp(Duration::from_secs(60), Duration::from_secs(3600));
        let mut stop_watch = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(site) = weak.upgrade() else { return };
                let (buffer, inbox) = (site.buffer.clone(), site.inbox.clone());
                drop(site);
                let expired = tokio::task::spawn_blocking(move || {
                    // Tables nobody took that went into the eggs go too.
                    for (_, at) in buffer.expire(age)? {
                        if let (Some(inbox), Some(at)) = (&inbox, at) {
                            inbox.destroy(&at)?;
                        }
                    }
                    Ok::<_, Error>(())
                });
                if let Ok(Err(e)) = expired.await {
                    tracing::warn!(error = %e, "cannot expire old transfers in the receive buffer");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop_watch.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    if let Some(inbox) = site.inbox.clone() {
        tokio::task::spawn_blocking(move || inbox.warm_up());
    }
    if !rs.polling_exchange.trim().is_empty() {
        tasks.push(tokio::spawn(poller::run_poller(
            site.clone(),
            rs.polling_exchange.trim().to_string(),
            rs.polling_tls,
        )));
    }
    tracing::info!(party = %site.party_id, %addr, secure = ?secure_addr, "roll-site listening");
    Ok(RollSite {
        site,
        addr,
        secure_addr,
        stop,
        tasks,
    })
}

/// Runs a roll-site until Ctrl-C or SIGTERM.
pub async fn serve(config: &EggrollConfig) -> Result<()> {
    let rs = start(config).await?;
    eprintln!(
        "roll-site of party {} listening on {}{}",
        rs.site.party_id,
        rs.addr,
        rs.secure_addr
            .map(|a| format!(" (mutual TLS on {a})"))
            .unwrap_or_default()
    );
    // After the line above: the processes that start roll-sites wait for it first.
    if let Err(e) = rs.serve_http(config.rollsite.http_port).await {
        rs.shutdown().await;
        return Err(e);
    }
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| Error::Io {
                what: "cannot watch SIGTERM".into(),
                source,
            })?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    rs.shutdown().await;
    Ok(())
}
