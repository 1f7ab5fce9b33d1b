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
