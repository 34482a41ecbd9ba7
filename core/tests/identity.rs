//! Contributor identities through the real coordinator and real worker
//! sessions, in memory: a key joins under its own worker id and keeps its
//! record across connections; a hello relayed to another coordinator, a
//! key the policy does not take, and a token worker posing as an identity
//! are refused.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::VecDeque;

use bytes::Bytes;
use shoal_core::coordinator::{
    ConnId, Coordinator, CoordinatorConfig, IdentityPolicy, Input, JobSpec, OriginKey, Output, TaskSpec,
};
use shoal_core::identity::Identity;
use shoal_core::kernels::{KernelId, KernelSpec, Sha256Params};
use shoal_core::wire::message::{Backend, DeviceInfo, DeviceType, Hello, HelloAuth};
use shoal_core::wire::{Envelope, PROTOCOL_VERSION};
use shoal_core::worker::{SessionState, WorkerInput, WorkerOutput, WorkerSession};
use shoal_core::{Millis, WorkerId};

const HOST: &str = "coord.example:443";

fn hello(id: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: WorkerId::new(id).expect("id"),
        auth: HelloAuth::Token(String::new()),
        device: DeviceInfo {
            backend: Backend::Cpu,
            device_type: DeviceType::Cpu,
            vendor: "test".into(),
            name: "test".into(),
            driver: "test".into(),
            max_buffer_bytes: 1 << 30,
            max_storage_binding_bytes: 1 << 27,
            max_workgroup_invocations: 256,
            kernels: KernelId::ALL.to_vec(),
        },
        software: "test".into(),
        max_concurrent: 2,
    }
}

/// Moves every message until nothing moves; runs kernels at once.
/// Returns why sessions were closed, by index.
fn pump(c: &mut Coordinator, sessions: &mut [WorkerSession], now: &mut Millis) -> Vec<(usize, String)> {
    let mut closed = Vec::new();
    loop {
        let mut moved = false;
        let mut to_coord: VecDeque<(u64, Envelope)> = VecDeque::new();
        for (i, s) in sessions.iter_mut().enumerate() {
            s.handle(*now, WorkerInput::Tick);
            while let Some(o) = s.poll_output() {
                moved = true;
                match o {
                    WorkerOutput::Send(e) => to_coord.push_back((i as u64, e)),
                    WorkerOutput::Run { assignment, kernel, inputs, .. } => {
                        let refs: Vec<&[u8]> = inputs.iter().map(|b| &b[..]).collect();
                        let out = kernel.run_cpu(&refs).map_err(|e| e.to_string());
                        s.handle(
                            *now,
                            WorkerInput::Finished {
                                assignment,
                                outcome: out.map(|o| o.into_iter().map(Bytes::from).collect()),
                            },
                        );
                    }
                    WorkerOutput::Closed { reason } => closed.push((i, reason)),
                    WorkerOutput::Abort(_) => {}
                }
            }
        }
        *now = *now + Millis(1);
        for (conn, envelope) in to_coord {
            c.handle(*now, Input::Received { conn: ConnId(conn), envelope });
        }
        c.handle(*now, Input::Tick);
        while let Some(o) = c.poll_output() {
            if let Output::Send { conn, envelope } = o {
                moved = true;
                sessions[conn.0 as usize].handle(*now, WorkerInput::Received(envelope));
            }
        }
        if !moved {
            return closed;
        }
    }
}

fn config(identities: IdentityPolicy) -> CoordinatorConfig {
    let mut cfg = CoordinatorConfig::default();
    cfg.profile.benchmark_size = 16;
    cfg.profile.min_mflops = 1;
    cfg.identities = identities;
    cfg
}

fn session(seed: u8, audience: &str) -> WorkerSession {
    WorkerSession::with_identity(hello("ignored"), Identity::from_seed(&[seed; 32]), audience.into())
}

fn connect(c: &mut Coordinator, now: Millis, conn: u64) {
    c.handle(now, Input::Connected { conn: ConnId(conn), origin: OriginKey(conn), host: Some(HOST.into()) });
}

