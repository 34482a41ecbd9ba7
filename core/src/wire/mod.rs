//! The data plane's bytes: frames, the typed worker protocol, and the
//! Pilot-compatible JSON mode.
//!
//! - [`frame`]: `[u32 BE type][u32 BE length][payload]`, capped, incremental,
//!   zero-copy where the bytes allow.
//! - [`message`]: the worker protocol (postcard payloads) and the raw binary
//!   attachment frames that follow a task offer or a result.
//! - `decoder`: [`MessageDecoder`], whole envelopes from a byte stream.
//! - [`batch`]: envelopes packed into transport messages, big attachments
//!   as messages of their own (never copied).
//! - [`pilot`]: the four Pilot frame types with JSON payloads, byte-exact
//!   with the Go encoder, so a Pilot-style client can submit tasks.

pub mod batch;
mod decoder;
pub mod frame;
pub mod inputs;
mod limits;
pub mod message;
pub mod pilot;

pub use batch::MessageBatch;
pub use frame::{
    encode_frame, encode_frame_with_limit, Frame, FrameDecoder, FrameError, FrameHeader, FrameType, HEADER_LEN,
    MAX_FRAME_PAYLOAD,
};
pub use message::{Envelope, Message, MessageDecoder, WireError, WireLimits, PROTOCOL_VERSION};
