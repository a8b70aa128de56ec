//! Black-box HTTP tests: the real server on port 0 with a fresh database,
//! driven with a real HTTP client.

mod helpers;

mod admin;
mod auth;
mod errors;
mod postgres;
mod system;