#[test]
fn an_identity_keeps_its_record_across_connections() {
    // Tokens are enforced (a secret is set); identities need none.
    let secret = shoal_core::auth::MasterSecret::new(vec![5; 32]).expect("a secret");
    let mut c = Coordinator::new(config(IdentityPolicy::Open), Some(secret), [3; 32]);
    let mut now = Millis(10_000);
    let mut sessions: Vec<WorkerSession> = (0..3).map(|i| session(i + 1, HOST)).collect();
    for i in 0..3 {
        connect(&mut c, now, i);
    }
    pump(&mut c, &mut sessions, &mut now);
    let me = Identity::from_seed(&[1; 32]).worker_id();
    assert!(
        matches!(sessions[0].state(), SessionState::Working { worker_id } if *worker_id == me),
        "{:?}",
        sessions[0].state()
    );
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 });
    let tasks: Vec<TaskSpec> = (0..6u64)
        .map(|i| TaskSpec {
            kernel: kernel.clone(),
            inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
        })
        .collect();
    let job = c.submit_job(now, JobSpec::new(tasks)).expect("accepted");
    pump(&mut c, &mut sessions, &mut now);
    assert!(c.job_progress(job).expect("known").finished());
    let before = c.worker_view(&me).expect("connected").agreed;
    assert!(before > 0, "the identity did verified work");

    // The tab closes; the same key comes back on a new connection.
    c.handle(now, Input::Disconnected { conn: ConnId(0), reason: "tab closed".into() });
    assert!(c.worker_view(&me).is_none());
    sessions.push(session(1, HOST));
    connect(&mut c, now, 3);
    sessions[0] = session(9, HOST); // never connected: stays greeting
    pump(&mut c, &mut sessions, &mut now);
    assert!(matches!(sessions[3].state(), SessionState::Working { worker_id } if *worker_id == me));
    assert_eq!(c.worker_view(&me).expect("back").agreed, before, "its record is the key's, not the connection's");
}

#[test]
fn relayed_unlisted_and_impostor_hellos_are_refused() {
    let mut now = Millis(10_000);
    // A hello signed for another coordinator (a relay in the middle).
    let mut c = Coordinator::new(config(IdentityPolicy::Open), None, [3; 32]);
    let mut sessions = vec![session(1, "evil.example")];
    connect(&mut c, now, 0);
    let closed = pump(&mut c, &mut sessions, &mut now);
    assert!(closed.iter().any(|(_, why)| why.contains("signed for `evil.example`")), "{closed:?}");

    // Policies: closed refuses every key; an allowlist takes only its own.
    let listed = Identity::from_seed(&[2; 32]).worker_id();
    for (policy, seed, admitted) in [
        (IdentityPolicy::Closed, 2, false),
        (IdentityPolicy::Allowlist(vec![listed.to_string()]), 2, true),
        (IdentityPolicy::Allowlist(vec![listed.to_string()]), 3, false),
    ] {
        let mut c = Coordinator::new(config(policy.clone()), None, [3; 32]);
        let mut sessions = vec![session(seed, HOST)];
        connect(&mut c, now, 0);
        let closed = pump(&mut c, &mut sessions, &mut now);
        let working = matches!(sessions[0].state(), SessionState::Working { .. });
        assert_eq!(working, admitted, "{policy:?} seed {seed}: {closed:?}");
    }

    // A token worker (here: a closed swarm that checks no tokens) may not
    // take an identity's id.
    let mut c = Coordinator::new(config(IdentityPolicy::Open), None, [3; 32]);
    let mut impostor = hello(listed.as_str());
    impostor.auth = HelloAuth::Token(String::new());
    let mut sessions = vec![WorkerSession::new(impostor)];
    connect(&mut c, now, 0);
    let closed = pump(&mut c, &mut sessions, &mut now);
    assert!(closed.iter().any(|(_, why)| why.contains("belong to identities")), "{closed:?}");
}
