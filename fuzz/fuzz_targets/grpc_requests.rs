//! Arbitrary bytes as the gRPC service's requests. The first byte picks the
//! request type; the rest is its protobuf encoding (for `SubmitJob`, a
//! stream of length-delimited messages, as the transport frames them).
//! Every decoded request re-encodes to itself; a job stream goes through
//! the service's own checks (`JobIntake`: header, kernels, custom shaders
//! through naga, input bytes) and, when accepted, into a real coordinator.
//! Typed errors only, never a panic.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_core::coordinator::{Coordinator, CoordinatorConfig};
use shoal_core::Millis;
use shoal_native::grpc::{parse_job, pb, JobIntake};

thread_local! {
    /// One coordinator for many runs (a fresh one every 4096: cancelled
    /// jobs are remembered a while).
    static COORDINATOR: RefCell<(Coordinator, u32)> = RefCell::new((fresh(), 0));
}

fn fresh() -> Coordinator {
    Coordinator::new(CoordinatorConfig::default(), None, [1; 32])
}

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let back = M::decode(m.encode_to_vec().as_slice()).expect("a decoded message re-encodes");
    assert_eq!(&back, m);
}

fn submit(mut rest: &[u8]) {
    let mut messages = Vec::new();
    while !rest.is_empty() && messages.len() < 64 {
        match pb::SubmitJobRequest::decode_length_delimited(&mut rest) {
            Ok(m) => {
                roundtrip(&m);
                messages.push(m);
            }
            Err(_) => break,
        }
    }
    let mut stream = messages.into_iter();
    let Ok(mut intake) = JobIntake::start(stream.next(), 1 << 20) else { return };
    for m in stream {
        if intake.push(m).is_err() {
            return;
        }
    }
    let (job, _name, _request_id) = intake.finish();
    COORDINATOR.with(|cell| {
        let (c, runs) = &mut *cell.borrow_mut();
        if let Ok(id) = c.submit_job(Millis(1), job) {
            c.cancel_job(Millis(2), id);
        }
        while c.poll_output().is_some() {}
        *runs += 1;
        if *runs >= 4096 {
            *c = fresh();
            *runs = 0;
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 4 {
        0 => submit(rest),
        1 => {
            if let Ok(r) = pb::GetJobRequest::decode(rest) {
                roundtrip(&r);
                let _ = parse_job(&r.job_id);
            }
        }
        2 => {
            if let Ok(r) = pb::StreamJobResultsRequest::decode(rest) {
                roundtrip(&r);
                let _ = parse_job(&r.job_id);
            }
        }
        _ => {
            if let Ok(r) = pb::StreamStateDiffsRequest::decode(rest) {
                roundtrip(&r);
            }
        }
    }
});
