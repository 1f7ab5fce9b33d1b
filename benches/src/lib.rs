//! Shared fixtures for the criterion suites in `benches/benches/`.
