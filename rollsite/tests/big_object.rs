//! A 1 GiB object between two real roll-sites, streamed in chunks.

mod common;

use common::*;
use eggroll_federation::Party;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_object_arrives_intact() {
    let dir = dir();
    let (ca, cb) = (config(dir.path(), "9999"), config(dir.path(), "10000"));
    let (a, b) = (start(&ca).await, start(&cb).await);
    set_routes(&a, &ca, json!({"10000": to(b.addr())}));
    let fa = federation(&a, "big", "guest", "9999");
    let fb = federation(&b, "big", "host", "10000");
    let blob = bytes::Bytes::from(pattern(1 << 30, 11));
    let getting = tokio::spawn(async move {
        fb.get_bytes("blob", "0", &[Party::new("guest", "9999")])
            .await
    });
    fa.remote_bytes(blob.clone(), "blob", "0", &[Party::new("host", "10000")])
        .await
        .unwrap();
    let got = getting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), blob.len());
    assert!(
        got[0] == blob,
        "the received object differs from the sent one"
    );
    a.shutdown().await;
    b.shutdown().await;
}
