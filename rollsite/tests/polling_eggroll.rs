//! Polling as EggRoll's roll-site speaks it: our exchange serving a poller that sends frames
//! exactly as EggRoll's `LongPollingClient` does, and our poller served by an exchange that
//! sends frames exactly as EggRoll's `PollingExchanger` side does.

mod common;

use common::*;
use eggroll_federation::Party;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::data_transfer_service_server::{
    DataTransferService, DataTransferServiceServer,
};
use eggroll_proto::proxy::{Data, Metadata, Packet, PollingFrame, Topic};
use eggroll_rollsite::packet::{
    chunk_packet, Chunk, TransferKey, CHUNK_OPTION, OBJECT, SIZE_OPTION,
};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Code, Request, Response, Status, Streaming};

const WAIT: Duration = Duration::from_secs(20);

fn key(name: &str) -> TransferKey {
    key_to_8888(name)
}

/// The packets of an object `data` for party 8888, cut in `chunk`-byte batches.
fn object_packets(name: &str, data: &[u8], chunk: usize) -> Vec<Packet> {
    let k = key(name);
    let mut base = k.header(OBJECT);
    base.total_partitions = 1;
    base.options
        .insert(SIZE_OPTION.into(), data.len().to_string());
    base.options.insert(CHUNK_OPTION.into(), chunk.to_string());
    let n = data.len().div_ceil(chunk).max(1);
    (0..n)
        .map(|i| {
            let c = Chunk {
                partition: 0,
                seq: i as u64,
                finish: i + 1 == n,
                body: data[i * chunk..((i + 1) * chunk).min(data.len())]
                    .to_vec()
                    .into(),
            };
            chunk_packet(&k, &base, &c, 1 << 20)
        })
        .collect()
}

/// The first frame of EggRoll's poller: only `metadata.dst.partyId`, its own party.
/// A unary call of `request` to the roll-site at `addr`, running in the background.
fn spawn_unary(
    addr: std::net::SocketAddr,
    request: Packet,
) -> tokio::task::JoinHandle<Result<tonic::Response<Packet>, tonic::Status>> {
    tokio::spawn(async move {
        let mut c = DataTransferServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        c.unary_call(request).await
    })
}

