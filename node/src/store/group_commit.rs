//! Group commit: concurrent flush requests share physical flushes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use dag_core::store::{Result, StoreError};

/// Serialises physical flushes and lets every caller that arrived before one started share
/// it.
///
/// Flushes are numbered 1, 2, ... in the order they start. A caller arriving when `started`
/// flushes have started needs flush number `started + 1`: any earlier one may have begun
/// before the caller's writes, the next one certainly did not. It returns once that flush
/// (or a later one, which covers even more) has completed, running it itself if no flush is
/// in progress.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
    physical: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Number of flushes started.
    started: u64,
    /// Number of the last completed flush (flushes run one at a time, so they complete in
    /// order).
    completed: u64,
    /// Whether a flush is running.
    running: bool,
    /// Result of flush `completed`.
    last: Result<()>,
    /// Callers blocked waiting for a flush (observed by tests).
    waiting: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            started: 0,
            completed: 0,
            running: false,
            last: Ok(()),
            waiting: 0,
        }
    }
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed in short sections that cannot panic halfway, so a
        // poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once a physical flush that started after this call has completed, running
    /// `flush` to do it if no flush is in progress. The result is that flush's result (or
    /// a later one's, which covers everything the earlier one did).
    pub(crate) fn commit(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut st = self.lock();
        let needed = st.started + 1;
        loop {
            if st.completed >= needed {
                return st.last.clone();
            }
            if !st.running {
                st.running = true;
                st.started += 1;
                let mine = st.started;
                drop(st);
                let mut guard = Finish {
                    group: self,
                    number: mine,
                    result: Err(StoreError::Backend("flush panicked".into())),
                };
                guard.result = flush();
                self.physical.fetch_add(1, Ordering::Relaxed);
                let result = guard.result.clone();
                drop(guard);
                return result;
            }
            st.waiting += 1;
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
    }

    /// Number of physical flushes run so far.
    pub(crate) fn physical_flushes(&self) -> u64 {
        self.physical.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }
}

/// Publishes the end of a flush, also if the flush panicked (waiters must not hang).
struct Finish<'a> {
    group: &'a GroupCommit,
    number: u64,
    result: Result<()>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        st.running = false;
        st.completed = self.number;
        st.last = self.result.clone();
        drop(st);
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// While the first flush runs, every other caller arrives and waits; they all share the
    /// second flush: exactly two physical flushes for N callers.
    #[test]
    fn callers_arriving_during_a_flush_share_the_next_one() {
        const N: usize = 8;
        let group = Arc::new(GroupCommit::default());
        let first = Arc::new(AtomicBool::new(true));
        let runs = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let (group, first, runs) = (group.clone(), first.clone(), runs.clone());
                std::thread::spawn(move || {
                    let g = group.clone();
                    group.commit(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if first.swap(false, Ordering::SeqCst) {
                            // Hold the first flush until all the others wait behind it.
                            while g.waiting() < N - 1 {
                                std::thread::yield_now();
                            }
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(group.physical_flushes(), 2);
    }

    /// A flush already running when a caller arrives does not count for it: it gets a
    /// flush of its own.
    #[test]
    fn a_flush_in_progress_does_not_cover_a_later_caller() {
        let group = Arc::new(GroupCommit::default());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let g = group.clone();
        let leader = std::thread::spawn(move || {
            g.commit(|| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
        });
        entered_rx.recv().unwrap();
        let g = group.clone();
        let late = std::thread::spawn(move || g.commit(|| Ok(())));
        while group.waiting() < 1 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        leader.join().unwrap().unwrap();
        late.join().unwrap().unwrap();
        assert_eq!(group.physical_flushes(), 2);
    }

    /// A failed flush is reported to the callers it covered, and a later flush runs again.
    #[test]
    fn errors_reach_the_callers_and_the_next_flush_retries() {
        let group = GroupCommit::default();
        let err = StoreError::Backend("disk full".into());
        assert_eq!(group.commit(|| Err(err.clone())), Err(err));
        assert_eq!(group.commit(|| Ok(())), Ok(()));
        assert_eq!(group.physical_flushes(), 2);
    }

    /// A panicking flush does not leave the group stuck.
    #[test]
    fn a_panicking_flush_releases_the_group() {
        let group = Arc::new(GroupCommit::default());
        let g = group.clone();
        let r = std::thread::spawn(move || g.commit(|| panic!("boom"))).join();
        assert!(r.is_err());
        assert_eq!(group.commit(|| Ok(())), Ok(()));
    }
}
