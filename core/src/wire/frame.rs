//! The frame codec: `[u32 BE type][u32 BE length][payload]`.
//!
//! Every byte that crosses the data plane is framed this way, in the native
//! coordinator, the native worker and the browser worker alike. The
//! [`FrameDecoder`] is incremental (bytes may arrive one at a time or many
//! frames at once), enforces a payload cap *before* buffering a payload,
//! never allocates more than the declared (capped) frame length, and hands
//! payloads out as [`Bytes`] views of the pushed chunks whenever a frame lies
//! whole inside one chunk, so a 1 MiB tensor attachment is never copied.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use core::fmt;
use std::collections::VecDeque;

/// Length of a frame header: type (4 bytes) + payload length (4 bytes).
pub const HEADER_LEN: usize = 8;

/// The hard cap on a frame's payload: 16 MiB (2^24 bytes; exactly 2^24 is
/// allowed, as in Pilot). A decoder may be configured lower, never higher.
pub const MAX_FRAME_PAYLOAD: u32 = 1 << 24;

/// The type word of a frame. Which numbers mean what is defined by the
/// protocols that use frames ([`super::message`], [`super::pilot`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameType(pub u32);

impl fmt::Debug for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameType({})", self.0)
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A frame header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub frame_type: FrameType,
    /// Payload length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// The 8 header bytes, for hosts that write header and payload with one
    /// vectored write instead of copying the payload behind the header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.frame_type.0.to_be_bytes());
        out[4..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Parses 8 header bytes (any 8 bytes are a syntactically valid header;
    /// the length is checked against a cap separately).
    pub fn from_bytes(b: [u8; HEADER_LEN]) -> Self {
        FrameHeader {
            frame_type: FrameType(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            len: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub frame_type: FrameType,
    /// The payload; a view into the received bytes where possible.
    pub payload: Bytes,
}

impl Frame {
    /// A frame of this type and payload.
    pub fn new(frame_type: FrameType, payload: impl Into<Bytes>) -> Self {
        Frame { frame_type, payload: payload.into() }
    }

    /// Encoded length: header + payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends this frame, encoded, to `out` (hard cap enforced).
    pub fn encode_into(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(self.frame_type, &self.payload, out)
    }
}

/// What can go wrong framing or deframing bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame declares (or would need) a payload above the cap.
    #[error("frame too large: {declared} bytes declared, limit {limit}")]
    TooLarge {
        /// The declared or requested payload length.
        declared: u64,
        /// The cap in force.
        limit: u32,
    },
    /// A decoder was asked for a cap above [`MAX_FRAME_PAYLOAD`].
    #[error("frame payload limit {requested} exceeds the hard cap of {MAX_FRAME_PAYLOAD} bytes")]
    LimitAboveHardCap {
        /// The requested cap.
        requested: u32,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of an incomplete frame)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
}

/// Appends one frame to `out`, refusing payloads above the hard cap.
pub fn encode_frame(frame_type: FrameType, payload: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    encode_frame_with_limit(frame_type, payload, MAX_FRAME_PAYLOAD, out)
}

/// Appends one frame to `out`, refusing payloads above `limit`.
pub fn encode_frame_with_limit(
    frame_type: FrameType,
    payload: &[u8],
    limit: u32,
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let len = checked_len(payload.len(), limit)?;
    out.reserve(HEADER_LEN + payload.len());
    out.put_slice(&FrameHeader { frame_type, len }.to_bytes());
    out.put_slice(payload);
    Ok(())
}

/// The payload length as a `u32`, if it is within `limit`.
pub(crate) fn checked_len(len: usize, limit: u32) -> Result<u32, FrameError> {
    match u32::try_from(len) {
        Ok(n) if n <= limit => Ok(n),
        _ => Err(FrameError::TooLarge { declared: len as u64, limit }),
    }
}

/// Incremental frame decoder.
///
/// Push received chunks with [`push`](Self::push) (copies) or
/// [`push_bytes`](Self::push_bytes) (zero-copy), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. A frame
/// that lies whole in one pushed [`Bytes`] chunk is returned as a slice of
/// it; a frame split across chunks is assembled in a buffer that grows with
/// the bytes that actually arrived (at most 16 times ahead of them) and
/// never beyond the frame's declared, capped length (so 8 bytes of header
/// cannot make the decoder allocate 16 MiB).
///
/// After an error the stream is out of sync: the decoder keeps returning
/// that error and the host must drop the connection.
///
/// The decoder does not bound how many *complete* chunks a host pushes
/// without draining; hosts push one received message, then drain.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: u32,
    chunks: VecDeque<Bytes>,
    /// Bytes of a frame that spans chunks (header first).
    partial: Vec<u8>,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the hard cap of 16 MiB.
    pub fn new() -> Self {
        FrameDecoder { limit: MAX_FRAME_PAYLOAD, chunks: VecDeque::new(), partial: Vec::new(), failed: None }
    }

    /// A decoder with a lower payload cap.
    pub fn with_limit(limit: u32) -> Result<Self, FrameError> {
        if limit > MAX_FRAME_PAYLOAD {
            return Err(FrameError::LimitAboveHardCap { requested: limit });
        }
        Ok(FrameDecoder { limit, ..Self::new() })
    }

    /// The payload cap in force.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Buffers a received chunk by copying it.
    pub fn push(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            self.chunks.push_back(Bytes::copy_from_slice(chunk));
        }
    }

    /// Buffers a received chunk without copying it.
    pub fn push_bytes(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.chunks.iter().map(Bytes::len).sum::<usize>()
    }

    /// Bytes of memory reserved for the frame being assembled across
    /// chunks; never more than that frame's declared, capped length.
    pub fn assembly_capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let out = self.decode();
        if let Err(e) = &out {
            self.failed = Some(e.clone());
            self.chunks.clear();
            self.partial = Vec::new();
        }
        out
    }

    /// Declares the end of the stream: an error if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let limit = self.limit;
        // Fast path: nothing half-assembled and the front chunk holds a
        // whole frame: hand out a slice of it.
        if self.partial.is_empty() {
            while let Some(front) = self.chunks.front_mut() {
                if front.is_empty() {
                    self.chunks.pop_front();
                    continue;
                }
                if front.len() < HEADER_LEN {
                    break;
                }
                let (frame_type, total) = parse_header(front, limit)?;
                if front.len() < total {
                    break;
                }
                let mut payload = front.split_to(total);
                payload.advance(HEADER_LEN);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                return Ok(Some(Frame { frame_type, payload }));
            }
        }
        // Slow path: the frame spans chunks; assemble it in `partial`.
        if self.partial.len() < HEADER_LEN && !self.fill_partial(HEADER_LEN) {
            return Ok(None);
        }
        let (frame_type, total) = parse_header(&self.partial, limit)?;
        // A header that ended one chunk, and a chunk that starts with the
        // whole payload (how big attachments are sent, see
        // `MessageBatch`): a slice of that chunk, nothing assembled.
        if self.partial.len() == HEADER_LEN && total > HEADER_LEN {
            if let Some(front) = self.chunks.front_mut().filter(|f| f.len() >= total - HEADER_LEN) {
                let payload = front.split_to(total - HEADER_LEN);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.partial.clear();
                return Ok(Some(Frame { frame_type, payload }));
            }
        }
        if self.partial.len() < total && !self.fill_partial(total) {
            return Ok(None);
        }
        let mut payload = Bytes::from(core::mem::take(&mut self.partial));
        payload.advance(HEADER_LEN);
        Ok(Some(Frame { frame_type, payload }))
    }

    /// Moves bytes from the chunks into `partial` until it holds `want`
    /// bytes; false if the chunks ran out first.
    fn fill_partial(&mut self, want: usize) -> bool {
        while self.partial.len() < want {
            let Some(front) = self.chunks.front_mut() else {
                return false;
            };
            let take = (want - self.partial.len()).min(front.len());
            grow_within(&mut self.partial, take, want);
            self.partial.extend_from_slice(&front[..take]);
            front.advance(take);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        true
    }
}

