//! The ScaiDrive service: configuration, event store, command handling,
//! projections, HTTP, auth, blobs, relay and CLI.

pub mod store;
