//! Arbitrary bytes as Pilot frames: typed errors only, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::wire::pilot::PilotInbound;
use shoal_core::wire::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder::new();
    d.push(data);
    while let Ok(Some(frame)) = d.next_frame() {
        let _ = PilotInbound::decode(&frame);
    }
});
