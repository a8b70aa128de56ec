//! Black-box HTTP tests: the real server on port 0 with a fresh database,
//! driven with a real HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

mod helpers;
mod history;
mod isolation;

mod admin;
mod audit;
mod auth;
mod compose;
mod crash;
mod dbfault;
mod downloads;
mod drive;
mod errors;
mod events;
mod groups;
mod kafka;
mod links;
mod openapi;
mod postgres;
mod procs;
mod quota;
mod ratelimit;
mod rebuild;
mod s3;
mod scaleout;
mod secrets;
mod sharing;
mod sync;
mod system;
mod webhooks_out;
