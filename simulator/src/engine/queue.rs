//! The event queue: the events, their (time, insertion number) order, and the heap plus the
//! single-node delivery FIFO they are scheduled on and popped from.

use std::cmp::Ordering;

use super::Simulation;

/// Something that happens at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    Arrival,
    Deliver { node: u16, tx: u32 },
    Milestone,
    Sample,
    Prune,
    ParasiteRelease,
    Spam,
    DoubleSpendFirst(u32),
    DoubleSpendSecond(u32),
}

/// An event in the heap, with its tick and insertion number.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on (time, insertion order).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Simulation {
    /// Schedules `event` at tick `at`.
    pub(super) fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The next event: the earliest of the heap top and the FIFO front, by (time, seq).
    pub(super) fn pop_next(&mut self) -> Option<(u64, Event)> {
        let heap = self.queue.peek().map(|s| (s.at, s.seq));
        let fifo = self.fifo.front().map(|&(at, seq, _)| (at, seq));
        match (heap, fifo) {
            (Some(h), Some(f)) if f < h => self
                .fifo
                .pop_front()
                .map(|(at, _, tx)| (at, Event::Deliver { node: 0, tx })),
            (None, Some(_)) => self
                .fifo
                .pop_front()
                .map(|(at, _, tx)| (at, Event::Deliver { node: 0, tx })),
            _ => self.queue.pop().map(|s| (s.at, s.event)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BinaryHeap;

    use super::*;

    #[test]
    fn events_pop_in_time_then_insertion_order() {
        let mut q = BinaryHeap::new();
        for (seq, at) in [(1, 5), (2, 3), (3, 5), (4, 1)] {
            q.push(Scheduled {
                at,
                seq,
                event: Event::Sample,
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|s| s.seq)).collect();
        assert_eq!(order, vec![4, 2, 1, 3]);
    }
}
