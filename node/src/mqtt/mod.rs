//! MQTT: the node's events as MQTT topics, and payload submission by publishing.
//!
//! A small MQTT 3.1.1 broker inside the node. The packet codec is rumqttc's
//! (`rumqttc::mqttbytes::v4`); the sessions, the topic tree and the fan-out are here.
//! [`serve`] runs it on a listener until a shutdown future completes (tests bind
//! `127.0.0.1:0`; `tangle-node dev` binds `127.0.0.1:1883`).
//!
//! ## Topics (the node publishes; clients subscribe, `+` and `#` wildcards work)
//! | Topic | Message (JSON) |
//! |---|---|
//! | `milestones/latest`, `milestones/confirmed` | every applied milestone: the SSE `milestone` event (`MilestoneView` with `"type":"milestone"`); retained, so a new subscriber gets the newest at once |
//! | `transactions` | every transaction that became solid: the SSE `transaction` event |
//! | `payloads/{payload id}` | the payload's final status (`"type":"payload"`, `status` confirmed / conflicting + reason) and its reattachments (`"type":"reattached"`) |
//! | `accounts/{bech32 address}` | the account's `AccountView` after a confirmed payload touched it (issuer, recipient, payee, payer) |
//! | `submit/{token}/verdict` | the verdict on a payload published to `submit/{token}` (below) |
//!
//! Every message is QoS 0. The JSON of the first three is exactly what `GET /api/v1/events`
//! sends for the same event.
//!
//! ## Submitting
//! A device subscribes to `submit/{token}/verdict`, then publishes a `SignedPayload` (JSON as
//! `POST /api/v1/payloads` takes it, or MessagePack) to `submit/{token}`, where `{token}` is
//! 1 to 64 characters of `A-Z a-z 0-9 _ -` that it chooses (a device id and a counter, say).
//! The node submits it and publishes `{"ok": PayloadReceipt}` or `{"error": {"code",
//! "message"}}` (codes as for HTTP) to `submit/{token}/verdict`; the final status follows on
//! `payloads/{id}`. A QoS 1 publish is acknowledged after the verdict is published. A
//! publish to any other topic is ignored (clients do not publish node events).
//!
//! ## Limits (every queue fed from outside is bounded)
//! - At most [`MqttOptions::max_connections`] clients; further connections wait in the
//!   listen backlog.
//! - A client must send CONNECT within [`MqttOptions::connect_timeout`]; a packet larger than
//!   [`MqttOptions::max_packet_bytes`], a malformed packet, a second CONNECT or a keep-alive
//!   silence of 1.5 × its keep-alive closes the connection.
//! - Each client has one outgoing queue of [`MqttOptions::queue_len`] packets. A message
//!   for a client whose queue is full is dropped for that client and counted in
//!   `tangle_mqtt_dropped_total`: a slow subscriber never grows the node's memory and never
//!   slows the others. Answers to the client's own packets (CONNACK, SUBACK, PUBACK...) wait
//!   for room instead, which stops reading from that client until it reads.
//! - At most [`MqttOptions::max_subscriptions`] filters per client.
//! - One submission per client at a time (its next packet is read after the verdict).

mod session;
mod topics;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use crate::metrics::MqttMetrics;
use crate::service::NodeService;

use topics::event_messages;
pub use topics::filter_matches;

/// Settings of the MQTT server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttOptions {
    /// Most clients connected at once.
    pub max_connections: usize,
    /// Largest packet accepted from a client, bytes (its remaining length).
    pub max_packet_bytes: usize,
    /// Packets queued for one client; messages beyond are dropped for it (and counted).
    pub queue_len: usize,
    /// Most topic filters one client may hold.
    pub max_subscriptions: usize,
    /// A connection that sends no CONNECT within this long is closed.
    pub connect_timeout: Duration,
}

