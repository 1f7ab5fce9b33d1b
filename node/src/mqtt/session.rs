//! One client connection: CONNECT, then subscriptions, submissions and pings until it
//! disconnects, breaks the protocol, goes silent or the server stops.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::topics::{submit_token, valid_filter};
use super::{Broker, Message};
use crate::api::{ApiError, BatchVerdict, ErrorBody};
use crate::service::{NodeService, SubmitError};

/// Most packets written to the socket in one write.
const WRITE_BATCH: usize = 64;

/// Why reading the next packet stopped.
enum ReadEnd {
    /// The client closed the connection.
    Closed,
    /// Malformed, too large, or an I/O error.
    Broken,
}

/// Serves one connection until it ends.
pub(super) async fn run<S: NodeService>(
    stream: TcpStream,
    broker: Arc<Broker>,
    service: S,
    mut stop: watch::Receiver<bool>,
) {
    let options = broker.options.clone();
    let (mut rd, wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(1024);
    let max = options.max_packet_bytes;
    let connect = tokio::select! {
        r = tokio::time::timeout(options.connect_timeout, read_packet(&mut rd, &mut buf, max)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let connect = match connect {
        Ok(Ok(Packet::Connect(c))) => c,
        // Anything else first, silence, garbage: close without an answer.
        _ => return,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(options.queue_len.max(4));
    // CONNACK goes first in the queue, before any message the broker may route here.
    let _ = tx.try_send(encode(&Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    ))));
    let id = broker.register(tx.clone());
    let writer = tokio::spawn(write_loop(wr, rx));
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));

    loop {
        let read = async {
            match keep_alive {
                Some(limit) => tokio::time::timeout(limit, read_packet(&mut rd, &mut buf, max))
                    .await
                    .unwrap_or(Err(ReadEnd::Broken)),
                None => read_packet(&mut rd, &mut buf, max).await,
            }
        };
        let packet = tokio::select! {
            p = read => p,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(packet) = packet else { break };
        let mut replies: Vec<Bytes> = Vec::new();
        match packet {
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut retained = Vec::new();
                for f in &s.filters {
                    let granted = valid_filter(&f.path)
                        .then(|| broker.subscribe(id, &f.path))
                        .flatten();
                    match granted {
                        Some(msgs) => {
                            codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                            retained.extend(msgs);
                        }
                        None => codes.push(SubscribeReasonCode::Failure),
                    }
                }
                replies.push(encode(&Packet::SubAck(SubAck::new(s.pkid, codes))));
                replies.extend(retained.into_iter().map(|m| m.packet));
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    broker.unsubscribe(id, t);
                }
                replies.push(encode(&Packet::UnsubAck(UnsubAck::new(u.pkid))));
            }
            Packet::Publish(p) => {
                if let Some(token) = submit_token(&p.topic) {
                    let verdict = submit(&service, &p.payload).await;
                    broker.metrics.submissions.inc();
                    let topic = format!("submit/{token}/verdict");
                    let json = serde_json::to_vec(&verdict).unwrap_or_default();
                    broker.publish(&Message::new(&topic, json), false);
                }
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => replies.push(encode(&Packet::PubAck(PubAck::new(p.pkid)))),
                    QoS::ExactlyOnce => replies.push(encode(&Packet::PubRec(PubRec::new(p.pkid)))),
                }
            }
            Packet::PubRel(r) => replies.push(encode(&Packet::PubComp(PubComp::new(r.pkid)))),
            Packet::PingReq => replies.push(encode(&Packet::PingResp)),
            // Acks of QoS 1/2 messages the node never sends: nothing to do.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
            // A clean goodbye, a second CONNECT, or packets only a server sends.
            Packet::Disconnect
            | Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => break,
        }
        let mut closed = false;
        for r in replies {
            // Answers wait for room (this stops reading from a client that does not read).
            if tx.send(r).await.is_err() {
                closed = true;
                break;
            }
        }
        if closed {
            break;
        }
    }
    broker.unregister(id);
    writer.abort();
}

/// Decodes and submits one published payload; the verdict as the batch route gives it.
async fn submit<S: NodeService>(service: &S, body: &[u8]) -> BatchVerdict {
    let json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let decoded: Result<dag_core::SignedPayload, String> = if json {
        serde_json::from_slice(body).map_err(|e| format!("not a signed payload (JSON): {e}"))
    } else {
        rmp_serde::from_slice(body).map_err(|e| format!("not a signed payload (MessagePack): {e}"))
    };
    let payload = match decoded {
        Ok(p) => p,
        Err(message) => {
            return BatchVerdict::Error(ErrorBody {
                code: "malformed".into(),
                message,
            })
        }
    };
    let verdict = service
        .submit_payloads(vec![payload])
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(SubmitError::Unavailable("no verdict".into())));
    match verdict {
        Ok(receipt) => BatchVerdict::Ok(receipt),
        Err(e) => BatchVerdict::Error(ApiError::from(e).body),
    }
}

/// Reads the next whole packet (at most `max` bytes of remaining length).
async fn read_packet(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, ReadEnd> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(_) => return Err(ReadEnd::Broken),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(_) => {}
            Err(_) => return Err(ReadEnd::Broken),
        }
    }
}

fn encode(packet: &Packet) -> Bytes {
    let mut b = BytesMut::with_capacity(packet.size());
    // The node's own packets are small and well-formed; a failure leaves nothing to send.
    let _ = packet.write(&mut b, usize::MAX);
    b.freeze()
}

/// Writes queued packets to the socket, several per write, until the queue closes.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut out = BytesMut::new();
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        out.clear();
        for p in batch.drain(..) {
            out.extend_from_slice(&p);
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The codec never panics on bytes from a client, whole or cut anywhere.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while Packet::read(&mut buf, 1024).is_ok() {}
        }
    }
}
