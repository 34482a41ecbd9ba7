//! Wire codec benchmarks.
//!
//! Throughput: small frames per second, and 1 MiB attachments
//! in GB/s next to a plain memcpy of the same bytes measured in the same run.
//!
//! `cargo bench -p shoal-core --bench wire`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shoal_core::wire::message::{Heartbeat, ATTACHMENT};
use shoal_core::wire::{encode_frame, Envelope, FrameDecoder, FrameType, Message, MessageDecoder, WireLimits};

const SMALL: usize = 10_000;
const MIB: usize = 1 << 20;

fn small_frames(c: &mut Criterion) {
    let payload = [7u8; 16];
    let mut stream = BytesMut::new();
    for _ in 0..SMALL {
        encode_frame(FrameType(23), &payload, &mut stream).expect("within cap");
    }
    let stream = stream.freeze();
    let mut hb_stream = BytesMut::new();
    let limits = WireLimits::default();
    for seq in 0..SMALL as u64 {
        Envelope::bare(Message::Heartbeat(Heartbeat { seq, running: 1 }))
            .encode_into(&limits, &mut hb_stream)
            .expect("encodes");
    }
    let hb_stream = hb_stream.freeze();

    let mut g = c.benchmark_group("small_frames");
    g.throughput(Throughput::Elements(SMALL as u64));
    g.bench_function("decode_16B", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new();
            d.push_bytes(stream.clone());
            let mut n = 0;
            while let Some(f) = d.next_frame().expect("valid") {
                n += f.payload.len();
            }
            black_box(n)
        });
    });
    g.bench_function("encode_16B", |b| {
        let mut out = BytesMut::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for _ in 0..SMALL {
                encode_frame(FrameType(23), black_box(&payload), &mut out).expect("within cap");
            }
            black_box(out.len())
        });
    });
    g.bench_function("decode_heartbeat_messages", |b| {
        b.iter(|| {
            let mut d = MessageDecoder::new(limits).expect("valid limits");
            d.push_bytes(hb_stream.clone());
            let mut n = 0u64;
            while let Some(e) = d.next_envelope().expect("valid") {
                if let Message::Heartbeat(h) = e.message {
                    n += h.seq;
                }
            }
            black_box(n)
        });
    });
    g.finish();
}

fn attachments(c: &mut Criterion) {
    let data: Vec<u8> = (0..MIB).map(|i| (i * 31) as u8).collect();
    let mut framed = BytesMut::new();
    encode_frame(ATTACHMENT, &data, &mut framed).expect("within cap");
    let framed = framed.freeze();

    let mut g = c.benchmark_group("attachment_1MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("memcpy", |b| {
        let mut dst = vec![0u8; MIB];
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(dst.as_ptr());
        });
    });
    g.bench_function("memcpy_fresh_alloc", |b| {
        b.iter(|| black_box(black_box(&data[..]).to_vec()));
    });
    g.bench_function("decode_whole_chunk", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new();
            d.push_bytes(framed.clone());
            black_box(d.next_frame().expect("valid").expect("complete").payload.len())
        });
    });
    for chunk in [64 * 1024, 16 * 1024] {
        let pieces: Vec<Bytes> = framed.chunks(chunk).map(Bytes::copy_from_slice).collect();
        g.bench_with_input(BenchmarkId::new("decode_split", chunk), &pieces, |b, pieces| {
            b.iter(|| {
                let mut d = FrameDecoder::new();
                let mut got = None;
                for p in pieces {
                    d.push_bytes(p.clone());
                    if let Some(f) = d.next_frame().expect("valid") {
                        got = Some(f.payload.len());
                    }
                }
                black_box(got)
            });
        });
    }
    g.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(MIB + 8);
        b.iter(|| {
            out.clear();
            encode_frame(ATTACHMENT, black_box(&data), &mut out).expect("within cap");
            black_box(out.len())
        });
    });
    g.finish();
}

criterion_group!(benches, small_frames, attachments);
criterion_main!(benches);
