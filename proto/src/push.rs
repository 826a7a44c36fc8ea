//! A `DataTransferService.push` client that sends packet bodies without copying them.
//!
//! tonic's encoder copies every message into its own buffer before h2 writes it. A packet's
//! body is most of its bytes (megabytes of an object or a table batch), so here each packet
//! goes out as two pieces: a small encoded head (the gRPC length prefix, the header and the
//! protobuf tags in front of the body's value) and the value's own `Bytes`, which h2 hands to
//! the socket as they are (vectored writes). The bytes on the wire are exactly what tonic
//! would send: the same gRPC framing and the same protobuf encoding, fields in number order.

use crate::proxy::{Metadata, Packet};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::encoding::{encode_key, encode_varint, WireType};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio_stream::Stream;
use tonic::codec::{Codec, Streaming};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::Status;

/// The HTTP/2 path of `DataTransferService.push`.
pub const PUSH_PATH: &str = "/com.webank.ai.eggroll.api.networking.proxy.DataTransferService/push";

/// One packet as a gRPC message: its head (length prefix and every encoded byte before the
/// body's value) and the value itself, shared, not copied. `head ++ value` is the message.
pub fn encode_packet(p: &Packet) -> (Bytes, Bytes) {
    use prost::Message;
    let header_len = p.header.as_ref().map_or(0, |h| h.encoded_len());
    let mut head = BytesMut::with_capacity(5 + header_len + 32);
    head.put_bytes(0, 5);
    if let Some(h) = &p.header {
        prost::encoding::message::encode(1, h, &mut head);
    }
    let mut value = Bytes::new();
    if let Some(d) = &p.body {
        let key_len = if d.key.is_empty() {
            0
        } else {
            prost::encoding::string::encoded_len(1, &d.key)
        };
        let value_len = if d.value.is_empty() {
            0
        } else {
            prost::encoding::bytes::encoded_len(2, &d.value)
        };
        encode_key(2, WireType::LengthDelimited, &mut head);
        encode_varint((key_len + value_len) as u64, &mut head);
        if !d.key.is_empty() {
            prost::encoding::string::encode(1, &d.key, &mut head);
        }
        if !d.value.is_empty() {
            encode_key(2, WireType::LengthDelimited, &mut head);
            encode_varint(d.value.len() as u64, &mut head);
            value = d.value.clone();
        }
    }
    let len = (head.len() - 5 + value.len()) as u32;
    head[1..5].copy_from_slice(&len.to_be_bytes());
    (head.freeze(), value)
}

/// The request body: each packet's head, then its value, as separate HTTP/2 data.
struct PacketBody<S> {
    packets: S,
    value: Option<Bytes>,
    max_message: usize,
    /// Why the body stopped, if it did: h2 turns a body error into a bare stream reset, so
    /// the call reports this instead.
    failed: Arc<Mutex<Option<Status>>>,
}

impl<S: Stream<Item = Packet> + Unpin> http_body::Body for PacketBody<S> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(v) = self.value.take() {
            return Poll::Ready(Some(Ok(Frame::data(v))));
        }
        let Some(p) = std::task::ready!(Pin::new(&mut self.packets).poll_next(cx)) else {
            return Poll::Ready(None);
        };
        let (head, value) = encode_packet(&p);
        let len = head.len() - 5 + value.len();
        if len > self.max_message {
            // As tonic's own encoder says it.
            let s = Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message
            ));
            *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
            return Poll::Ready(Some(Err(s)));
        }
        if !value.is_empty() {
            self.value = Some(value);
        }
        Poll::Ready(Some(Ok(Frame::data(head))))
    }
}

/// Calls `push` on `channel` with `packets` and `metadata` (request headers); answers with
/// the receiver's acknowledgement, or its status. Messages over `max_message` bytes, either
/// way, fail as tonic's size limits do.
pub async fn push<S>(
    channel: Channel,
    packets: S,
    metadata: MetadataMap,
    max_message: usize,
) -> Result<Metadata, Status>
where
    S: Stream<Item = Packet> + Send + 'static,
{
    let failed = Arc::new(Mutex::new(None));
    let result = call(channel, packets, metadata, max_message, failed.clone()).await;
    let body_error = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
    match body_error {
        Some(s) if result.is_err() => Err(s),
        _ => result,
    }
}

async fn call<S>(
    channel: Channel,
    packets: S,
    metadata: MetadataMap,
    max_message: usize,
    failed: Arc<Mutex<Option<Status>>>,
) -> Result<Metadata, Status>
where
    S: Stream<Item = Packet> + Send + 'static,
{
    use tonic::codegen::Service;
    let body = PacketBody {
        packets: Box::pin(packets),
        value: None,
        max_message,
        failed,
    };
    let mut req = http::Request::new(tonic::body::Body::new(body));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static(PUSH_PATH);
    *req.version_mut() = http::Version::HTTP_2;
    let headers = req.headers_mut();
    headers.extend(metadata.into_headers());
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));

    let mut channel = channel;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    let response = channel
        .call(req)
        .await
        .map_err(|e| Status::from_error(Box::new(e)))?;
    // A trailers-only answer is an error (or a missing acknowledgement).
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != tonic::Code::Ok {
            return Err(status);
        }
        return Err(Status::internal("Missing response message."));
    }
    let status_code = response.status();
    let decoder = tonic_prost::ProstCodec::<Packet, Metadata>::default().decoder();
    let mut answer = Streaming::new_response(
        decoder,
        response.into_body(),
        status_code,
        None,
        Some(max_message),
    );
    let ack = answer
        .message()
        .await?
        .ok_or_else(|| Status::internal("Missing response message."))?;
    // The trailers carry the final status: an error there fails the call.
    answer.trailers().await?;
    Ok(ack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Data, Topic};
    use prost::Message;

    fn wire(p: &Packet) -> Vec<u8> {
        let (head, value) = encode_packet(p);
        let mut out = head.to_vec();
        out.extend_from_slice(&value);
        out
    }

    fn tonic_wire(p: &Packet) -> Vec<u8> {
        let body = p.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn packets_encode_byte_for_byte_as_prost_does() {
        let header = Metadata {
            src: Some(Topic {
                name: "名前".into(),
                party_id: "9999".into(),
                ..Default::default()
            }),
            seq: 7,
            ext: vec![1, 2, 3],
            ..Default::default()
        };
        let big: Bytes = (0..200_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let cases = [
            Packet::default(),
            Packet {
                header: Some(header.clone()),
                body: None,
            },
            Packet {
                header: None,
                body: Some(Data::default()),
            },
            Packet {
                header: Some(header.clone()),
                body: Some(Data {
                    key: "k🔑".into(),
                    value: Bytes::new(),
                }),
            },
            Packet {
                header: Some(header.clone()),
                body: Some(Data {
                    key: String::new(),
                    value: Bytes::from_static(b"\0\xff"),
                }),
            },
            Packet {
                header: Some(header),
                body: Some(Data {
                    key: "key".into(),
                    value: big.clone(),
                }),
            },
        ];
        for p in &cases {
            assert_eq!(wire(p), tonic_wire(p), "{p:?}");
            // And it decodes back to the same packet.
            let w = wire(p);
            assert_eq!(&Packet::decode(&w[5..]).unwrap(), p);
        }
        // The value is shared, not copied.
        let p = &cases[5];
        let (_, value) = encode_packet(p);
        assert_eq!(value.as_ptr(), big.as_ptr());
    }
}
