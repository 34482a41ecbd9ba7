//! Envelopes packed into transport messages (WebSocket binary messages).
//!
//! Small frames are gathered into one buffer, so a round of acks, results
//! and offers leaves as one message. An attachment of at least
//! [`MessageBatch::APART`] bytes is not copied into the buffer: its frame
//! header ends the message before it and its bytes go out as a message of
//! their own, sharing the attachment's buffer. The receiving
//! [`FrameDecoder`](super::FrameDecoder) hands such a payload out as that
//! message, without assembling it.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{FrameHeader, HEADER_LEN};
use super::message::{Envelope, WireError, WireLimits, ATTACHMENT};

/// Messages being packed.
#[derive(Debug, Default)]
pub struct MessageBatch {
    buf: BytesMut,
    done: Vec<Bytes>,
    len: usize,
}

impl MessageBatch {
    /// Attachments at least this long travel as their own message.
    pub const APART: usize = 64 * 1024;

    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an envelope (message frame, then its attachment frames); on an
    /// error nothing of it is added.
    pub fn push(&mut self, e: &Envelope, limits: &WireLimits) -> Result<(), WireError> {
        // Checked here (lengths within the limits): what follows cannot fail.
        let frames = e.to_frames(limits)?;
        let apart = |f: &super::Frame| f.frame_type == ATTACHMENT && f.payload.len() >= Self::APART;
        let inline: usize = frames.iter().map(|f| HEADER_LEN + if apart(f) { 0 } else { f.payload.len() }).sum();
        self.buf.reserve(inline);
        for f in frames {
            let len = f.payload.len() as u32;
            self.buf.put_slice(&FrameHeader { frame_type: f.frame_type, len }.to_bytes());
            self.len += HEADER_LEN + f.payload.len();
            if apart(&f) {
                self.done.push(self.buf.split().freeze());
                self.done.push(f.payload);
            } else {
                self.buf.put_slice(&f.payload);
            }
        }
        Ok(())
    }

    /// Bytes added since the last [`take`](Self::take).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was added since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The messages to send, in order.
    pub fn take(&mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() {
            self.done.push(self.buf.split().freeze());
        }
        self.len = 0;
        std::mem::take(&mut self.done)
    }
}
