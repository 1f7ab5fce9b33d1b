//! `wallet`: not implemented yet (see the open issue for this crate).
