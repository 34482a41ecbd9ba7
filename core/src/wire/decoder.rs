//! Whole envelopes from a byte stream: frames in, each message with the
//! attachment frames it declared out, every field checked against the
//! [`WireLimits`] (see [`super::message`] for the protocol itself).

use bytes::Bytes;

use super::frame::FrameDecoder;
use super::message::{Envelope, Message, WireError, WireLimits, ATTACHMENT};

/// Incremental decoder of whole envelopes: frames in, messages with their
/// attachments out.
#[derive(Debug)]
pub struct MessageDecoder {
    frames: FrameDecoder,
    limits: WireLimits,
    pending: Option<Envelope>,
    failed: Option<WireError>,
}

impl MessageDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: WireLimits) -> Result<Self, WireError> {
        Ok(MessageDecoder {
            frames: FrameDecoder::with_limit(limits.max_frame_payload)?,
            limits,
            pending: None,
            failed: None,
        })
    }

    /// Buffers received bytes (copied).
    pub fn push(&mut self, chunk: &[u8]) {
        self.frames.push(chunk);
    }

    /// Buffers received bytes (not copied).
    pub fn push_bytes(&mut self, chunk: Bytes) {
        self.frames.push_bytes(chunk);
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed.
    /// After an error the decoder keeps returning it: disconnect the peer.
    pub fn next_envelope(&mut self) -> Result<Option<Envelope>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let out = self.advance();
        if let Err(e) = &out {
            self.failed = Some(e.clone());
            self.pending = None;
        }
        out
    }

    /// Declares the end of the stream: an error if it stopped inside a
    /// frame or before all attachments of a message arrived.
    pub fn finish(&self) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.frames.finish()?;
        if let Some(p) = &self.pending {
            let expected = p.message.declared_attachments().len();
            return Err(WireError::MissingAttachment { index: p.attachments.len(), expected, got: 0 });
        }
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<Envelope>, WireError> {
        loop {
            if let Some(p) = &self.pending {
                if p.attachments.len() == p.message.declared_attachments().len() {
                    return Ok(self.pending.take());
                }
            }
            let Some(frame) = self.frames.next_frame()? else {
                return Ok(None);
            };
            match self.pending.as_mut() {
                Some(p) => {
                    let index = p.attachments.len();
                    let declared = p.message.declared_attachments();
                    if frame.frame_type != ATTACHMENT {
                        return Err(WireError::MissingAttachment {
                            index,
                            expected: declared.len(),
                            got: frame.frame_type.0,
                        });
                    }
                    let want = declared[index].len;
                    if frame.payload.len() as u64 != want {
                        return Err(WireError::AttachmentLength {
                            index,
                            declared: want,
                            actual: frame.payload.len() as u64,
                        });
                    }
                    p.attachments.push(frame.payload);
                }
                None => {
                    let message = Message::decode(frame.frame_type, &frame.payload, &self.limits)?;
                    let n = message.declared_attachments().len();
                    self.pending = Some(Envelope { message, attachments: Vec::with_capacity(n) });
                }
            }
        }
    }
}
