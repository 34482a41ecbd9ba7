//! Arbitrary bytes, cut into arbitrary chunks, into the frame decoder: it
//! must never panic, never return a payload above its limit, and decode
//! the same frames whatever the chunking.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shoal_core::wire::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limit = u32::from(u16::from_le_bytes([data[0], data[1]]));
    let cut = usize::from(data[2]).max(1);
    let body = &data[3..];

    let whole = decode(limit, std::iter::once(body));
    let chunked = decode(limit, body.chunks(cut));
    assert_eq!(whole, chunked, "chunking changed the result");
});

fn decode<'a>(limit: u32, chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<(u32, Vec<u8>)>, bool) {
    let mut d = FrameDecoder::with_limit(limit).expect("limit below the hard cap");
    let mut frames = Vec::new();
    let mut failed = false;
    for (i, c) in chunks.enumerate() {
        if i % 2 == 0 {
            d.push(c);
        } else {
            d.push_bytes(Bytes::copy_from_slice(c));
        }
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= limit as usize);
                    frames.push((f.frame_type.0, f.payload.to_vec()));
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    (frames, failed)
}
