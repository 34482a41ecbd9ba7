//! What every received message is held to: the caps ([`WireLimits`]) and
//! the errors ([`WireError`]) a host disconnects a peer for.

use super::frame::{FrameError, MAX_FRAME_PAYLOAD};

/// Caps applied to everything received. Every field a peer controls is
/// bounded by one of these; a violation is a [`WireError`] and the host
/// disconnects the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest frame payload (≤ 16 MiB).
    pub max_frame_payload: u32,
    /// Most attachments one message may declare.
    pub max_attachments: usize,
    /// Largest sum of one message's attachment lengths.
    pub max_attachment_bytes: u64,
    /// Longest free-text field (reasons, messages, names).
    pub max_text: usize,
    /// Most kernels a worker may list in its profile.
    pub max_kernels: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_frame_payload: MAX_FRAME_PAYLOAD,
            max_attachments: 64,
            max_attachment_bytes: 256 * 1024 * 1024,
            max_text: 4 * 1024,
            max_kernels: 32,
        }
    }
}

/// What can go wrong encoding or decoding worker-protocol messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The framing itself failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame type that this protocol does not define.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u32),
    /// The postcard payload did not decode as the message its type names.
    #[error("malformed {what} payload: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// postcard's description.
        detail: String,
    },
    /// Bytes left over after the message decoded.
    #[error("{what} payload has {extra} trailing bytes")]
    TrailingBytes {
        /// Which message.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// An attachment frame arrived with no message expecting one.
    #[error("attachment frame with no offer or result expecting it")]
    UnexpectedAttachment,
    /// Another frame arrived while attachments were still expected.
    #[error("expected attachment {index} of {expected}, got frame type {got}")]
    MissingAttachment {
        /// Index of the attachment that was due.
        index: usize,
        /// How many the message declared.
        expected: usize,
        /// The frame type that arrived instead.
        got: u32,
    },
    /// An attachment's length differs from its declaration.
    #[error("attachment {index} is {actual} bytes, declared {declared}")]
    AttachmentLength {
        /// Which attachment.
        index: usize,
        /// Declared length.
        declared: u64,
        /// Received length.
        actual: u64,
    },
    /// The number of attachments given to the encoder differs from the
    /// message's declaration.
    #[error("message declares {declared} attachments, {given} given")]
    AttachmentCount {
        /// Declared count.
        declared: usize,
        /// Given count.
        given: usize,
    },
    /// A message declares more attachments or bytes than allowed.
    #[error("{what}: {value} exceeds the limit of {limit}")]
    OverLimit {
        /// What was counted.
        what: &'static str,
        /// The value received.
        value: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A field's value is invalid (e.g. an invalid kernel spec).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}
