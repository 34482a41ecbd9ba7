//! Real worker sessions connected to a real coordinator in memory: the
//! hello every test worker sends, and a pump that moves every message
//! (running kernels at once, signing for sessions whose key is "external").

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use shoal_core::coordinator::{ConnId, Coordinator, Input, Output};
use shoal_core::identity::Identity;
use shoal_core::wire::message::{Backend, Hello, HelloAuth};
use shoal_core::wire::{Envelope, PROTOCOL_VERSION};
use shoal_core::worker::{WorkerInput, WorkerOutput, WorkerSession};
use shoal_core::{Millis, WorkerId};

/// A CPU worker's hello with an empty token (a swarm that checks none).
pub(crate) fn hello(id: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: WorkerId::new(id).expect("id"),
        auth: HelloAuth::Token(String::new()),
        device: super::device(Backend::Cpu),
        software: "test".into(),
        max_concurrent: 2,
        cache_bytes: 0,
        held: Vec::new(),
    }
}

/// What a pump saw: why sessions were closed (what it derefs to) and the
/// payout notices they got, by session index.
#[derive(Debug, Default)]
pub(crate) struct Pumped {
    pub(crate) closed: Vec<(usize, String)>,
    pub(crate) paid: Vec<(usize, shoal_core::wire::message::PayoutNotice)>,
}

impl std::ops::Deref for Pumped {
    type Target = Vec<(usize, String)>;
    fn deref(&self) -> &Self::Target {
        &self.closed
    }
}

/// Keys that sign for sessions asking the host to ([`WorkerOutput::SignHello`]), by session index.
pub(crate) type Signers = HashMap<usize, Identity>;

/// Moves every message until nothing moves; runs kernels at once; signs
/// with `signers`; keeps what the coordinator persists in `store`.
pub(crate) fn pump_signing(
    c: &mut Coordinator,
    sessions: &mut [WorkerSession],
    signers: &Signers,
    now: &mut Millis,
    mut store: Option<&mut super::Store>,
) -> Pumped {
    let (mut closed, mut paid) = (Vec::new(), Vec::new());
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
                        let outcome = out.map(|o| o.into_iter().map(Bytes::from).collect());
                        s.handle(*now, WorkerInput::Finished { assignment, outcome });
                    }
                    WorkerOutput::SignHello { message } => {
                        let key = signers.get(&i).expect("a signer for a session that asks");
                        s.handle(*now, WorkerInput::HelloSigned { signature: key.sign(&message) });
                    }
                    WorkerOutput::Closed { reason } => closed.push((i, reason)),
                    WorkerOutput::Paid(n) => paid.push((i, n)),
                    WorkerOutput::Abort(_) | WorkerOutput::Kept { .. } | WorkerOutput::Dropped(_) => {}
                }
            }
        }
        *now = *now + Millis(1);
        for (conn, envelope) in to_coord {
            c.handle(*now, Input::Received { conn: ConnId(conn), envelope });
        }
        c.handle(*now, Input::Tick);
        while let Some(o) = c.poll_output() {
            match o {
                Output::Send { conn, envelope } => {
                    moved = true;
                    sessions[conn.0 as usize].handle(*now, WorkerInput::Received(envelope));
                }
                o => {
                    if let Some(store) = store.as_deref_mut() {
                        store.absorb(&[o]);
                    }
                }
            }
        }
        if !moved {
            return Pumped { closed, paid };
        }
    }
}

/// [`pump_signing`] for sessions that hold their keys.
pub(crate) fn pump(c: &mut Coordinator, sessions: &mut [WorkerSession], now: &mut Millis) -> Pumped {
    pump_signing(c, sessions, &Signers::new(), now, None)
}
