//! Arbitrary bytes into the worker-protocol decoder: typed errors only,
//! and every decoded envelope re-encodes to a stream that decodes to it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shoal_core::wire::{MessageDecoder, WireLimits};

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits { max_frame_payload: 1 << 16, ..WireLimits::default() };
    let mut d = MessageDecoder::new(limits).expect("valid limits");
    d.push(data);
    while let Ok(Some(env)) = d.next_envelope() {
        let mut again = BytesMut::new();
        env.encode_into(&limits, &mut again).expect("a decoded envelope re-encodes");
        let mut d2 = MessageDecoder::new(limits).expect("valid limits");
        d2.push(&again);
        let back = d2.next_envelope().expect("re-encoded envelope decodes").expect("complete");
        assert_eq!(back, env);
    }
    let _ = d.finish();
});
