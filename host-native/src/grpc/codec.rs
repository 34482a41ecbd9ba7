//! The gRPC message codec: prost, with the encode buffer sized to the
//! message before it is encoded.
//!
//! tonic's prost encoder writes a message field by field into a buffer that
//! grows by doubling, so a task input of 1 MiB costs a reallocation (a copy
//! and fresh pages) on top of its one necessary copy. Reserving the
//! message's encoded length first leaves only that copy: on the payload
//! benchmark the client's encoding was 7 % of all CPU, most of it the
//! growth. Decoding is prost's own.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstDecoder;

/// The codec the generated service and client use (see `build.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShoalCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ShoalCodec<T, U> {
    fn default() -> Self {
        ShoalCodec(PhantomData)
    }
}

impl<T, U> Codec for ShoalCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PresizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a prost message into a buffer reserved to its encoded length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PresizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for PresizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}
