//! Read models: projections that fold the event log into SQL tables, the
//! runner's contract, and the queries the HTTP layer reads them with.

pub mod db;
