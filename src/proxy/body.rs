//! The two body types of the data plane, each an enum rather than a boxed
//! trait object so a request costs no allocation for its body:
//! [`Outgoing`] (to the upstream) and [`Body`] (to the client).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::{BoxError, PooledBody};

/// A request body bound for the upstream: the client's, streamed as it
/// arrives, or one sessiongate already holds (login).
pub enum Outgoing {
    Client(Incoming),
    Full(Option<Bytes>),
}

/// A response body bound for the client: the upstream's, streamed, or an
/// answer of sessiongate's own.
pub enum Body {
    Upstream(PooledBody),
    Full(Option<Bytes>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub fn empty() -> Body {
        Body::Full(None)
    }
}

fn poll_full(slot: &mut Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    Poll::Ready(slot.take().map(|b| Ok(Frame::data(b))))
}

fn full_hint(slot: &Option<Bytes>) -> SizeHint {
    SizeHint::with_exact(slot.as_ref().map_or(0, |b| b.len() as u64))
}

impl HttpBody for Outgoing {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Outgoing::Client(b) => Pin::new(b).poll_frame(cx),
            Outgoing::Full(slot) => poll_full(slot),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Client(b) => b.is_end_stream(),
            Outgoing::Full(slot) => slot.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Outgoing::Client(b) => b.size_hint(),
            Outgoing::Full(slot) => full_hint(slot),
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Upstream(b) => Pin::new(b).poll_frame(cx),
            Body::Full(slot) => Poll::Ready(slot.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(b) => b.is_end_stream(),
            Body::Full(slot) => slot.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(b) => b.size_hint(),
            Body::Full(slot) => full_hint(slot),
        }
    }
}
