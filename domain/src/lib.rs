//! ScaiDrive's domain: identifiers, events, aggregates as pure decide/evolve
//! functions, and the policies (names, permissions, quotas, link access) they
//! enforce. No I/O, no clocks, no async.

pub mod access;
pub mod access_log;
pub mod aggregate;
pub mod any_event;
pub mod catalogue;
pub mod connector;
pub mod drive;
pub mod error;
pub mod event;
pub mod group;
pub mod history;
pub mod id;
pub mod link;
pub mod log;
pub mod merkle;
pub mod name;
pub mod notification;
pub mod quota;
pub mod secret;
pub mod sharing;
pub mod sync;
pub mod tenancy;
pub mod webhook;

pub use aggregate::{Aggregate, Scenario};
pub use any_event::{AnyEvent, DecodedEvent};
pub use error::DomainError;
pub use event::{Actor, DomainEvent, EventMetadata, LogPosition, NewEvent, RecordedEvent};