fn eggroll_hello(party: &str) -> PollingFrame {
    PollingFrame {
        metadata: Some(Metadata {
            dst: Some(Topic {
                party_id: party.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One polling stream opened the way EggRoll's poller opens it.
struct EggrollPoller {
    tx: mpsc::Sender<PollingFrame>,
    inbound: Streaming<PollingFrame>,
}

impl EggrollPoller {
    async fn open(addr: std::net::SocketAddr, party: &str) -> Self {
        let mut client = DataTransferServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(16);
        tx.send(eggroll_hello(party)).await.unwrap();
        let inbound = client
            .polling(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        EggrollPoller { tx, inbound }
    }

    async fn next(&mut self) -> Option<PollingFrame> {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("no polling frame in time")
            .unwrap()
    }

    /// Answers, ends its side (EggRoll's `onCompleted`), and expects the exchange to end too.
    async fn answer(self, f: PollingFrame) {
        let EggrollPoller { tx, mut inbound } = self;
        tx.send(f).await.unwrap();
        drop(tx);
        assert!(
            reply_or_end(&mut inbound).await.is_none(),
            "the exchange did not end the stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_exchange_serves_an_eggroll_shaped_poller() {
    let dir = dir();
    let ce = config(dir.path(), "exchange");
    let e = start(&ce).await;
    let ca = config(dir.path(), "9999");
    let a = start(&ca).await;
    set_routes(&a, &ca, json!({"default": to(e.addr())}));
    set_routes(
        &e,
        &ce,
        json!({
            "9999": to(a.addr()),
            "8888": {"default": [{"ip": "", "port": -1, "is_polling": true}]},
        }),
    );
    // Heartbeats are ours, not EggRoll's: this party talks to EggRoll-shaped peers without.
    let fa = federation_with(
        &a,
        "job",
        "guest",
        "9999",
        eggroll_federation::FederationOptions {
            heartbeat_interval: std::time::Duration::ZERO,
            ..options()
        },
    );
    let arbiter = Party::new("arbiter", "8888");

    // A push from party 9999 to the polling party.
    let mut poller = EggrollPoller::open(e.addr(), "8888").await;
    let blob = pattern(10_000, 3);
    let push = {
        let (fa, blob, to) = (fa.clone(), blob.clone(), arbiter.clone());
        tokio::spawn(async move { fa.remote_bytes(blob, "model", "0", &[to]).await })
    };
    let mut packets = Vec::new();
    let finish = loop {
        let f = poller
            .next()
            .await
            .expect("the stream ended inside the push");
        if f.method == "sub_stream_finish" {
            break f;
        }
        assert_eq!(f.method, "push", "{f:?}");
        assert_eq!(
            f.seq,
            packets.len() as i64 + 1,
            "push frames count seq from 1"
        );
        packets.push(f.packet.expect("a push frame carries a packet"));
    };
    assert!(!packets.is_empty());
    assert_eq!(finish.seq, packets.len() as i64 + 1);
    let header = packets[0].header.clone().unwrap();
    assert_eq!(header.dst.as_ref().unwrap().party_id, "8888");
    let body: Vec<u8> = packets
        .iter()
        .flat_map(|p| p.body.as_ref().unwrap().value.to_vec())
        .collect();
    assert_eq!(body, blob);
    // EggRoll's poller acknowledges with a `push` frame, seq 1, carrying the push's answer.
    poller
        .answer(PollingFrame {
            method: "push".into(),
            seq: 1,
            metadata: Some(Metadata {
                ack: packets.len() as i64,
                ..header.clone()
            }),
            ..Default::default()
        })
        .await;
    tokio::time::timeout(WAIT, push)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // A unary call to the polling party, on a fresh stream (one call per stream).
    let mut poller = EggrollPoller::open(e.addr(), "8888").await;
    let request = object_packets("small", b"0123456789", 64).remove(0);
    let call = spawn_unary(e.addr(), request.clone());
    let f = poller.next().await.unwrap();
    assert_eq!((f.method.as_str(), f.seq), ("unary_call", 1), "{f:?}");
    assert_eq!(f.packet.as_ref(), Some(&request));
    let reply = Packet {
        header: Some(Metadata {
            ack: 1,
            ..request.header.clone().unwrap()
        }),
        body: None,
    };
    poller
        .answer(PollingFrame {
            method: "unary_call".into(),
            seq: 1,
            packet: Some(reply.clone()),
            ..Default::default()
        })
        .await;
    let got = tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(got, reply);

    // EggRoll's poller reports a failure with `error_poison` and a stack trace in `desc`.
    let mut poller = EggrollPoller::open(e.addr(), "8888").await;
    let call = spawn_unary(e.addr(), request.clone());
    let f = poller.next().await.unwrap();
    assert_eq!(f.method, "unary_call");
    poller
        .answer(PollingFrame {
            method: "error_poison".into(),
            desc: "Error from partyId=8888:\n-------------\njava.lang.RuntimeException: disk \
                   full\n\tat com.webank.eggroll.rollsite.Foo.bar(Foo.scala:1)"
                .into(),
            ..Default::default()
        })
        .await;
    let status = tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(status.message().contains("disk full"), "{status:?}");

    // A poller that dies mid-call fails the call with UNAVAILABLE.
    let mut poller = EggrollPoller::open(e.addr(), "8888").await;
    let call = spawn_unary(e.addr(), request.clone());
    assert_eq!(poller.next().await.unwrap().method, "unary_call");
    drop(poller);
    let status = tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    a.shutdown().await;
    e.shutdown().await;
}

/// An exchange written the way EggRoll's roll-site behaves: each accepted polling stream is
/// handed to the test, which plays the calls.
struct FakeExchange {
    streams: mpsc::Sender<Accepted>,
}

#[tonic::async_trait]
impl DataTransferService for FakeExchange {
    async fn push(&self, _: Request<Streaming<Packet>>) -> Result<Response<Metadata>, Status> {
        Err(Status::unimplemented("push"))
    }

    type pullStream = ReceiverStream<Result<Packet, Status>>;

    async fn pull(&self, _: Request<Metadata>) -> Result<Response<Self::pullStream>, Status> {
        Err(Status::unimplemented("pull"))
    }

    async fn unary_call(&self, _: Request<Packet>) -> Result<Response<Packet>, Status> {
        Err(Status::unimplemented("unaryCall"))
    }

    type pollingStream = ReceiverStream<Result<PollingFrame, Status>>;

    async fn polling(
        &self,
        req: Request<Streaming<PollingFrame>>,
    ) -> Result<Response<Self::pollingStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no first frame"))?;
        let (tx, rx) = mpsc::channel(16);
        self.streams
            .send((first, inbound, tx))
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Starts a [`FakeExchange`]: its address, the streams it accepts, its server task.
async fn fake_exchange() -> (
    std::net::SocketAddr,
    mpsc::Receiver<Accepted>,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exchange = listener.local_addr().unwrap();
    let (stx, streams) = mpsc::channel(64);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DataTransferServiceServer::new(FakeExchange {
                streams: stx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (exchange, streams, server)
}

type Accepted = (
    PollingFrame,
    Streaming<PollingFrame>,
    mpsc::Sender<Result<PollingFrame, Status>>,
);

async fn accepted(streams: &mut mpsc::Receiver<Accepted>) -> Accepted {
    let (first, inbound, tx) = tokio::time::timeout(WAIT, streams.recv())
        .await
        .expect("the poller opened no stream")
        .unwrap();
    // EggRoll's exchange reads the party from metadata.dst.partyId of the first frame.
    assert_eq!(
        first
            .metadata
            .as_ref()
            .unwrap()
            .dst
            .as_ref()
            .unwrap()
            .party_id,
        "8888",
        "{first:?}"
    );
    assert_eq!((first.method.as_str(), first.seq), ("", 0), "{first:?}");
    (first, inbound, tx)
}

async fn reply(inbound: &mut Streaming<PollingFrame>) -> PollingFrame {
    tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("no answer from the poller")
        .unwrap()
        .expect("the poller ended the stream without an answer")
}

/// Frames of a push, as EggRoll's exchange sends them: `push` seq 1.., then
/// `sub_stream_finish` (repeating the last packet, as EggRoll's frame builder does).
fn eggroll_push_frames(packets: &[Packet]) -> Vec<PollingFrame> {
    let mut frames: Vec<PollingFrame> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| PollingFrame {
            method: "push".into(),
            seq: i as i64 + 1,
            packet: Some(p.clone()),
            ..Default::default()
        })
        .collect();
    frames.push(PollingFrame {
        method: "sub_stream_finish".into(),
        seq: packets.len() as i64 + 1,
        packet: packets.last().cloned(),
        ..Default::default()
    });
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_poller_is_served_by_an_eggroll_shaped_exchange() {
    let dir = dir();
    let (exchange, mut streams, server) = fake_exchange().await;
    let mut cp = config(dir.path(), "8888");
    cp.rollsite.polling_exchange = exchange.to_string();
    let p = start(&cp).await;
    // Heartbeats are ours, not EggRoll's: this party talks to EggRoll-shaped peers without.
    let fp = federation_with(
        &p,
        "job",
        "arbiter",
        "8888",
        eggroll_federation::FederationOptions {
            heartbeat_interval: std::time::Duration::ZERO,
            ..options()
        },
    );
    let guest = Party::new("guest", "9999");

    // A push, as EggRoll's exchange relays it.
    let blob = pattern(5000, 9);
    let packets = object_packets("model", &blob, 1024);
    let (_, mut inbound, tx) = accepted(&mut streams).await;
    for f in eggroll_push_frames(&packets) {
        tx.send(Ok(f)).await.unwrap();
    }
    let ack = reply(&mut inbound).await;
    assert_eq!((ack.method.as_str(), ack.seq), ("push", 1), "{ack:?}");
    let meta = ack.metadata.expect("the push answer carries metadata");
    assert_eq!(meta.dst.as_ref().unwrap().party_id, "8888");
    // The poller ends its side; then EggRoll's exchange ends the stream.
    assert!(reply_or_end(&mut inbound).await.is_none());
    drop(tx);
    let got = fp
        .get_bytes("model", "0", std::slice::from_ref(&guest))
        .await
        .unwrap();
    assert_eq!(got, vec![blob]);

    // A unary call: a one-packet object.
    let request = object_packets("small", b"hello", 64).remove(0);
    let (_, mut inbound, tx) = accepted(&mut streams).await;
    tx.send(Ok(PollingFrame {
        method: "unary_call".into(),
        seq: 1,
        packet: Some(request.clone()),
        ..Default::default()
    }))
    .await
    .unwrap();
    let answer = reply(&mut inbound).await;
    assert_eq!(
        (answer.method.as_str(), answer.seq),
        ("unary_call", 1),
        "{answer:?}"
    );
    assert!(answer.packet.is_some(), "{answer:?}");
    assert!(reply_or_end(&mut inbound).await.is_none());
    drop(tx);
    assert_eq!(
        fp.get_bytes("small", "0", std::slice::from_ref(&guest))
            .await
            .unwrap(),
        vec![b"hello".to_vec()]
    );

    // A push the poller refuses (a packet of another transfer inside it): `error_poison`,
    // with EggRoll's `Error from partyId=` text.
    let mut bad = object_packets("x", &pattern(3000, 1), 1024);
    bad[1] = object_packets("y", &pattern(3000, 1), 1024).remove(1);
    let (_, mut inbound, tx) = accepted(&mut streams).await;
    for f in eggroll_push_frames(&bad) {
        // The poller may already have ended the stream.
        let _ = tx.send(Ok(f)).await;
    }
    let err = reply(&mut inbound).await;
    assert_eq!(err.method, "error_poison", "{err:?}");
    assert!(err.desc.starts_with("Error from partyId=8888:"), "{err:?}");
    assert!(reply_or_end(&mut inbound).await.is_none());
    drop(tx);

    // The exchange's own failure mid-push (EggRoll's exception packet): the poller drops the
    // push and reports it.
    let good = object_packets("z", &pattern(3000, 2), 1024);
    let (_, mut inbound, tx) = accepted(&mut streams).await;
    tx.send(Ok(eggroll_push_frames(&good).remove(0)))
        .await
        .unwrap();
    tx.send(Ok(PollingFrame {
        method: "push".into(),
        seq: 2,
        packet: Some(Packet {
            header: good[1].header.clone(),
            body: Some(Data {
                key: "[roll site transfer exception]".into(),
                value: b"the sender went away".to_vec().into(),
            }),
        }),
        ..Default::default()
    }))
    .await
    .unwrap();
    let err = reply(&mut inbound).await;
    assert_eq!(err.method, "error_poison", "{err:?}");
    assert!(err.desc.contains("the sender went away"), "{err:?}");
    drop(tx);

    // An exchange that ends idle streams without a call (EggRoll's no-data timeout) gets
    // fresh ones: end every stream open now, and a new one comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ended = 0;
    while let Ok((_, _, tx)) = streams.try_recv() {
        drop(tx);
        ended += 1;
    }
    assert!(ended > 0);
    let _ = accepted(&mut streams).await;

    p.shutdown().await;
    server.abort();
}

/// The next frame, or `None` once the stream has ended.
async fn reply_or_end(inbound: &mut Streaming<PollingFrame>) -> Option<PollingFrame> {
    tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("the poller neither answered nor ended the stream")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polling_stream_counts_and_idle_limits_come_from_the_config() {
    let dir = dir();
    // An exchange that ends idle streams after 1 s instead of 240 s.
    let mut ce = config(dir.path(), "exchange");
    ce.rollsite.polling_idle_s = 1;
    let e = start(&ce).await;
    set_routes(
        &e,
        &ce,
        json!({"8888": {"default": [{"ip": "", "port": -1, "is_polling": true}]}}),
    );
    let mut poller = EggrollPoller::open(e.addr(), "8888").await;
    let started = std::time::Instant::now();
    assert!(
        reply_or_end(&mut poller.inbound).await.is_none(),
        "an idle stream must end, not carry a frame"
    );
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(10),
        "{idle:?}"
    );
    e.shutdown().await;

    // A poller holds exactly polling_concurrency streams open.
    let (exchange, mut streams, server) = fake_exchange().await;
    let mut cp = config(dir.path(), "8888");
    cp.rollsite.polling_exchange = exchange.to_string();
    cp.rollsite.polling_concurrency = 3;
    let p = start(&cp).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(accepted(&mut streams).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(streams.try_recv().is_err(), "more than 3 streams opened");
    p.shutdown().await;
    server.abort();

    // Limits out of range are refused with the key's name.
    for (set, key) in [
        (
            &(|c: &mut eggroll_core::config::EggrollConfig| c.rollsite.polling_concurrency = 0)
                as &dyn Fn(&mut eggroll_core::config::EggrollConfig),
            "polling_concurrency",
        ),
        (&|c| c.rollsite.polling_idle_s = 0, "polling_idle_s"),
    ] {
        let mut c = config(dir.path(), "7777");
        set(&mut c);
        let err = eggroll_rollsite::start(&c)
            .await
            .err()
            .expect(key)
            .to_string();
        assert!(err.contains(key), "{err}");
    }
}
