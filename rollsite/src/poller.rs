//! Polling mode, the party side: a party that cannot accept connections (the poller) holds
//! `polling` streams open to an exchange and serves the calls sent down them, in the frames
//! [`crate::polling`] describes.

use crate::error::{Error, Result};
use crate::forward;
use crate::peer::Peer;
use crate::polling::{drain, error_frame, exception_text, is_exception, method};
use crate::site::Site;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::{Metadata, Packet, PollingFrame, Topic};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// The party side: holds `rollsite.polling_concurrency` polling streams open to `exchange` until
/// shutdown, each serving one call and then reopening; failures back off.
pub async fn run_poller(site: Arc<Site>, exchange: String, tls: bool) {
    let client = match poller_client(&site, &exchange, tls) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(exchange = %exchange, error = %e, "polling is off: {e}");
            return;
        }
    };
    let streams = site.config.polling_concurrency.max(1);
    tracing::info!(exchange = %exchange, streams, "polling the exchange");
    // A JoinSet: if this task is aborted (a shutdown that waited too long), so are the loops.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (site, client, exchange) = (site.clone(), client.clone(), exchange.clone());
        tasks.spawn(async move { poll_loop(site, client, exchange).await });
    }
    while tasks.join_next().await.is_some() {}
}

fn poller_client(
    site: &Site,
    exchange: &str,
    tls: bool,
) -> Result<DataTransferServiceClient<Channel>> {
    let files = match (&site.tls, tls) {
        (Some(f), true) => Some(f),
        (None, true) => {
            return Err(Error::Config(
                "rollsite.polling_tls is on but no certificate is configured".into(),
            ))
        }
        _ => None,
    };
    let host = exchange
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(exchange)
        .to_string();
    let channel = forward::channel(
        exchange,
        files.map(|f| (f, host.as_str())),
        Duration::from_millis(site.config.connect_timeout_ms),
    )?;
    Ok(forward::client(
        channel,
        site.config.max_message_bytes as usize,
    ))
}

