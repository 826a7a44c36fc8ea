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

/// The project's virtual environment's python, with grpcio and grpcio-tools: made (once,
/// under a lock, so parallel tests wait for one install) by `scripts/venv.sh`, which
/// `make test` runs first. Nothing is installed into the system Python.
fn python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/venv.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "this test needs Python with grpcio and grpcio-tools in the project's venv, and {} \
         could not make it (run `make deps`): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Python stubs generated from our proto files, in `dir/stubs`.
fn python_stubs(py: &str, dir: &Path) -> std::path::PathBuf {
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let out = Command::new(py)
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
    stubs
}

/// Packets written length-prefixed (u32 BE) by the Python scripts.
fn read_packets(path: &Path) -> Vec<Packet> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(Packet::decode(&rest[4..4 + n]).unwrap());
        rest = &rest[4 + n..];
    }
    out
}

/// Kills the Python server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_rollsite_pushes_are_accepted_by_a_python_grpcio_next_hop() {
    let py = python();
    let dir = dir();
    let stubs = python_stubs(&py, dir.path());
    let (port_file, capture_file) = (dir.path().join("port"), dir.path().join("got.bin"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/capture_server.py");
    let _server = Child(
        Command::new(&py)
            .arg(script)
            .arg(&stubs)
            .arg(&port_file)
            .arg(&capture_file)
            .spawn()
            .unwrap(),
    );
    let mut port = None;
    for _ in 0..300 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            port = p.trim().parse::<u16>().ok();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let port = port.expect("the Python server did not start within 30 s");
    let next_hop: std::net::SocketAddr = ([127, 0, 0, 1], port).into();

    let c = config(dir.path(), "exchange");
    let site = start(&c).await;
    set_routes(&site, &c, json!({"10000": to(next_hop)}));
    // Several 4 MiB packets (each message spans many HTTP/2 frames), an odd-sized tail, and
    // a small serde value: through our roll-site's zero-copy pushes to grpcio.
    let fed = federation(&site, "wire_out", "guest", "9999");
    let host = [eggroll_federation::Party::new("host", "10000")];
    let blob = pattern((9 << 20) + 12_345, 5);
    fed.remote_bytes(blob.clone(), "big", "0", &host)
        .await
        .unwrap();
    fed.remote(&("ünïcode", 42u32), "small", "0", &host)
        .await
        .unwrap();

    let got = read_packets(&capture_file);
    let header = |p: &Packet| {
        eggroll_proto::transfer::RollSiteHeader::decode(&p.header.as_ref().unwrap().ext[..])
            .unwrap()
    };
    let mut big: Vec<(i64, Vec<u8>)> = got
        .iter()
        .filter(|p| header(p).name == "big")
        .map(|p| (header(p).batch_seq, p.body.as_ref().unwrap().value.to_vec()))
        .collect();
    big.sort();
    assert_eq!(big.len(), blob.len().div_ceil(4 << 20), "{}", big.len());
    let joined: Vec<u8> = big.into_iter().flat_map(|(_, v)| v).collect();
    assert!(joined == blob, "grpcio received different bytes");
    let small: Vec<&Packet> = got.iter().filter(|p| header(p).name == "small").collect();
    assert_eq!(small.len(), 1);
    let value: (String, u32) =
        eggroll_core::codec::decode(&small[0].body.as_ref().unwrap().value, &|| "small".into())
            .unwrap();
    assert_eq!(value, ("ünïcode".to_string(), 42));
    for p in &got {
        let h = p.header.as_ref().unwrap();
        assert_eq!(h.dst.as_ref().unwrap().party_id, "10000");
        assert_eq!(header(p).src_party_id, "9999");
    }
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_grpcio_client_goes_through_our_rollsite_intact() {
    let py = python();
    let dir = dir();
    let stubs = python_stubs(&py, dir.path());

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

    let sent = read_packets(&sent_file);
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
