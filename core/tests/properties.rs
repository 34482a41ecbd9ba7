//! Property tests (native only: proptest needs std's time and threads).

#![cfg(not(target_arch = "wasm32"))]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use shoal_core::auth::{derive_token, verify_token, MasterSecret};
use shoal_core::kernels::{fixed_mul, Comparator, KernelSpec, MatmulParams, Sha256Params};
use shoal_core::score::polo_score;
use shoal_core::task::{TaskLifecycle, TaskStatus};
use shoal_core::wire::{encode_frame, FrameDecoder, FrameType, MessageDecoder, WireLimits};
use shoal_core::{Millis, TaskId, WorkerId};

fn encode_all(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (t, p) in frames {
        encode_frame(FrameType(*t), p, &mut out).expect("within cap");
    }
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip_under_arbitrary_chunking(
        frames in prop::collection::vec((any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)), 0..12),
        cuts in prop::collection::vec(1usize..64, 1..40),
        zero_copy in any::<bool>(),
    ) {
        let bytes = Bytes::from(encode_all(&frames));
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < bytes.len() {
            let end = (at + cuts[i % cuts.len()]).min(bytes.len());
            if zero_copy { dec.push_bytes(bytes.slice(at..end)) } else { dec.push(&bytes[at..end]) }
            while let Some(f) = dec.next_frame().expect("valid stream") {
                got.push((f.frame_type.0, f.payload.to_vec()));
            }
            at = end;
            i += 1;
        }
        prop_assert_eq!(got, frames);
        prop_assert!(dec.finish().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(data in prop::collection::vec(any::<u8>(), 0..2048), limit in 0u32..4096) {
        let mut dec = FrameDecoder::with_limit(limit).expect("below cap");
        dec.push(&data);
        for _ in 0..=data.len() {
            match dec.next_frame() {
                Ok(Some(f)) => prop_assert!(f.payload.len() <= limit as usize),
                Ok(None) | Err(_) => break,
            }
        }
        let mut m = MessageDecoder::new(WireLimits::default()).expect("valid limits");
        m.push(&data);
        for _ in 0..=data.len() {
            if !matches!(m.next_envelope(), Ok(Some(_))) { break; }
        }
    }

    #[test]
    fn lifecycle_only_takes_legal_steps(ops in prop::collection::vec((0u8..8, 0u64..200_000), 0..30)) {
        let mut t = TaskLifecycle::new(Millis(0));
        let mut now = 0u64;
        for (op, dt) in ops {
            now += dt;
            let n = Millis(now);
            let before = t.clone();
            let r = match op {
                0 => t.accept(n),
                1 => t.decline(n, "no"),
                2 => t.stage(n),
                3 => t.start(n),
                4 => t.complete(n),
                5 => t.succeed(n),
                6 => t.cancel(n, "cancel"),
                _ => { t.expire_if_due(n); Ok(()) }
            };
            if r.is_err() {
                prop_assert_eq!(&t, &before, "a refused step changes nothing");
            } else if t.status() != before.status() {
                prop_assert!(before.status().can_become(t.status()));
            }
            let d = t.durations();
            prop_assert!(d.idle_ms <= now && d.staged_ms <= now && d.cpu_ms <= now);
            prop_assert!(d.idle_ms + d.staged_ms + d.cpu_ms <= now, "phases do not overlap");
            if before.status().is_terminal() { prop_assert_eq!(t.status(), before.status()); }
        }
        prop_assert!(TaskStatus::ALL.contains(&t.status()));
    }

    #[test]
    fn polo_reward_is_at_least_one_and_monotone(idle in 0u64..10_000_000, staged in 0u64..10_000_000, cpu in 0u64..100_000_000, more in 0u64..10_000_000) {
        let s = polo_score(idle, staged, cpu);
        prop_assert!(s.reward >= 1);
        prop_assert!((0.4..=1.0).contains(&s.efficiency));
        prop_assert!(polo_score(idle, staged, cpu + more).reward >= s.reward, "more CPU never earns less");
        prop_assert!(polo_score(idle + more, staged, cpu).reward <= s.reward, "more idle never earns more");
        prop_assert!(polo_score(idle, staged + more, cpu).reward <= s.reward, "more staging never earns more");
    }

    #[test]
    fn tokens_verify_and_any_change_fails(secret in prop::collection::vec(any::<u8>(), 16..64), id in "[a-z0-9._-]{1,64}", flip in 6usize..70) {
        let s = MasterSecret::new(secret).expect("long enough");
        let w = WorkerId::new(id).expect("valid");
        let t = derive_token(&s, &w);
        prop_assert_eq!(t.len(), 70);
        prop_assert!(verify_token(&s, &w, &t).is_ok());
        let mut bad = t.into_bytes();
        bad[flip] = if bad[flip] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).expect("ascii");
        prop_assert!(verify_token(&s, &w, &bad).is_err());
    }

    #[test]
    fn ids_round_trip(b in any::<[u8; 16]>()) {
        let id = TaskId::from_bytes(b);
        prop_assert_eq!(id.to_string().parse::<TaskId>(), Ok(id));
    }

    #[test]
    fn sha256_batch_equals_one_digest_per_message(count in 1u32..8, len in 0u32..200, seed in any::<u64>()) {
        let spec = KernelSpec::Sha256(Sha256Params { count, message_len: len });
        let inputs = spec.seeded_inputs(seed);
        let out = spec.run_cpu(&[&inputs[0]]).expect("valid");
        for i in 0..count as usize {
            let msg = &inputs[0][i * len as usize..(i + 1) * len as usize];
            let d = <sha2::Sha256 as sha2::Digest>::digest(msg);
            prop_assert_eq!(&out[0][i * 32..(i + 1) * 32], &d[..]);
        }
    }

    #[test]
    fn matmul_reference_agrees_with_f64_within_its_tolerance(m in 1u32..24, n in 1u32..24, k in 1u32..300, seed in any::<u64>()) {
        let p = MatmulParams { m, n, k };
        let spec = KernelSpec::MatmulF32(p);
        let inputs = spec.seeded_inputs(seed);
        let out = spec.run_cpu(&[&inputs[0], &inputs[1]]).expect("valid");
        let f = |b: &[u8]| b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
        let (a, b) = (f(&inputs[0]), f(&inputs[1]));
        let (m, n, k) = (m as usize, n as usize, k as usize);
        let mut exact = Vec::with_capacity(m * n);
        for i in 0..m { for j in 0..n {
            let s: f64 = (0..k).map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j])).sum();
            exact.extend_from_slice(&(s as f32).to_le_bytes());
        }}
        prop_assert!(spec.comparator().agree(&[&out[0]], &[&exact]));
    }

    #[test]
    fn fixed_mul_is_the_truncated_exact_product(a in -(1i32 << 30)..(1i32 << 30), b in -(1i32 << 30)..(1i32 << 30)) {
        let exact = i64::from(a) * i64::from(b);
        let want = exact.signum() * (exact.abs() >> 27);
        prop_assume!(want.abs() < (1i64 << 31));
        prop_assert_eq!(i64::from(fixed_mul(a, b)), want);
    }

    #[test]
    fn comparators_are_reflexive_and_symmetric(x in prop::collection::vec(any::<f32>(), 0..32), noise in prop::collection::vec(-1e-3f32..1e-3, 32)) {
        let a: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = x.iter().zip(&noise).flat_map(|(v, e)| (v + e).to_le_bytes()).collect();
        for c in [Comparator::Exact, Comparator::Tolerance { rel: 1e-3, abs: 1e-3 }] {
            prop_assert!(c.agree(&[&a], &[&a]));
            prop_assert_eq!(c.agree(&[&a], &[&b]), c.agree(&[&b], &[&a]));
        }
    }
}
