//! Disk-size retention (`[pruning] max_disk_mb`): a task measures the database directory
//! every few seconds and, while it is larger than the target, tells the core to keep fewer
//! milestones ([`Protocol::set_retention_limit`]); the core prunes with its usual cut rules
//! (never anything an unconfirmed transaction, a pending solidification, a reattachment or
//! an open channel needs), so there is one pruning path. When the directory is well below
//! the target again the limit is relaxed step by step, up to `keep_milestones` (or without
//! bound for an archive node). Never fewer than two milestones are kept.
//!
//! The transaction log is deleted in whole segments ([`crate::store::PRUNED_SEGMENT_BYTES`],
//! 16 MiB, in a node that prunes) and the live segment is never deleted, so a target below about two segments
//! plus sled's files cannot be met: the node then keeps two milestones and says so in a
//! warning.

use std::path::{Path, PathBuf};
use std::sync::Weak;

use super::*;

/// How often [`Node::limit_disk`] measures the database by default.
pub const DISK_CHECK_PERIOD: Duration = Duration::from_secs(2);

/// The fewest milestones the core keeps (the last applied one's transaction is the next
/// milestone's previous one).
const FLOOR: u32 = 2;

/// A disk-size target for a node's database directory.
#[derive(Clone, Debug)]
pub struct DiskTarget {
    /// The database directory (the config's `data_dir`).
    pub dir: PathBuf,
    /// Largest size, in bytes, of the files under `dir`.
    pub max_bytes: u64,
    /// How often the directory is measured.
    pub period: Duration,
}

impl DiskTarget {
    /// A target of `max_bytes` for `dir`, measured every [`DISK_CHECK_PERIOD`].
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        DiskTarget {
            dir,
            max_bytes,
            period: DISK_CHECK_PERIOD,
        }
    }
}

/// The sum of the sizes of the files under `dir` (what `du --apparent-size` says; cheap:
/// sled and the transaction log are a few dozen files).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The next retention limit for a directory of `used` bytes against a target of `max`, with
/// `held` milestones held now, the `current` limit and the configured `keep_milestones`
/// (`None`: archive).
///
/// Over the target: keep the share of the held milestones that fits in 90% of the target
/// (assuming bytes grow with milestones kept), at least one fewer than held, never fewer
/// than two. Below 75% of it, while the limit is what bounds the history: 1/8 more
/// (lifted once it reaches `keep_milestones`). In between: unchanged (hysteresis).
pub(super) fn next_limit(
    used: u64,
    max: u64,
    held: u32,
    current: Option<u32>,
    configured: Option<u32>,
) -> Option<u32> {
    if used > max {
        let fits = u128::from(held) * u128::from(max) * 9 / 10 / u128::from(used);
        let mut limit = u32::try_from(fits)
            .unwrap_or(u32::MAX)
            .min(held.saturating_sub(1));
        if let Some(c) = current {
            limit = limit.min(c);
        }
        if let Some(k) = configured {
            limit = limit.min(k);
        }
        Some(limit.max(FLOOR))
    } else if u128::from(used) * 4 < u128::from(max) * 3 {
        let c = current?;
        if held < c {
            // The history has not grown to the limit yet.
            return Some(c);
        }
        let next = c.saturating_add((c / 8).max(1));
        match configured {
            Some(k) if next >= k => None,
            _ => Some(next),
        }
    } else {
        current
    }
}

impl Node {
    /// Keeps the database directory under `target` by pruning more (see the module docs);
    /// the check runs every `target.period` until the node stops. Must run inside a tokio
    /// runtime.
    pub fn limit_disk(&self, target: DiskTarget) {
        let floor = 2 * crate::store::PRUNED_SEGMENT_BYTES;
        if target.max_bytes <= floor {
            tracing::warn!(
                max_mb = target.max_bytes >> 20,
                "max_disk_mb is below two transaction-log segments (32 MiB, deleted whole) plus \
                 sled's files: it cannot be met; the node will keep only two milestones"
            );
        }
        let shared = Arc::downgrade(&self.handle.shared);
        let stop = self.stop.subscribe();
        let task = tokio::spawn(watch_disk(shared, target, stop));
        let old = self
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task);
        if let Some(old) = old {
            // One target at a time: the newest replaces the last.
            old.abort();
        }
    }
}

/// What the disk task remembers between checks.
#[derive(Default)]
struct Watch {
    /// A warning that the target is not met at the floor was logged (until it is met).
    warned: bool,
}

