//! The wire codec through its public API: frames, worker-protocol
//! envelopes and the Pilot JSON mode. Runs natively and on wasm32.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::{Bytes, BytesMut};
use shoal_core::kernels::{KernelId, KernelSpec, MatmulParams, Sha256Params};
use shoal_core::task::{ResultFileError, TaskStatus};
use shoal_core::wire::message::{
    frame_types, AttachmentMeta, Backend, Cancel, DeviceInfo, DeviceType, ErrorCode, ErrorMessage, Goodbye, Heartbeat,
    Hello, HelloAuth, Progress, TaskAck, TaskDecline, TaskOffer, Welcome, ATTACHMENT,
};
use shoal_core::wire::pilot::{
    self, PilotError, PilotInbound, ResultType, SubmitRequest, TaskResultMessage, TaskStatusUpdate,
};
use shoal_core::wire::{
    encode_frame, Envelope, Frame, FrameDecoder, FrameError, FrameType, Message, MessageDecoder, WireError, WireLimits,
    MAX_FRAME_PAYLOAD,
};
use shoal_core::{AssignmentId, Digest, JobId, TaskId, WorkerId};

fn frames_bytes(frames: &[(u32, Vec<u8>)]) -> BytesMut {
    let mut out = BytesMut::new();
    for (t, p) in frames {
        encode_frame(FrameType(*t), p, &mut out).expect("within cap");
    }
    out
}

fn drain(dec: &mut FrameDecoder) -> Vec<(u32, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(f) = dec.next_frame().expect("valid stream") {
        got.push((f.frame_type.0, f.payload.to_vec()));
    }
    got
}

#[test]
fn frames_survive_any_chunking() {
    let frames = vec![(1, b"hello".to_vec()), (2, Vec::new()), (7, vec![0xAB; 300]), (u32::MAX, vec![1, 2, 3])];
    let bytes = frames_bytes(&frames);
    // All at once.
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    assert_eq!(drain(&mut d), frames);
    d.finish().expect("ends on a frame boundary");
    // One byte at a time.
    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        got.extend(drain(&mut d));
    }
    assert_eq!(got, frames);
    // Uneven chunks, zero-copy pushes.
    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    let frozen = bytes.freeze();
    let mut at = 0;
    for size in [3usize, 9, 1, 100, 250, 7, 1000].iter().cycle() {
        if at >= frozen.len() {
            break;
        }
        let end = (at + size).min(frozen.len());
        d.push_bytes(frozen.slice(at..end));
        got.extend(drain(&mut d));
        at = end;
    }
    assert_eq!(got, frames);
}

#[test]
fn a_whole_frame_in_one_chunk_is_not_copied() {
    let payload = vec![7u8; 1 << 20];
    let bytes = frames_bytes(&[(32, payload)]).freeze();
    let start = bytes.as_ptr() as usize;
    let mut d = FrameDecoder::new();
    d.push_bytes(bytes.clone());
    let f = d.next_frame().expect("valid").expect("complete");
    assert_eq!(f.payload.as_ptr() as usize, start + 8, "payload is a view of the pushed chunk");
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut d = FrameDecoder::with_limit(1024).expect("below hard cap");
    d.push(&[0, 0, 0, 1, 0, 0, 4, 1]); // declares 1025 bytes
    assert_eq!(d.next_frame(), Err(FrameError::TooLarge { declared: 1025, limit: 1024 }));
    // The decoder stays failed: the stream is out of sync.
    d.push(&frames_bytes(&[(1, vec![1])]));
    assert!(d.next_frame().is_err());
    assert_eq!(
        FrameDecoder::with_limit(MAX_FRAME_PAYLOAD + 1).map(|_| ()),
        Err(FrameError::LimitAboveHardCap { requested: MAX_FRAME_PAYLOAD + 1 })
    );
    // Exactly 2^24 is allowed by the hard cap; one more is not.
    let mut d = FrameDecoder::new();
    d.push(&[0, 0, 0, 1, 1, 0, 0, 1]);
    assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    let mut big = BytesMut::new();
    assert!(encode_frame(FrameType(1), &vec![0u8; (MAX_FRAME_PAYLOAD + 1) as usize], &mut big).is_err());
    encode_frame(FrameType(1), &vec![0u8; MAX_FRAME_PAYLOAD as usize], &mut big).expect("2^24 allowed");
    let mut d = FrameDecoder::new();
    d.push_bytes(big.freeze());
    assert_eq!(d.next_frame().expect("valid").expect("complete").payload.len(), MAX_FRAME_PAYLOAD as usize);
}

