//! A response body streamed from a file: a blocking reader sends chunks through a small
//! channel, so a download holds a few chunks in memory however large the file is, and
//! stops reading when the client goes away.

use std::fs::File;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use http_body::Frame;
use tokio::sync::mpsc;

/// Bytes per chunk.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks read ahead of the client.
const CHUNKS_AHEAD: usize = 4;

struct FileBody {
    chunks: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.chunks
            .poll_recv(context)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}

/// The body of `file`, read on the blocking pool.
pub(super) fn stream(mut file: File) -> Body {
    let (sender, chunks) = mpsc::channel(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut chunk = vec![0; CHUNK_BYTES];
            let read = match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            chunk.truncate(read);
            if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return; // The client went away.
            }
        }
    });
    Body::new(FileBody { chunks })
}
