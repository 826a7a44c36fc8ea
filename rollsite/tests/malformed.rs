//! Ten thousand malformed or unroutable packets: each answered with an error naming the
//! fault, and the roll-site still serves a good transfer afterwards.

mod common;

use common::*;
use eggroll_core::pairs::push as push_pair;
use eggroll_federation::Party;
use eggroll_proto::proxy::data_transfer_service_client::DataTransferServiceClient;
use eggroll_proto::proxy::{Data, Metadata, Packet, Topic};
use eggroll_rollsite::packet::{TransferKey, FINISH, OBJECT, TABLE};
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

fn key(name: &str) -> TransferKey {
    eggroll_tests::rollsites::key("bad", name)
}

/// A well-formed object packet, to break one way or another.
fn good(name: &str) -> Packet {
    let k = key(name);
    let mut h = k.header(OBJECT);
    h.total_partitions = 1;
    h.stage = FINISH.into();
    k.packet(&h, b"payload".to_vec())
}

enum Call {
    Unary(Packet),
    Push(Vec<Packet>),
    Pull(Metadata),
}

/// The `i`-th bad request and the word its error must contain.
fn bad(i: u64) -> (&'static str, Call, &'static str) {
    let mut p = good(&format!("n{i}"));
    let h = p.header.as_mut().unwrap();
    let set_ext = |h: &mut Metadata, f: &dyn Fn(&mut eggroll_proto::transfer::RollSiteHeader)| {
        let mut r = eggroll_proto::transfer::RollSiteHeader::decode(&h.ext[..]).unwrap();
        f(&mut r);
        h.ext = r.encode_to_vec();
    };
    match i % 16 {
        0 => (
            "missing header",
            Call::Unary(Packet { header: None, ..p }),
            "header",
        ),
        1 => (
            "missing header (push)",
            Call::Push(vec![Packet { header: None, ..p }]),
            "header",
        ),
        2 => {
            // Random bytes where the RollSiteHeader belongs.
            h.ext = (0..(i % 40 + 1))
                .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8 | 0x80)
                .collect();
            ("bad ext", Call::Unary(p), "ext")
        }
        3 => {
            h.ext.clear();
            ("empty ext", Call::Unary(p), "ext")
        }
        4 => {
            h.dst = Some(Topic {
                party_id: format!("unknown-{i}"),
                role: "host".into(),
                ..Default::default()
            });
            ("unknown party", Call::Unary(p), "party")
        }
        5 => {
            h.dst = None;
            ("no destination", Call::Push(vec![p]), "dst")
        }
        6 => {
            p.body = Some(Data {
                key: String::new(),
                value: vec![0u8; 300 << 10].into(),
            });
            ("oversized body", Call::Unary(p), "too large")
        }
        7 => {
            // A table batch cut off in the middle of a pair.
            set_ext(h, &|r| r.data_type = TABLE.into());
            let mut body = Vec::new();
            push_pair(&mut body, b"key", b"value");
            body.truncate(body.len() - 1 - (i as usize % 5));
            p.body = Some(Data {
                key: String::new(),
                value: body.into(),
            });
            ("truncated batch", Call::Push(vec![p]), "truncated")
        }
        8 => {
            // A stream whose second packet belongs to another transfer.
            let other = good(&format!("other{i}"));
            ("mixed stream", Call::Push(vec![p, other]), "belongs")
        }
        9 => ("empty stream", Call::Push(vec![]), "ended"),
        10 => {
            set_ext(h, &|r| r.data_type = "pickle".into());
            ("unknown data type", Call::Unary(p), "dataType")
        }
        11 => {
            set_ext(h, &|r| {
                r.total_partitions = 4;
                r.partition_id = 9;
            });
            ("partition out of range", Call::Unary(p), "partitionId")
        }
        12 => {
            set_ext(h, &|r| r.name.clear());
            ("empty name", Call::Unary(p), "name")
        }
        13 => {
            set_ext(h, &|r| r.dst_party_id = "10001".into());
            ("header disagrees with topic", Call::Unary(p), "dstPartyId")
        }
        14 => {
            h.ext = vec![0xff; 3];
            ("bad pull", Call::Pull(h.clone()), "ext")
        }
        _ => {
            set_ext(h, &|r| r.batch_seq = -5);
            ("negative batch", Call::Push(vec![p]), "batchSeq")
        }
    }
}

