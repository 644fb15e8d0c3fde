//! Sessions: refresh tokens, rotation with reuse detection, the session API's
//! logic, and the per-IP rate limits of login and refresh.

pub mod cursor;
pub mod ratelimit;
pub mod refresh_token;
mod service;

pub use service::{
    valid_reason, AuditEventPage, AuditEventView, Client, EventFilter, EventPage, EventView,
    SessionPage, SessionView, Sessions, TokenResponse,
};
