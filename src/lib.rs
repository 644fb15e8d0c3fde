//! sessiongate: a reverse-proxy authentication sidecar. It serves the session
//! API under `/v1/auth`, verifies access tokens on every other request, and
//! forwards them to a legacy upstream with the caller's identity in trusted
//! headers. See SPEC.md for the external contract.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod errors;
pub mod events;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod reload;
pub mod revocation;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod store;
pub mod time;
pub mod tls;
