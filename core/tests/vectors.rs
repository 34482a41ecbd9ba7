//! Known-answer vectors of the core. These run natively *and* on
//! wasm32-unknown-unknown (wasm-bindgen-test under Node), so a browser
//! worker and the coordinator provably compute identical bytes.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::BytesMut;
use shoal_core::auth::{derive_token, verify_token, AuthError, MasterSecret};
use shoal_core::kernels::{KernelSpec, MandelbrotParams, MatmulParams, Sha256Params};
use shoal_core::score::polo_score;
use shoal_core::wire::pilot::{self, SubmitRequest};
use shoal_core::wire::{FrameDecoder, FrameHeader, FrameType};
use shoal_core::{Digest, WorkerId};

/// SHA-256 of `bytes`: the known answers below were computed with SHA-256
/// by independent Python replicas (the kernels' bytes are what they pin;
/// Shoal's own [`Digest`] is BLAKE3, pinned in `digest_is_blake3`).
fn sha256(bytes: &[u8]) -> String {
    hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// SHA-256 of parts framed as [`Digest::of_parts`] frames them.
fn sha256_of_parts(parts: &[Vec<u8>]) -> String {
    let framed: Vec<u8> =
        parts.iter().flat_map(|p| (p.len() as u64).to_le_bytes().into_iter().chain(p.iter().copied())).collect();
    sha256(&framed)
}

#[test]
fn digest_is_blake3() {
    // The BLAKE3 reference test vectors for "" and "abc".
    assert_eq!(Digest::of(b"").to_hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
    assert_eq!(Digest::of(b"abc").to_hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
    // Parts are length-prefixed (u64 LE) before hashing.
    let mut framed = 1u64.to_le_bytes().to_vec();
    framed.extend_from_slice(b"a");
    framed.extend_from_slice(&2u64.to_le_bytes());
    framed.extend_from_slice(b"bc");
    assert_eq!(Digest::of_parts([&b"a"[..], b"bc"]), Digest::of(&framed));
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[test]
fn sha256_kernel_matches_standard_vectors() {
    let cases: [(&[u8], &str); 3] = [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ];
    for (msg, want) in cases {
        let spec = KernelSpec::Sha256(Sha256Params { count: 1, message_len: msg.len() as u32 });
        let out = spec.run_cpu(&[msg]).expect("valid spec");
        assert_eq!(hex(&out[0]), want);
    }
}

#[test]
fn sha256_kernel_hashes_each_message_of_a_batch() {
    // Padding boundaries: 55, 56 and 64 bytes.
    let wants = [
        (55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"),
        (56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"),
        (64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"),
        (1000, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
    ];
    for (len, want) in wants {
        let batch = vec![b'a'; len * 3];
        let spec = KernelSpec::Sha256(Sha256Params { count: 3, message_len: len as u32 });
        let out = spec.run_cpu(&[&batch]).expect("valid spec");
        assert_eq!(out[0].len(), 96);
        for d in out[0].chunks(32) {
            assert_eq!(hex(d), want, "len {len}");
        }
    }
}

#[test]
fn matmul_by_hand() {
    let a: Vec<u8> = [1f32, 2., 3., 4., 5., 6.].iter().flat_map(|v| v.to_le_bytes()).collect();
    let b: Vec<u8> = [7f32, 8., 9., 10., 11., 12.].iter().flat_map(|v| v.to_le_bytes()).collect();
    let spec = KernelSpec::MatmulF32(MatmulParams { m: 2, n: 2, k: 3 });
    let out = spec.run_cpu(&[&a, &b]).expect("valid spec");
    let c: Vec<f32> = out[0].chunks(4).map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])).collect();
    assert_eq!(c, vec![58., 64., 139., 154.]);
}

#[test]
fn seeded_matmul_is_identical_on_every_target() {
    // Both digests were computed independently by a Python replica of
    // SplitMix64 and of the f32 i-k-j accumulation.
    let spec = KernelSpec::MatmulF32(MatmulParams { m: 33, n: 17, k: 65 });
    let inputs = spec.seeded_inputs(42);
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let out = spec.run_cpu(&refs).expect("valid spec");
    assert_eq!(sha256_of_parts(&inputs), "ff18cc10f3c5e95a6a1cf1a6a01d657f01ad5b80ec67e099c0d4605f752fbfc7");
    assert_eq!(sha256(&out[0]), "cfa54e3bfc08a68bf3436bdedc81d7fc866ceece0059a31030e10ded9cc585eb");
}

#[test]
fn mandelbrot_points_by_hand() {
    let p = MandelbrotParams::from_plane(1, 1, 0.0, 0.0, 0.01, 100);
    let fx = shoal_core::kernels::fixed_from_f64;
    assert_eq!(p.iterations(0, 0), 100, "0 is in the set");
    assert_eq!(p.iterations(fx(-1.0), 0), 100, "-1 cycles 0, -1, 0");
    assert_eq!(p.iterations(fx(2.0), 0), 2, "2 → 2 → 6 escapes after 2");
    assert_eq!(p.iterations(fx(1.0), fx(1.0)), 2, "1+i → 1+3i escapes after 2");
}

#[test]
fn mandelbrot_tile_is_identical_on_every_target() {
    // Digest computed independently by a Python replica of the Q4.27 loop.
    let spec = KernelSpec::Mandelbrot(MandelbrotParams::from_plane(64, 48, -2.0, -1.2, 0.05, 256));
    let out = spec.run_cpu(&[]).expect("valid spec");
    assert_eq!(out[0].len(), 64 * 48 * 4);
    assert_eq!(sha256(&out[0]), "0d137ba04ecd648a1d1e2539261faa6a89ae16a1b03472a0b472e874e49d4c5b");
}

#[test]
fn polo_worked_examples_of_the_seed() {
    let rows: [(u64, u64, u64, u64); 18] = [
        (0, 0, 0, 1),
        (0, 0, 60_000, 2),
        (0, 0, 180_000, 3),
        (0, 0, 420_000, 4),
        (0, 0, 900_000, 5),
        (0, 0, 1_860_000, 6),
        (0, 0, 3_780_000, 7),
        (30_000, 0, 180_000, 3),
        (60_000, 600_000, 0, 1),
        (60_000, 600_000, 420_000, 2),
        (5_000, 60_000, 1_860_000, 6),
        (15_000, 150_000, 180_000, 3),
        (120_000, 1_200_000, 0, 1),
        (30_000, 300_000, 600_000, 3),
        (0, 0, 600_000, 4),
        (0, 0, 1_800_000, 6),
        (0, 0, 120_000, 3),
        (45_000, 0, 60_000, 2),
    ];
    for (idle, staged, cpu, want) in rows {
        assert_eq!(polo_score(idle, staged, cpu).reward, want, "idle {idle} staged {staged} cpu {cpu}");
    }
    let s = polo_score(30_000, 300_000, 600_000);
    assert!((s.efficiency - 0.7).abs() < 1e-12);
    assert!((s.raw - 3.1216).abs() < 1e-4);
    assert!((s.idle_factor - 0.15).abs() < 1e-12 && (s.staged_factor - 0.15).abs() < 1e-12);
}

#[test]
fn hmac_tokens_match_independent_vectors() {
    // The seed's worked example (its prefix differs; the MAC is the same),
    // and a vector computed with Python's hmac module.
    let seed = MasterSecret::new(&b"test-secret-ioswarm-2026"[..]).expect("long enough");
    let id = WorkerId::new("ant-x7k2").expect("valid id");
    let t = derive_token(&seed, &id);
    assert_eq!(t, "shoal_20670a62869a178c9306a2044af762d9d5725bdec15d79ab08c8f0252f510f09");
    assert_eq!(verify_token(&seed, &id, &t), Ok(()));

    let s = MasterSecret::new(&b"shoal-master-secret-0001"[..]).expect("long enough");
    let w = WorkerId::new("gpu-box-1").expect("valid id");
    assert_eq!(derive_token(&s, &w), "shoal_47858f83c0dd47985d3b5e63ce60f0f6cb43b9ade9efa2b9fa39548c5e984e86");
    assert_eq!(verify_token(&s, &id, &derive_token(&s, &w)), Err(AuthError::Invalid));
}

#[test]
fn pilot_submit_frame_is_byte_exact() {
    let req = SubmitRequest {
        task_id: "00000000-0000-0000-0000-000000000000".into(),
        task_description: "hi".into(),
        from_addr: "0:0000.0000.0001".into(),
        to_addr: "0:0000.0000.0002".into(),
    };
    let mut out = BytesMut::new();
    pilot::encode(&req, &mut out).expect("encodes");
    assert_eq!(&out[..8], &[0, 0, 0, 1, 0, 0, 0, 0x86]);
    assert_eq!(
        &out[8..],
        br#"{"task_id":"00000000-0000-0000-0000-000000000000","task_description":"hi","from_addr":"0:0000.0000.0001","to_addr":"0:0000.0000.0002"}"#
    );
    let mut dec = FrameDecoder::new();
    dec.push(&out);
    let frame = dec.next_frame().expect("valid").expect("complete");
    assert_eq!(pilot::decode::<SubmitRequest>(&frame), Ok(req));
}

#[test]
fn frame_header_layout() {
    let h = FrameHeader { frame_type: FrameType(0x0102_0304), len: 0x0A0B_0C0D };
    assert_eq!(h.to_bytes(), [1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D]);
    assert_eq!(FrameHeader::from_bytes(h.to_bytes()), h);
}