/// Reads the header at the start of `bytes` (at least [`HEADER_LEN`] long)
/// and returns the frame type and the frame's total encoded length, or
/// [`FrameError::TooLarge`] if the declared payload exceeds `limit`.
fn parse_header(bytes: &[u8], limit: u32) -> Result<(FrameType, usize), FrameError> {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&bytes[..HEADER_LEN]);
    let header = FrameHeader::from_bytes(h);
    if header.len > limit {
        return Err(FrameError::TooLarge { declared: u64::from(header.len), limit });
    }
    Ok((header.frame_type, HEADER_LEN + header.len as usize))
}

/// How far ahead of the bytes that actually arrived the assembly buffer
/// may grow: a peer must send 1/16 of a frame before the decoder reserves
/// all of it, so 8 bytes of header never buy 16 MiB of memory, while a
/// large frame is assembled with at most two reallocations.
const GROWTH_AHEAD: usize = 16;

/// Reserves room for `extra` more bytes in `buf`: up to `GROWTH_AHEAD`
/// times what will then be held, never beyond `cap` (the frame's declared,
/// capped total length).
fn grow_within(buf: &mut Vec<u8>, extra: usize, cap: usize) {
    let needed = buf.len() + extra;
    if needed <= buf.capacity() {
        return;
    }
    let target = needed.saturating_mul(GROWTH_AHEAD).min(cap).max(needed);
    buf.reserve_exact(target - buf.len());
}