#[test]
fn a_declared_length_does_not_make_the_decoder_allocate_it() {
    let mut d = FrameDecoder::new();
    // Header declares 16 MiB; only 10 payload bytes arrive, a byte at a time.
    for b in [0u8, 0, 0, 1, 1, 0, 0, 0].iter().chain(&[9u8; 10]) {
        d.push(std::slice::from_ref(b));
        assert_eq!(d.next_frame(), Ok(None));
    }
    assert!(d.assembly_capacity() <= 16 * 18, "reserved {} bytes for 18 received", d.assembly_capacity());
    assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 18 }));
}

fn sample_offer() -> (Message, Vec<Bytes>) {
    let spec = KernelSpec::MatmulF32(MatmulParams { m: 2, n: 3, k: 4 });
    let inputs: Vec<Bytes> = spec.seeded_inputs(1).into_iter().map(Bytes::from).collect();
    let offer = TaskOffer {
        assignment: AssignmentId::from_bytes([1; 16]),
        task: TaskId::from_bytes([2; 16]),
        job: JobId::from_bytes([3; 16]),
        kernel: spec.into(),
        inputs: inputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
        parts: Vec::new(),
        input_digest: Digest::of_parts(inputs.iter().map(|b| &b[..])),
        input_check: Digest::check_of_parts(inputs.iter().map(|b| &b[..])),
        deadline_ms: 30_000,
        exec_budget_ms: 60_000,
    };
    (Message::TaskOffer(offer), inputs)
}

fn every_message() -> Vec<Envelope> {
    let a = AssignmentId::from_bytes([9; 16]);
    let id = WorkerId::new("worker-1").expect("valid");
    let (offer, inputs) = sample_offer();
    let outputs = vec![Bytes::from_static(b"out-0"), Bytes::from_static(b"")];
    vec![
        Envelope::bare(Message::Hello(Box::new(Hello {
            protocol_version: shoal_core::wire::PROTOCOL_VERSION,
            worker_id: id.clone(),
            auth: HelloAuth::Token("shoal_00".into()),
            device: DeviceInfo {
                backend: Backend::Vulkan,
                device_type: DeviceType::Cpu,
                vendor: "Mesa".into(),
                name: "llvmpipe".into(),
                driver: "lavapipe".into(),
                max_buffer_bytes: 1 << 28,
                max_storage_binding_bytes: 1 << 27,
                max_workgroup_invocations: 256,
                kernels: vec![KernelId::Sha256, KernelId::MatmulF32],
            },
            software: "shoal-worker/0.1".into(),
            max_concurrent: 2,
            cache_bytes: 0,
            held: Vec::new(),
        }))),
        Envelope::bare(Message::Welcome(Welcome {
            protocol_version: 1,
            worker_id: id,
            heartbeat_interval_ms: 5_000,
            max_frame_payload: MAX_FRAME_PAYLOAD,
        })),
        Envelope { message: offer, attachments: inputs },
        Envelope::bare(Message::TaskAck(TaskAck { assignment: a })),
        Envelope::bare(Message::TaskDecline(TaskDecline { assignment: a, reason: "busy".into() })),
        Envelope::bare(Message::Progress(Progress { assignment: a, done: 1, total: 4 })),
        Envelope::task_result(a, outputs),
        Envelope::bare(Message::Heartbeat(Heartbeat { seq: 42, running: 1 })),
        Envelope::bare(Message::Cancel(Cancel { assignment: a, reason: "verified elsewhere".into() })),
        Envelope::bare(Message::Error(ErrorMessage {
            code: ErrorCode::ExecutionFailed,
            assignment: Some(a),
            message: "device lost".into(),
        })),
        Envelope::bare(Message::Goodbye(Goodbye { reason: "shutting down".into() })),
    ]
}

#[test]
fn every_message_round_trips_with_its_attachments() {
    let limits = WireLimits::default();
    let all = every_message();
    let mut bytes = BytesMut::new();
    for e in &all {
        e.encode_into(&limits, &mut bytes).expect("encodes");
    }
    let mut dec = MessageDecoder::new(limits).expect("valid limits");
    let mut got = Vec::new();
    for chunk in bytes.chunks(5) {
        dec.push(chunk);
        while let Some(e) = dec.next_envelope().expect("valid stream") {
            got.push(e);
        }
    }
    assert_eq!(got, all);
    dec.finish().expect("clean end");
    // The vectored form carries the same bytes.
    let frames = all[2].to_frames(&limits).expect("encodes");
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1].frame_type, ATTACHMENT);
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Envelope>, WireError> {
    let mut dec = MessageDecoder::new(WireLimits::default())?;
    dec.push(bytes);
    let mut out = Vec::new();
    while let Some(e) = dec.next_envelope()? {
        out.push(e);
    }
    dec.finish()?;
    Ok(out)
}

fn frame(t: FrameType, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    Frame::new(t, payload.to_vec()).encode_into(&mut b).expect("within cap");
    b.to_vec()
}

