//! The data plane on hyper: the request path ([`gateway`]) and its steps,
//! the `/v1/auth` API, login delegation, and the upstream connections.

pub mod api;
pub mod body;
pub mod client;
pub mod forward;
pub mod gateway;
pub mod head;
pub mod headers;
pub mod login;
pub mod path;
pub mod pool;
pub mod query;
pub mod respond;
pub mod revoke;
pub mod rewrite;
pub mod upstream;
