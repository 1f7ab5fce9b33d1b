//! The generic [`Store`](dag_core::store::Store) conformance suite, run on [`MemStore`].

use dag_core::store::{conformance, MemStore};

#[test]
fn mem_store_conforms() {
    conformance::run_all(MemStore::new);
}

#[test]
fn mem_store_clone_sees_everything_written() {
    // A MemStore "reopens" as another handle to the same data.
    let store = MemStore::new();
    conformance::reopen_persistence(|| store.clone());
}

#[test]
fn mem_store_clone_sees_every_prune() {
    let store = MemStore::new();
    conformance::prune_persistence(|| store.clone());
}

/// The suite has teeth: backends that break a rule fail it.
mod broken_backends {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use dag_core::store::{conformance, FaultyStore};

    fn fails(check: impl FnOnce()) -> bool {
        catch_unwind(AssertUnwindSafe(check)).is_err()
    }

    #[test]
    fn a_store_losing_the_solid_flag_fails() {
        let s = FaultyStore::forgetting_solid();
        assert!(fails(|| conformance::mark_solid(&s)));
        let s = FaultyStore::forgetting_solid();
        assert!(fails(|| conformance::idempotent_reput(&s)));
    }

    #[test]
    fn a_store_dropping_ledger_diffs_fails_the_round_trip() {
        let s = FaultyStore::dropping_diffs();
        assert!(fails(|| conformance::ledger_round_trip(&s)));
        let ok = FaultyStore::new();
        conformance::ledger_round_trip(&ok);
    }
}
