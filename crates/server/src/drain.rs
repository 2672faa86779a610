//! Reading what a request's body still holds when its answer came first.
//!
//! Many answers need none of the body: a 401 or 403, a 404 for an unknown type, a 406
//! or 415. When the body was left unread, the HTTP/1 connection cannot be reused, so the
//! server closes it; and a socket closed with unread data in it is reset, which can
//! destroy the answer before the client reads it (the client sees "connection reset"
//! instead of the OperationOutcome). So a body the handler left is read to its end, up to
//! [`DRAIN_BYTES`] and [`DRAIN_TIME`], before the answer goes out; beyond either the
//! connection is closed as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// The most of an unread body that is read to keep its connection.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// The longest an unread body is waited for.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The layer: hands the handler a body it shares with this, and reads what the handler
/// left of it once the answer is ready.
pub(crate) async fn drain_unread(request: Request, next: Next) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let shared = Shared(Arc::new(Mutex::new(body)));
    let response = next
        .run(Request::from_parts(parts, Body::new(shared.clone())))
        .await;
    let rest = std::mem::take(&mut *shared.lock());
    if !rest.is_end_stream() {
        let _ = tokio::time::timeout(DRAIN_TIME, drain(rest)).await;
    }
    response
}

/// Reads and drops `body` up to [`DRAIN_BYTES`].
async fn drain(mut body: Body) {
    let mut read = 0;
    while read <= DRAIN_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => return,
        }
    }
}

/// A request body the handler reads through, while the layer keeps hold of it.
#[derive(Clone)]
struct Shared(Arc<Mutex<Body>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Body> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut *self.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint()
    }
}