async fn poll_loop(site: Arc<Site>, client: DataTransferServiceClient<Channel>, exchange: String) {
    let mut shutdown = site.shutdown.clone();
    let mut wait = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        let outcome = poll_once(&site, client.clone(), &exchange).await;
        if *shutdown.borrow() {
            return;
        }
        let pause = match outcome {
            Ok(served) => {
                wait = Duration::from_millis(200);
                // A stream the exchange ended at once without a call: do not spin.
                (!served && started.elapsed() < Duration::from_secs(1)).then_some(wait)
            }
            Err(e) => {
                tracing::warn!(exchange = %exchange, error = %e, "polling stream failed; retrying");
                let w = wait;
                wait = (wait * 2).min(Duration::from_secs(10));
                Some(w)
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One polling stream: announce our party, wait for one call, serve it. `Ok(true)` when a call
/// was served (even if it failed and was reported to the exchange).
async fn poll_once(
    site: &Arc<Site>,
    mut client: DataTransferServiceClient<Channel>,
    exchange: &str,
) -> Result<bool> {
    let hop = format!("exchange {exchange} (polling)");
    let no_data = Duration::from_secs(site.config.polling_no_data_s.max(1));
    let (tx, rx) = mpsc::channel::<PollingFrame>(16);
    let hello = PollingFrame {
        metadata: Some(Metadata {
            dst: Some(Topic {
                party_id: site.party_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    tx.send(hello)
        .await
        .map_err(|_| Error::Internal("polling sender closed".into()))?;
    let mut shutdown = site.shutdown.clone();
    let mut inbound = tokio::select! {
        r = client.polling(ReceiverStream::new(rx)) => {
            r.map_err(|s| Error::hop(hop.clone(), s))?.into_inner()
        }
        _ = shutdown.changed() => return Ok(false),
    };
    let first = tokio::select! {
        m = tokio::time::timeout(no_data, inbound.message()) => match m {
            // No call for a long time: end this stream and open a fresh one.
            Err(_) => return Ok(false),
            Ok(m) => m.map_err(|s| Error::hop(hop.clone(), s))?,
        },
        _ = shutdown.changed() => return Ok(false),
    };
    // The exchange ended the stream without a call.
    let Some(first) = first else { return Ok(false) };
    let peer = Peer {
        addr: None,
        secure: true,
        hops: 1,
        trusted: false,
    };
    let answer = match first.method.as_str() {
        _ if first.packet.as_ref().is_some_and(is_exception) => Err(Error::hop(
            hop.clone(),
            Status::aborted(format!(
                "the exchange reported an error: {}",
                first
                    .packet
                    .as_ref()
                    .map(exception_text)
                    .unwrap_or_default()
            )),
        )),
        method::PUSH => serve_push(site, first, &mut inbound, peer, &hop)
            .await
            .map(|m| PollingFrame {
                method: method::PUSH.into(),
                seq: 1,
                metadata: Some(m),
                ..Default::default()
            }),
        method::UNARY_CALL => match first.packet {
            None => Err(Error::BadPacket(
                "a unary_call polling frame without a packet".into(),
            )),
            Some(p) => site.unary(p, peer).await.map(|p| PollingFrame {
                method: method::UNARY_CALL.into(),
                seq: 1,
                packet: Some(p),
                ..Default::default()
            }),
        },
        other => Err(Error::BadPacket(format!(
            "the exchange sent a polling frame of method {other:?}; expected push or unary_call"
        ))),
    };
    let frame = match &answer {
        Ok(f) => f.clone(),
        Err(e) => {
            tracing::warn!(exchange = %exchange, error = %e, "a call over the polling stream failed");
            error_frame(&site.party_id, e)
        }
    };
    // Answer, end our side, and wait for the exchange to end its side.
    let _ = tx.send(frame).await;
    drop(tx);
    drain(&mut inbound).await;
    Ok(true)
}

/// Runs a push that came over a polling stream, starting with its first frame.
async fn serve_push(
    site: &Arc<Site>,
    first: PollingFrame,
    inbound: &mut Streaming<PollingFrame>,
    peer: Peer,
    hop: &str,
) -> Result<Metadata> {
    let (ptx, prx) = mpsc::channel::<Result<Packet, Status>>(4);
    let local = {
        let site = site.clone();
        tokio::spawn(async move { site.push(ReceiverStream::new(prx), peer).await })
    };
    tokio::pin!(local);
    let packet = |f: PollingFrame| match f.packet {
        Some(p) if is_exception(&p) => Err(Status::aborted(format!(
            "the exchange dropped the push: {}",
            exception_text(&p)
        ))),
        Some(p) => Ok(p),
        None => Err(Status::invalid_argument(
            "a push polling frame without a packet",
        )),
    };
    let mut ptx = Some(ptx);
    if let Some(s) = &ptx {
        if s.send(packet(first)).await.is_err() {
            ptx = None;
        }
    }
    let mut feeding = true;
    loop {
        tokio::select! {
            r = &mut local => {
                return r.unwrap_or_else(|e| Err(Error::Internal(format!("the push task failed: {e}"))));
            }
            m = inbound.message(), if feeding => {
                let item = match m {
                    Ok(Some(f)) if f.method == method::SUB_STREAM_FINISH => {
                        // The end of the push: close its stream.
                        ptx = None;
                        feeding = false;
                        continue;
                    }
                    Ok(Some(f)) if f.method == method::PUSH => packet(f),
                    Ok(Some(f)) => Err(Status::invalid_argument(format!(
                        "a polling frame of method {:?} inside a push",
                        f.method
                    ))),
                    Ok(None) => {
                        feeding = false;
                        Err(Status::unavailable(format!(
                            "{hop}: the polling stream ended before sub_stream_finish"
                        )))
                    }
                    Err(s) => {
                        feeding = false;
                        Err(Status::unavailable(format!(
                            "{hop}: the polling stream failed during a push: {}",
                            s.message()
                        )))
                    }
                };
                // Once the local push has ended (with an error it will return), the rest of
                // the frames are dropped.
                if let Some(s) = &ptx {
                    if s.send(item).await.is_err() {
                        ptx = None;
                    }
                }
            }
        }
    }
}