#[test]
fn malformed_envelopes_are_typed_errors() {
    let limits = WireLimits::default();
    assert_eq!(decode_all(&frame(FrameType(999), b"")), Err(WireError::UnknownFrameType(999)));
    assert_eq!(decode_all(&frame(ATTACHMENT, b"x")), Err(WireError::UnexpectedAttachment));
    assert!(matches!(decode_all(&frame(frame_types::HELLO, &[0xff; 3])), Err(WireError::Malformed { .. })));
    let mut hb = Message::Heartbeat(Heartbeat { seq: 1, running: 0 }).encode_payload().expect("encodes");
    hb.push(0);
    assert_eq!(
        decode_all(&frame(frame_types::HEARTBEAT, &hb)),
        Err(WireError::TrailingBytes { what: "heartbeat", extra: 1 })
    );
    // An offer whose attachments do not follow.
    let (offer, inputs) = sample_offer();
    let mut b = frame(offer.frame_type(), &offer.encode_payload().expect("encodes"));
    b.extend(frame(
        frame_types::HEARTBEAT,
        &Message::Heartbeat(Heartbeat { seq: 1, running: 0 }).encode_payload().expect("encodes"),
    ));
    assert!(matches!(decode_all(&b), Err(WireError::MissingAttachment { index: 0, expected: 2, .. })));
    // An attachment of the wrong length.
    let mut b = frame(offer.frame_type(), &offer.encode_payload().expect("encodes"));
    b.extend(frame(ATTACHMENT, &inputs[0][1..]));
    assert!(matches!(decode_all(&b), Err(WireError::AttachmentLength { index: 0, .. })));
    // The stream ends before the attachments.
    let b = frame(offer.frame_type(), &offer.encode_payload().expect("encodes"));
    assert!(matches!(decode_all(&b), Err(WireError::MissingAttachment { .. })));
    // The encoder refuses an envelope that contradicts its declaration.
    let bad = Envelope { message: offer.clone(), attachments: vec![] };
    assert_eq!(
        bad.encode_into(&limits, &mut BytesMut::new()),
        Err(WireError::AttachmentCount { declared: 2, given: 0 })
    );
}

#[test]
fn peer_controlled_fields_are_capped() {
    let limits = WireLimits { max_text: 8, max_attachments: 1, ..WireLimits::default() };
    let long = Message::Goodbye(Goodbye { reason: "much too long".into() });
    let payload = long.encode_payload().expect("encodes");
    assert!(matches!(
        Message::decode(long.frame_type(), &payload, &limits),
        Err(WireError::OverLimit { what: "reason", .. })
    ));
    let (offer, _) = sample_offer();
    let payload = offer.encode_payload().expect("encodes");
    assert!(matches!(
        Message::decode(offer.frame_type(), &payload, &limits),
        Err(WireError::OverLimit { what: "attachment count", .. })
    ));
    // An offer naming an invalid kernel is refused at decode time.
    let Message::TaskOffer(mut o) = offer else { unreachable!() };
    o.kernel = KernelSpec::Sha256(Sha256Params { count: 0, message_len: 1 }).into();
    let m = Message::TaskOffer(o);
    assert!(matches!(
        Message::decode(m.frame_type(), &m.encode_payload().expect("encodes"), &WireLimits::default()),
        Err(WireError::InvalidField { field: "kernel", .. })
    ));
    // A hello whose worker id is not a valid id is malformed.
    let Message::Hello(h) = every_message().remove(0).message else { unreachable!() };
    let mut bytes = Message::Hello(h).encode_payload().expect("encodes");
    let pos = bytes.windows(8).position(|w| w == b"worker-1").expect("id in payload");
    bytes[pos + 6] = b'/';
    assert!(matches!(
        Message::decode(frame_types::HELLO, &bytes, &WireLimits::default()),
        Err(WireError::Malformed { what: "hello", .. })
    ));
}

fn pilot_frame(t: FrameType, json: &[u8]) -> Frame {
    Frame::new(t, json.to_vec())
}

