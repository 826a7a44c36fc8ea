//! Wire compatibility: a Python grpcio client, with stubs generated from our proxy.proto,
//! pushes and unary-calls EggRoll-shaped packets through our roll-site, which forwards them
//! intact to the next hop (here a capturing DataTransferService).

mod common;

use common::*;
use eggroll_proto::proxy::data_transfer_service_server::{
    DataTransferService, DataTransferServiceServer,
};
use eggroll_proto::proxy::{Metadata, Packet, PollingFrame};
use prost::Message;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// A next hop that records what it receives.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Packet>>>);

#[tonic::async_trait]
impl DataTransferService for Capture {
    async fn push(&self, req: Request<Streaming<Packet>>) -> Result<Response<Metadata>, Status> {
        let mut s = req.into_inner();
        let mut first = None;
        while let Some(p) = s.message().await? {
            first.get_or_insert_with(|| p.header.clone().unwrap_or_default());
            self.0.lock().unwrap().push(p);
        }
        Ok(Response::new(first.unwrap_or_default()))
    }
    type pullStream = ReceiverStream<Result<Packet, Status>>;
    async fn pull(&self, _: Request<Metadata>) -> Result<Response<Self::pullStream>, Status> {
        Err(Status::unimplemented("capture only"))
    }
    async fn unary_call(&self, req: Request<Packet>) -> Result<Response<Packet>, Status> {
        let p = req.into_inner();
        self.0.lock().unwrap().push(p.clone());
        Ok(Response::new(Packet {
            header: p.header,
            body: None,
        }))
    }
    type pollingStream = ReceiverStream<Result<PollingFrame, Status>>;
    async fn polling(
        &self,
        _: Request<Streaming<PollingFrame>>,
    ) -> Result<Response<Self::pollingStream>, Status> {
        Err(Status::unimplemented("capture only"))
    }
}

fn python() -> Option<String> {
    for p in ["python3", "python"] {
        if Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(p.to_string());
        }
    }
    None
}

/// Makes sure grpcio and grpcio-tools import, installing them with pip when missing.
fn ensure_grpc(py: &str) {
    let has = || {
        Command::new(py)
            .args(["-c", "import grpc, grpc_tools.protoc"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has() {
        return;
    }
    let out = Command::new(py)
        .args(["-m", "pip", "install", "--quiet", "grpcio", "grpcio-tools"])
        .output()
        .expect("cannot run pip");
    assert!(
        out.status.success() && has(),
        "this test needs Python's grpcio and grpcio-tools and could not install them with \
         `{py} -m pip install grpcio grpcio-tools`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_grpcio_client_goes_through_our_rollsite_intact() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: no python3 on this machine; the wire-compatibility test needs it");
        return;
    };
    ensure_grpc(&py);
    let dir = dir();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let out = Command::new(&py)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&protos)
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .args(["proxy.proto", "basic-meta.proto", "transfer.proto"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The next hop: a capturing server on its own port.
    let capture = Capture::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let next_hop = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DataTransferServiceServer::new(capture.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let c = config(dir.path(), "exchange");
    let site = start(&c).await;
    set_routes(&site, &c, json!({"10000": to(next_hop)}));

    let sent_file = dir.path().join("sent.bin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/eggroll_client.py");
    let addr = site.addr().to_string();
    let (py2, stubs2, sent2) = (py.clone(), stubs.clone(), sent_file.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py2)
            .arg(script)
            .arg(stubs2)
            .arg(addr)
            .arg(sent2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let bytes = std::fs::read(&sent_file).unwrap();
    let mut sent = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        sent.push(Packet::decode(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    let got = capture.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    assert_eq!(got.len(), sent.len());
    for (s, g) in sent.iter().zip(&got) {
        // Field by field, header and body, exactly as the Python client encoded them.
        assert_eq!(s, g);
        assert_eq!(s.encode_to_vec(), g.encode_to_vec());
    }
    site.shutdown().await;
    server.abort();
}