async fn watch_disk(
    shared: Weak<Shared>,
    target: DiskTarget,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(target.period.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let target = Arc::new(target);
    let mut watch = Watch::default();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(s) = shared.upgrade() else {
            return;
        };
        if *stop.borrow() {
            return;
        }
        let t = target.clone();
        match tokio::task::spawn_blocking(move || {
            s.check_disk(&t, &mut watch);
            watch
        })
        .await
        {
            Ok(w) => watch = w,
            Err(_) => {
                tracing::error!("disk retention check panicked");
                return;
            }
        }
    }
}

impl Shared {
    /// One check: measure, update the core's limit, write the prune it leads to.
    fn check_disk(&self, target: &DiskTarget, watch: &mut Watch) {
        let used = dir_bytes(&target.dir);
        let (before, after, held) = {
            let mut core = self.lock();
            let held = core.held_milestones();
            let current = core.retention_limit();
            let configured = core.keep_milestones();
            let next = next_limit(used, target.max_bytes, held, current, configured);
            if next != current {
                core.set_retention_limit(next);
            }
            (current, next, held)
        };
        let mb = |b: u64| b >> 20;
        if after != before {
            match after {
                Some(n) if before.is_none_or(|b| n < b) => tracing::info!(
                    used_mb = mb(used),
                    max_mb = mb(target.max_bytes),
                    held,
                    keep_milestones = n,
                    "database over its disk target: keeping fewer milestones"
                ),
                _ => tracing::debug!(
                    used_mb = mb(used),
                    max_mb = mb(target.max_bytes),
                    limit = ?after,
                    "database under its disk target: retention limit relaxed"
                ),
            }
            if self.persist().is_err() {
                // The prune stays queued in the backlog and is retried with it.
                return;
            }
        }
        if used > target.max_bytes && after == Some(FLOOR) && held <= FLOOR + 1 {
            if !watch.warned {
                watch.warned = true;
                tracing::warn!(
                    used_mb = mb(used),
                    max_mb = mb(target.max_bytes),
                    "disk target not met with only two milestones kept: the transaction log \
                     is deleted in whole 16 MiB segments (the live one stays) and sled keeps \
                     its own files, so a target below a couple of segments plus sled cannot \
                     be reached"
                );
            }
        } else if used <= target.max_bytes {
            watch.warned = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_limit;

    const MB: u64 = 1 << 20;

    #[test]
    fn over_the_target_keeps_what_fits_and_never_fewer_than_two() {
        // Twice the target with 60 held: 90% of half.
        assert_eq!(next_limit(200 * MB, 100 * MB, 60, None, None), Some(27));
        // Always at least one fewer than held, so a slow-shrinking store still tightens.
        assert_eq!(next_limit(101 * MB, 100 * MB, 60, None, None), Some(53));
        assert_eq!(next_limit(101 * MB, 100 * MB, 5, Some(5), None), Some(4));
        // The floor.
        assert_eq!(next_limit(100_000 * MB, MB, 60, None, None), Some(2));
        assert_eq!(next_limit(200 * MB, 100 * MB, 2, Some(2), None), Some(2));
        assert_eq!(next_limit(200 * MB, 100 * MB, 0, None, None), Some(2));
        // Never looser than the configured keep or the current limit.
        assert_eq!(next_limit(101 * MB, 100 * MB, 60, Some(10), None), Some(10));
        assert_eq!(next_limit(101 * MB, 100 * MB, 60, None, Some(20)), Some(20));
    }

    #[test]
    fn under_the_target_relaxes_step_by_step_up_to_keep_milestones() {
        // In the hysteresis band: unchanged.
        assert_eq!(next_limit(80 * MB, 100 * MB, 10, Some(10), None), Some(10));
        assert_eq!(next_limit(80 * MB, 100 * MB, 10, None, None), None);
        // Well under, the limit binding: 1/8 more (at least one).
        assert_eq!(next_limit(50 * MB, 100 * MB, 16, Some(16), None), Some(18));
        assert_eq!(next_limit(50 * MB, 100 * MB, 2, Some(2), None), Some(3));
        // Well under, history still growing to the limit: unchanged.
        assert_eq!(next_limit(50 * MB, 100 * MB, 5, Some(16), None), Some(16));
        // Reaching keep_milestones lifts the limit.
        assert_eq!(next_limit(50 * MB, 100 * MB, 58, Some(58), Some(60)), None);
        assert_eq!(next_limit(50 * MB, 100 * MB, 8, Some(8), Some(60)), Some(9));
        // No limit: nothing to relax.
        assert_eq!(next_limit(0, 100 * MB, 60, None, Some(60)), None);
    }
}
