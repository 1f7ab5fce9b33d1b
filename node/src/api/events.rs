//! `GET /api/v1/events`: node events as Server-Sent Events with ids, and resumption.
//!
//! One pump task per API subscribes to the node's broadcast channel, numbers every event and
//! keeps the newest [`ApiOptions::event_replay`](super::ApiOptions::event_replay) of them in
//! a ring. Every client stream reads from that ring with its own cursor (the next id it
//! wants) and waits on a watch of the newest id, so there is no per-client buffer: a client
//! that reads slower than events arrive falls behind the ring and is told so.
//!
//! - Ids are integers that only grow. They start at the API's start time in ms × 1000, so
//!   an id handed out by an earlier run of the node is (in practice) below every id of this
//!   run, and ids stay below 2^53 (exact in JavaScript) until the year 2255.
//! - A client reconnecting with `Last-Event-ID: n` gets every event after `n` that the ring
//!   still holds. Whatever it can no longer get is announced by one `lagged` event before
//!   the events that follow the gap: `{"missed", "first_id", "last_id", "reason"}` with
//!   `reason` `evicted` (no longer held: the client was too slow or away too long) or
//!   `dropped` (the API's own subscription to the node fell behind, so those events were
//!   never numbered into the ring). A `Last-Event-ID` this run did not hand out (an earlier
//!   run, another node) gets `{"missed": null, ..., "reason": "unknown_id"}` and then every
//!   event the ring holds.
//! - The `lagged` event's own id is the last missed id, so resuming after it does not ask
//!   for the lost range again.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::sse::Event;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_stream::Stream;

use crate::service::NodeEvent;

/// Most entries copied out of the ring per lock.
const READ_BATCH: usize = 256;

/// One slot of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// A numbered event and its JSON.
    Event { id: u64, json: Arc<str> },
    /// Ids `first..=last` were assigned to events the pump never received.
    Dropped { first: u64, last: u64 },
}

impl Entry {
    fn first(&self) -> u64 {
        match self {
            Entry::Event { id, .. } => *id,
            Entry::Dropped { first, .. } => *first,
        }
    }
    fn last(&self) -> u64 {
        match self {
            Entry::Event { id, .. } => *id,
            Entry::Dropped { last, .. } => *last,
        }
    }
}

struct Ring {
    entries: VecDeque<Entry>,
    /// Id the next event gets.
    next_id: u64,
}

/// The `lagged` event's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LaggedEvent {
    /// How many events are lost; `null` when unknown (`unknown_id`).
    pub missed: Option<u64>,
    /// First lost id (`null` when unknown).
    pub first_id: Option<u64>,
    /// Last lost id (`null` when unknown).
    pub last_id: Option<u64>,
    /// `evicted`, `dropped` or `unknown_id` (see the module docs).
    pub reason: String,
}

/// What a client stream yields: an event or a loss notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Event { id: u64, json: Arc<str> },
    Lagged { id: u64, body: LaggedEvent },
}

impl Item {
    fn into_sse(self) -> Event {
        match self {
            Item::Event { id, json } => Event::default().id(id.to_string()).data(&*json),
            Item::Lagged { id, body } => Event::default()
                .event("lagged")
                .id(id.to_string())
                .data(serde_json::to_string(&body).unwrap_or_default()),
        }
    }
}

/// The ring, its newest id, and whether the pump runs.
pub(crate) struct EventHub {
    ring: Mutex<Ring>,
    capacity: usize,
    /// First id of this run.
    base: u64,
    /// Newest id assigned (`base - 1` before the first).
    latest: watch::Sender<u64>,
    pump_started: AtomicBool,
}