impl Default for MqttOptions {
    /// 4096 clients, 64 KiB packets, 1024 queued packets per client, 64 filters per client,
    /// 10 s to connect.
    fn default() -> Self {
        MqttOptions {
            max_connections: 4096,
            max_packet_bytes: 64 * 1024,
            queue_len: 1024,
            max_subscriptions: 64,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// One message ready to send: its topic (for matching) and its encoded QoS 0 PUBLISH packet,
/// shared by every client that gets it.
#[derive(Clone, Debug)]
pub struct Message {
    /// Topic name.
    pub topic: Arc<str>,
    /// The whole PUBLISH packet.
    pub packet: Bytes,
}

impl Message {
    /// Encodes a QoS 0 PUBLISH of `payload` on `topic`.
    pub fn new(topic: &str, payload: impl Into<Bytes>) -> Message {
        let publish = rumqttc::Publish::from_bytes(topic, rumqttc::QoS::AtMostOnce, payload.into());
        let mut buf = bytes::BytesMut::with_capacity(publish.size());
        // Writing a QoS 0 publish into a buffer cannot fail (no packet id to check).
        let _ = publish.write(&mut buf);
        Message {
            topic: topic.into(),
            packet: buf.freeze(),
        }
    }
}

/// A connected client as the fan-out sees it.
struct Subscriber {
    filters: Vec<String>,
    queue: mpsc::Sender<Bytes>,
}

/// The topic tree: who is subscribed to what, and the retained messages.
pub(crate) struct Broker {
    clients: Mutex<HashMap<u64, Subscriber>>,
    /// Retained messages by topic (only the node's `milestones/*`, so at most two).
    retained: Mutex<HashMap<Arc<str>, Message>>,
    next_id: AtomicU64,
    metrics: MqttMetrics,
    options: MqttOptions,
}

impl Broker {
    fn new(options: MqttOptions, metrics: MqttMetrics) -> Self {
        Broker {
            clients: Mutex::new(HashMap::new()),
            retained: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            options,
        }
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        // Every mutation is one insert or remove: a poisoned map is still consistent.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client and returns its id.
    fn register(&self, queue: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_clients().insert(
            id,
            Subscriber {
                filters: Vec::new(),
                queue,
            },
        );
        self.metrics.clients.inc();
        id
    }

    fn unregister(&self, id: u64) {
        if self.lock_clients().remove(&id).is_some() {
            self.metrics.clients.dec();
        }
    }

    /// Adds `filter` to client `id`; false when it holds the most filters already.
    /// Returns the retained messages it matches.
    fn subscribe(&self, id: u64, filter: &str) -> Option<Vec<Message>> {
        {
            let mut clients = self.lock_clients();
            let client = clients.get_mut(&id)?;
            if !client.filters.iter().any(|f| f == filter) {
                if client.filters.len() >= self.options.max_subscriptions {
                    return None;
                }
                client.filters.push(filter.to_owned());
            }
        }
        let retained = self.retained.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            retained
                .values()
                .filter(|m| filter_matches(filter, &m.topic))
                .cloned()
                .collect(),
        )
    }

    fn unsubscribe(&self, id: u64, filter: &str) {
        if let Some(c) = self.lock_clients().get_mut(&id) {
            c.filters.retain(|f| f != filter);
        }
    }

    /// Whether any client holds a filter that matches `topic`.
    pub(crate) fn wanted(&self, topic: &str) -> bool {
        self.lock_clients()
            .values()
            .any(|c| c.filters.iter().any(|f| filter_matches(f, topic)))
    }

    /// Sends `message` to every client with a matching filter, without waiting: a client
    /// whose queue is full misses it (counted).
    pub(crate) fn publish(&self, message: &Message, retain: bool) {
        self.metrics.messages.inc();
        if retain {
            // The copy sent to later subscribers carries the RETAIN flag (bit 0 of the first
            // byte); live deliveries do not (MQTT 3.1.1, 3.3.1.3).
            let mut packet = message.packet.to_vec();
            if let Some(b) = packet.first_mut() {
                *b |= 1;
            }
            let stored = Message {
                topic: message.topic.clone(),
                packet: packet.into(),
            };
            self.retained
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(message.topic.clone(), stored);
        }
        let clients = self.lock_clients();
        for c in clients.values() {
            if !c.filters.iter().any(|f| filter_matches(f, &message.topic)) {
                continue;
            }
            match c.queue.try_send(message.packet.clone()) {
                Ok(()) => {
                    self.metrics.delivered.inc();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.dropped.inc();
                }
                // The session is ending and unregisters itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// Runs the MQTT server on `listener` until `shutdown` completes: publishes `service`'s
/// events and takes submissions (see the module docs). Returns once every connection is
/// closed.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    metrics: MqttMetrics,
    options: MqttOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    S: NodeService,
    F: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let broker = Arc::new(Broker::new(options.clone(), metrics));
    let pump = tokio::spawn(pump(
        service.subscribe(),
        service.clone(),
        broker.clone(),
        stop.clone(),
    ));
    let slots = Arc::new(Semaphore::new(options.max_connections.clamp(1, 1 << 20)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stopping = stop.clone();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "mqtt accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (broker, service, stop) = (broker.clone(), service.clone(), stop.clone());
        tasks.spawn(async move {
            session::run(stream, broker, service, stop).await;
            drop(permit);
        });
        // Reap finished sessions so the set does not grow with every connection ever made.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let _ = pump.await;
    Ok(())
}

/// Turns node events into messages until the event channel closes or `stop` turns true.
async fn pump<S: NodeService>(
    mut events: broadcast::Receiver<crate::service::NodeEvent>,
    service: S,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        match event {
            Ok(event) => {
                for (message, retain) in event_messages(&event, &service, &broker) {
                    broker.publish(&message, retain);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                broker.metrics.events_missed.inc_by(n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that does not read loses messages beyond its queue, counted; the
    /// others still get every one.
    #[test]
    fn a_full_queue_drops_and_counts_without_blocking_others() {
        let metrics = MqttMetrics::default();
        let broker = Broker::new(MqttOptions::default(), metrics.clone());
        let (slow_tx, _slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let slow = broker.register(slow_tx);
        let fast = broker.register(fast_tx);
        for id in [slow, fast] {
            assert!(broker.subscribe(id, "transactions").is_some());
        }
        let other = broker.register(mpsc::channel(1).0);
        assert!(broker.subscribe(other, "milestones/#").is_some());
        for i in 0..5 {
            broker.publish(&Message::new("transactions", format!("{i}")), false);
        }
        assert_eq!(metrics.messages.get(), 5);
        assert_eq!(metrics.delivered.get(), 2 + 5);
        assert_eq!(metrics.dropped.get(), 3);
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 5);
        assert_eq!(metrics.clients.get(), 3);
        broker.unregister(slow);
        assert_eq!(metrics.clients.get(), 2);
    }

    #[test]
    fn subscriptions_are_bounded_and_retained_messages_replayed() {
        let options = MqttOptions {
            max_subscriptions: 2,
            ..MqttOptions::default()
        };
        let broker = Broker::new(options, MqttMetrics::default());
        let id = broker.register(mpsc::channel(4).0);
        broker.publish(&Message::new("milestones/latest", "m1"), true);
        broker.publish(&Message::new("milestones/latest", "m2"), true);
        let retained = broker.subscribe(id, "milestones/+").unwrap();
        assert_eq!(retained.len(), 1, "only the newest is kept");
        assert_eq!(retained[0].packet[0] & 1, 1, "RETAIN flag set");
        assert!(retained[0].packet.ends_with(b"m2"));
        assert!(broker.subscribe(id, "a").is_some());
        assert!(
            broker.subscribe(id, "a").is_some(),
            "the same filter again is free"
        );
        assert!(
            broker.subscribe(id, "b").is_none(),
            "a third filter is refused"
        );
        broker.unsubscribe(id, "a");
        assert!(broker.subscribe(id, "b").is_some());
    }
}
