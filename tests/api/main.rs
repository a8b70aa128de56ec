//! Black-box HTTP tests: the real server on port 0 with a fresh database,
//! driven with a real HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

mod helpers;
mod history;
mod isolation;

mod access_log;
mod admin;
mod audit;
mod auth;
mod catalogue;
mod client_config;
mod compose;
mod connectors;
mod crash;
mod dbfault;
mod downloads;
mod drive;
mod errors;
mod events;
mod gate;
mod groups;
mod kafka;
mod links;
mod mail;
mod openapi;
mod postgres;
mod procs;
mod proofs;
mod quota;
mod ratelimit;
mod rebuild;
mod retention;
mod s3;
mod scaleout;
mod search;
mod secrets;
mod semantic;
mod shapes;
mod sharing;
mod sync;
mod system;
mod validation;
mod webhooks_out;