impl EventHub {
    /// A hub holding up to `capacity` (at least 1) entries, first id `base` (at least 1).
    pub(crate) fn new(capacity: usize, base: u64) -> Self {
        let base = base.max(1);
        EventHub {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                next_id: base,
            }),
            capacity: capacity.max(1),
            base,
            latest: watch::channel(base - 1).0,
            pump_started: AtomicBool::new(false),
        }
    }

    /// The first id of a hub started now: ms since the Unix epoch × 1000.
    pub(crate) fn base_now() -> u64 {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ms.saturating_mul(1000).max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every mutation is one
        // push or pop), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, ring: &mut Ring, entry: Entry) {
        let last = entry.last();
        ring.entries.push_back(entry);
        while ring.entries.len() > self.capacity {
            ring.entries.pop_front();
        }
        ring.next_id = last + 1;
        self.latest.send_replace(last);
    }

    /// Numbers and stores one event.
    pub(crate) fn push_event(&self, json: Arc<str>) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        self.push(&mut ring, Entry::Event { id, json });
        id
    }

    /// Records that `n` events were never received (their ids are skipped).
    pub(crate) fn push_dropped(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut ring = self.lock();
        let first = ring.next_id;
        self.push(
            &mut ring,
            Entry::Dropped {
                first,
                last: first + n - 1,
            },
        );
    }

    /// True for the first caller only: whoever gets true starts the hub's one pump.
    pub(crate) fn claim_pump(&self) -> bool {
        !self.pump_started.swap(true, Ordering::AcqRel)
    }

    /// Starts the pump on the first call (later calls do nothing): it numbers every event of
    /// `events` into the ring until the channel closes or `shutdown` turns true.
    pub(crate) fn ensure_pump(
        self: &Arc<Self>,
        subscribe: impl FnOnce() -> broadcast::Receiver<NodeEvent>,
        mut shutdown: watch::Receiver<bool>,
        on_dropped: impl Fn(u64) + Send + 'static,
    ) {
        if !self.claim_pump() {
            return;
        }
        let mut events = subscribe();
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) => {
                            // Serialising these plain structs cannot fail; if it ever did, the
                            // id is accounted for as a dropped event rather than skipped.
                            match serde_json::to_string(&event) {
                                Ok(json) => {
                                    hub.push_event(json.into());
                                }
                                Err(_) => {
                                    hub.push_dropped(1);
                                    on_dropped(1);
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            hub.push_dropped(n);
                            on_dropped(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = shutdown.wait_for(|stopping| *stopping) => break,
                }
            }
        });
    }

    /// Where a new client starts: the next id it wants, and a notice to send first when its
    /// `Last-Event-ID` is not one of this run's.
    pub(crate) fn start(&self, last_event_id: Option<u64>) -> (u64, Option<Item>) {
        let ring = self.lock();
        match last_event_id {
            None => (ring.next_id, None),
            Some(last) if last >= self.base - 1 && last < ring.next_id => (last + 1, None),
            Some(_) => {
                let from = ring.entries.front().map_or(ring.next_id, Entry::first);
                let notice = Item::Lagged {
                    id: from - 1,
                    body: LaggedEvent {
                        missed: None,
                        first_id: None,
                        last_id: None,
                        reason: "unknown_id".to_owned(),
                    },
                };
                (from, Some(notice))
            }
        }
    }

    /// Copies up to [`READ_BATCH`] items from id `*next` on into `out`, with a `lagged` item
    /// for every gap, and advances `*next`. Adds nothing when the client is up to date.
    pub(crate) fn read(&self, next: &mut u64, out: &mut VecDeque<Item>) {
        let ring = self.lock();
        let start = ring.entries.partition_point(|e| e.last() < *next);
        for entry in ring.entries.range(start..).take(READ_BATCH) {
            if entry.first() > *next {
                out.push_back(lagged(*next, entry.first() - 1, "evicted"));
            }
            match entry {
                Entry::Event { id, json } => out.push_back(Item::Event {
                    id: *id,
                    json: json.clone(),
                }),
                Entry::Dropped { first, last } => {
                    out.push_back(lagged((*first).max(*next), *last, "dropped"))
                }
            }
            *next = entry.last() + 1;
        }
        if start == ring.entries.len() && *next < ring.next_id {
            // Everything the client wants is older than the ring.
            out.push_back(lagged(*next, ring.next_id - 1, "evicted"));
            *next = ring.next_id;
        }
    }

    /// The stream of one client starting at `next` (after `first`, if any), ending when
    /// `shutdown` turns true. `guard` lives as long as the stream.
    pub(crate) fn stream<G: Send + 'static>(
        self: Arc<Self>,
        next: u64,
        first: Option<Item>,
        shutdown: watch::Receiver<bool>,
        guard: G,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        struct Client<G> {
            hub: Arc<EventHub>,
            next: u64,
            pending: VecDeque<Item>,
            latest: watch::Receiver<u64>,
            shutdown: watch::Receiver<bool>,
            _guard: G,
        }
        let client = Client {
            latest: self.latest.subscribe(),
            hub: self,
            next,
            pending: first.into_iter().collect(),
            shutdown,
            _guard: guard,
        };
        futures_util::stream::unfold(client, |mut c| async move {
            loop {
                if *c.shutdown.borrow() {
                    return None;
                }
                if let Some(item) = c.pending.pop_front() {
                    return Some((Ok(item.into_sse()), c));
                }
                // Mark the newest id seen before reading, so an event pushed after the read
                // wakes the wait below.
                c.latest.borrow_and_update();
                c.hub.read(&mut c.next, &mut c.pending);
                if !c.pending.is_empty() {
                    continue;
                }
                tokio::select! {
                    changed = c.latest.changed() => if changed.is_err() { return None },
                    changed = c.shutdown.changed() => if changed.is_err() { return None },
                }
            }
        })
    }
}

