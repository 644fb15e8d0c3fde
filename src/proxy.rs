//! The data plane on pingora: request checks, routing, the `/v1/auth` API,
//! login delegation, header rewrite and forwarding.

pub mod api;
pub mod client;
pub mod gateway;
pub mod headers;
pub mod login;
pub mod path;
pub mod query;
pub mod respond;
pub mod upstream;
