//! The ScaiDrive service: configuration, event store, command handling,
//! projections, HTTP, auth, blobs, relay and CLI.

pub mod access_log;
pub mod app;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod blob;
pub mod cli;
pub mod command;
pub mod config;
pub mod connector;
pub mod http;
pub mod hub;
pub mod lease;
pub mod link_access;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod projector;
pub mod proofs;
pub mod ratelimit;
pub mod read_cache;
pub mod relay;
pub mod search;
pub mod secrets;
pub mod services;
pub mod store;
pub mod webhooks;