fn lagged(first: u64, last: u64, reason: &str) -> Item {
    Item::Lagged {
        id: last,
        body: LaggedEvent {
            missed: Some(last - first + 1),
            first_id: Some(first),
            last_id: Some(last),
            reason: reason.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(hub: &EventHub, next: &mut u64) -> Vec<Item> {
        let mut out = VecDeque::new();
        loop {
            let before = out.len();
            hub.read(next, &mut out);
            if out.len() == before {
                return out.into();
            }
        }
    }

    fn ev(id: u64) -> Item {
        Item::Event {
            id,
            json: id.to_string().into(),
        }
    }

    #[test]
    fn resume_replays_what_the_ring_holds_and_reports_the_rest() {
        let hub = EventHub::new(4, 100);
        for i in 100..110 {
            assert_eq!(hub.push_event(i.to_string().into()), i);
        }
        // Ring holds 106..=109.
        let (mut next, notice) = hub.start(Some(107));
        assert_eq!(notice, None);
        assert_eq!(drain(&hub, &mut next), vec![ev(108), ev(109)]);
        assert_eq!(next, 110);
        assert!(drain(&hub, &mut next).is_empty(), "up to date");

        // Away too long: ids 101..=105 are gone.
        let (mut next, _) = hub.start(Some(100));
        let items = drain(&hub, &mut next);
        assert_eq!(items[0], lagged(101, 105, "evicted"));
        assert_eq!(&items[1..], &[ev(106), ev(107), ev(108), ev(109)]);

        // Slow client whose cursor fell off the ring entirely.
        hub.push_event("110".into());
        let mut next = 102;
        let items = drain(&hub, &mut next);
        assert_eq!(items[0], lagged(102, 106, "evicted"));
        assert_eq!(items.len(), 5);
    }

    #[test]
    fn dropped_ids_are_reported_in_order() {
        let hub = EventHub::new(8, 1);
        hub.push_event("a".into()); // 1
        hub.push_dropped(3); // 2..=4
        hub.push_event("b".into()); // 5
        let (mut next, _) = hub.start(None);
        assert_eq!(next, 6);
        let mut next_from_start = 1;
        let items = drain(&hub, &mut next_from_start);
        assert_eq!(
            items,
            vec![
                Item::Event {
                    id: 1,
                    json: "a".into()
                },
                lagged(2, 4, "dropped"),
                Item::Event {
                    id: 5,
                    json: "b".into()
                },
            ]
        );
        // Resuming inside the dropped range reports only the rest of it.
        let mut mid = 3;
        assert_eq!(drain(&hub, &mut mid)[0], lagged(3, 4, "dropped"));
        assert!(drain(&hub, &mut next).is_empty());
    }

    #[test]
    fn unknown_last_event_id_replays_everything_held() {
        let hub = EventHub::new(2, 1000);
        for _ in 0..3 {
            hub.push_event("x".into());
        }
        for unknown in [5, 999_999, 1003] {
            let (next, notice) = hub.start(Some(unknown));
            assert_eq!(next, 1001, "{unknown}");
            let Some(Item::Lagged { id, body }) = notice else {
                panic!("no notice for {unknown}")
            };
            assert_eq!(id, 1000);
            assert_eq!(body.reason, "unknown_id");
            assert_eq!(body.missed, None);
        }
        // The newest id and the one before the first are known.
        assert_eq!(hub.start(Some(1002)), (1003, None));
        assert_eq!(hub.start(Some(999)).0, 1000);
    }
}