#[test]
fn pilot_json_is_go_compatible() {
    let up = TaskStatusUpdate {
        task_id: "t".into(),
        status: TaskStatus::Accepted,
        justification: "a <b> & c \u{2028}".into(),
    };
    assert_eq!(
        pilot::to_go_json(&up).expect("serialises"),
        br#"{"task_id":"t","status":"ACCEPTED","justification":"a \u003cb\u003e \u0026 c \u2028"}"#.to_vec()
    );
    let text = TaskResultMessage {
        task_id: "t".into(),
        result_type: ResultType::Text,
        result_text: "42".into(),
        filename: String::new(),
        file_data: Vec::new(),
        completed_at: "2026-11-22T00:00:00Z".into(),
        time_idle_ms: 0,
        time_staged_ms: 5,
        time_cpu_ms: 0,
    };
    assert_eq!(
        pilot::to_go_json(&text).expect("serialises"),
        br#"{"task_id":"t","result_type":"text","result_text":"42","completed_at":"2026-11-22T00:00:00Z","time_staged_ms":5}"#.to_vec()
    );
    let file = TaskResultMessage {
        result_type: ResultType::File,
        result_text: String::new(),
        filename: "out.csv".into(),
        file_data: b"a,b\n".to_vec(),
        time_staged_ms: 0,
        ..text
    };
    let json = pilot::to_go_json(&file).expect("serialises");
    assert!(std::str::from_utf8(&json).expect("utf8").contains(r#""file_data":"YSxiCg==""#));
    let mut b = BytesMut::new();
    pilot::encode(&file, &mut b).expect("encodes");
    let f = pilot_frame(pilot::SEND_RESULTS, &b[8..]);
    assert_eq!(PilotInbound::decode(&f), Ok(PilotInbound::SendResults(file)));
}

#[test]
fn pilot_errors_are_typed() {
    assert_eq!(pilot::frame_type_name(FrameType(1)), "SUBMIT");
    assert_eq!(pilot::frame_type_name(FrameType(2)), "RESULT");
    assert_eq!(pilot::frame_type_name(FrameType(999)), "UNKNOWN(999)");
    let f = pilot_frame(pilot::STATUS_UPDATE, b"{}");
    assert!(matches!(pilot::decode::<SubmitRequest>(&f), Err(PilotError::WrongFrameType { .. })));
    assert!(matches!(PilotInbound::decode(&pilot_frame(pilot::SUBMIT, b"{not json")), Err(PilotError::Json { .. })));
    let long = format!(
        r#"{{"task_id":"t","task_description":"{}","from_addr":"a","to_addr":"b"}}"#,
        "x".repeat(16 * 1024 + 1)
    );
    assert!(matches!(
        PilotInbound::decode(&pilot_frame(pilot::SUBMIT, long.as_bytes())),
        Err(PilotError::FieldTooLong { field: "task_description", .. })
    ));
    let bad_file =
        br#"{"task_id":"t","result_type":"file","filename":"../x.csv","file_data":"YQ==","completed_at":"z"}"#;
    assert!(matches!(
        PilotInbound::decode(&pilot_frame(pilot::SEND_RESULTS, bad_file)),
        Err(PilotError::ResultFile(ResultFileError::NotPlain(_)))
    ));
    let code = br#"{"task_id":"t","result_type":"file","filename":"x.py","file_data":"YQ==","completed_at":"z"}"#;
    assert!(matches!(
        PilotInbound::decode(&pilot_frame(pilot::SEND_RESULTS, code)),
        Err(PilotError::ResultFile(ResultFileError::SourceCode(_)))
    ));
    let b64 = br#"{"task_id":"t","result_type":"file","filename":"x.csv","file_data":"!!","completed_at":"z"}"#;
    assert!(matches!(PilotInbound::decode(&pilot_frame(pilot::SEND_RESULTS, b64)), Err(PilotError::Json { .. })));
}

#[test]
fn a_batch_sends_big_attachments_as_their_own_messages_and_they_arrive_uncopied() {
    use shoal_core::wire::MessageBatch;
    let limits = WireLimits::default();
    let big = Bytes::from(vec![7u8; MessageBatch::APART + 5]);
    let small = Bytes::from_static(b"small output");
    let a = AssignmentId::from_bytes([4; 16]);
    let envelopes = vec![
        Envelope::task_result(a, vec![small.clone(), big.clone()]),
        Envelope::bare(Message::TaskAck(TaskAck { assignment: a })),
        Envelope::task_result(a, vec![big.clone()]),
    ];
    let mut batch = MessageBatch::new();
    for e in &envelopes {
        batch.push(e, &limits).expect("valid");
    }
    let mut one = BytesMut::new();
    for e in &envelopes {
        e.encode_into(&limits, &mut one).expect("valid");
    }
    let total = one.len();
    assert_eq!(batch.len(), total);
    let messages = batch.take();
    assert!(batch.is_empty() && batch.take().is_empty());
    // [result + small + big's header] [big] [ack + result + big's header] [big]
    assert_eq!(messages.len(), 4);
    assert_eq!(messages.concat(), one.to_vec(), "the same bytes as one encoding");
    assert!(messages[1].as_ptr() == big.as_ptr() && messages[3].as_ptr() == big.as_ptr(), "shared, not copied");
    let mut d = MessageDecoder::new(limits).expect("limits");
    let mut got = Vec::new();
    for m in messages {
        d.push_bytes(m);
        while let Some(e) = d.next_envelope().expect("valid") {
            got.push(e);
        }
    }
    assert_eq!(got, envelopes);
    assert_eq!(got[2].attachments[0].as_ptr(), big.as_ptr(), "the decoder hands the message out as the payload");
    d.finish().expect("nothing left over");
}