async fn send(mut c: DataTransferServiceClient<Channel>, call: Call) -> Result<(), tonic::Status> {
    match call {
        Call::Unary(p) => c.unary_call(p).await.map(|_| ()),
        Call::Push(ps) => c.push(tokio_stream::iter(ps)).await.map(|_| ()),
        Call::Pull(m) => {
            let mut s = c.pull(m).await?.into_inner();
            while s.message().await?.is_some() {}
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_bad_packets_then_a_good_transfer() {
    let dir = dir();
    let (mut ca, mut cb) = (config(dir.path(), "9999"), config(dir.path(), "10000"));
    for c in [&mut ca, &mut cb] {
        c.rollsite.max_message_bytes = 256 << 10;
        c.rollsite.batch_body_bytes = 128 << 10;
    }
    let (a, b) = (start(&ca).await, start(&cb).await);
    set_routes(&a, &ca, json!({"10000": to(b.addr())}));
    std::fs::write(
        &cb.rollsite.route_table,
        json!({"route_table": {"9999": to(a.addr())}, "permission": {"default_allow": false}})
            .to_string(),
    )
    .unwrap();
    assert!(b.site().routes.reload_if_changed());

    let channel = Channel::from_shared(format!("http://{}", b.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = DataTransferServiceClient::new(channel.clone()).max_encoding_message_size(1 << 20);
    let gate = Arc::new(Semaphore::new(32));
    let mut jobs = tokio::task::JoinSet::new();
    const N: u64 = 10_000;
    for i in 0..N {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let c = client.clone();
        jobs.spawn(async move {
            let (kind, call, word) = bad(i);
            let r = send(c, call).await;
            drop(permit);
            (kind, word, r)
        });
    }
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    while let Some(r) = jobs.join_next().await {
        let (kind, word, r) = r.unwrap();
        let status = match r {
            Ok(()) => panic!("a {kind} packet was accepted"),
            Err(s) => s,
        };
        assert!(
            status.message().contains(word) && !status.message().is_empty(),
            "{kind}: {status:?}"
        );
        *seen.entry(kind).or_default() += 1;
    }
    assert_eq!(seen.values().sum::<u64>(), N);
    assert_eq!(seen.len(), 16, "{seen:?}");

    // Streams the client abandons half-way do not hurt either.
    for i in 0..20 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut c = client.clone();
        let call = tokio::spawn(async move {
            c.push(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        tx.send(good(&format!("cut{i}"))).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        call.abort();
    }

    // The same faults through our zero-copy push client (what roll-sites, eggs and
    // federations push with): the receiver's size limit, the client's own, a bad header.
    let big = |name: &str, n: usize| {
        let mut p = good(name);
        p.body = Some(Data {
            key: String::new(),
            value: vec![7u8; n].into(),
        });
        p
    };
    let zero_copy = |packets: Vec<Packet>, max: usize| {
        let ch = channel.clone();
        async move {
            eggroll_proto::push::push(ch, tokio_stream::iter(packets), Default::default(), max)
                .await
        }
    };
    for (what, packets, max, word, code) in [
        (
            "over the receiver's limit",
            vec![good("z1"), big("z1", 300 << 10)],
            1 << 20,
            "too large",
            tonic::Code::OutOfRange,
        ),
        (
            "over the client's limit",
            vec![big("z2", 300 << 10)],
            256 << 10,
            "too large",
            tonic::Code::OutOfRange,
        ),
        (
            "missing header",
            vec![Packet {
                header: None,
                ..good("z3")
            }],
            1 << 20,
            "header",
            tonic::Code::InvalidArgument,
        ),
    ] {
        let s = zero_copy(packets, max).await.expect_err(what);
        assert!(s.message().contains(word), "{what}: {s:?}");
        assert_eq!(s.code(), code, "{what}: {s:?}");
    }

    let small = eggroll_federation::FederationOptions::from_config(&ca.rollsite);
    let fa = federation_with(&a, "good", "guest", "9999", small.clone());
    let fb = federation_with(&b, "good", "host", "10000", small);
    let blob = pattern(1 << 20, 1);
    fa.remote_bytes(blob.clone(), "ok", "0", &[Party::new("host", "10000")])
        .await
        .unwrap();
    assert_eq!(
        fb.get_bytes("ok", "0", &[Party::new("guest", "9999")])
            .await
            .unwrap(),
        vec![blob]
    );
    a.shutdown().await;
    b.shutdown().await;
}
