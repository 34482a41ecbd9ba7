//! The worker side of the protocol, sans-I/O: the same session drives the
//! native worker and the browser tab.
//!
//! The host feeds [`WorkerInput`]s with the time they happened
//! ([`WorkerSession::handle`]: received envelopes, finished kernels, the
//! user leaving, and a tick whenever [`WorkerSession::poll_timeout`] comes
//! due) and drains [`WorkerOutput`]s ([`WorkerSession::poll_output`]): envelopes to send, kernels to
//! run, runs to abort, and the end of the session. It checks every offer's
//! inputs against their declared digest, declines work beyond its capacity,
//! never sends a result for an assignment the coordinator cancelled,
//! heartbeats at the interval the coordinator asked for, and notices when
//! its host was suspended (a hidden or frozen browser tab, a laptop lid):
//! after a silence long enough for the coordinator to have re-queued its
//! work, the session ends instead of sending stale results as if fresh.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

mod inputs;

use crate::benchmark;
use crate::ids::{AssignmentId, JobId, WorkerId};
use crate::kernels::KernelSpec;
use crate::rng::SplitMix64;
use crate::shared_inputs::{CacheChange, InputCache};
use crate::time::Millis;
use crate::wire::message::{
    BenchmarkChallenge, BenchmarkCommit, BenchmarkOffer, ErrorCode, ErrorMessage, Goodbye, Heartbeat, Hello, HelloAuth,
    InputData, InputRequest, MessageDecoder, TaskAck, TaskDecline, TaskOffer,
};
use crate::wire::{Envelope, Message};

/// The shortest silence counted as a suspension, whatever the heartbeat
/// interval: short stalls of a busy host are not suspensions.
pub const MIN_SUSPENSION: Millis = Millis(15_000);

/// Something that happened, fed to [`WorkerSession::handle`].
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved, never stored
pub enum WorkerInput {
    /// The coordinator sent this envelope.
    Received(Envelope),
    /// A kernel the session asked to run ([`WorkerOutput::Run`]) ended.
    Finished {
        /// The assignment it was run for.
        assignment: AssignmentId,
        /// Its outputs, or why it failed.
        outcome: Result<Vec<Bytes>, String>,
    },
    /// The time [`WorkerSession::poll_timeout`] asked for came (or any
    /// time: early ticks are harmless). A tick long after the previous one
    /// tells the session its host was suspended.
    Tick,
    /// The user or the host ends the session (stop, pause, page closed).
    Leave {
        /// Why, told to the coordinator.
        reason: String,
    },
    /// The signature [`WorkerOutput::SignHello`] asked for.
    HelloSigned {
        /// Ed25519 over the message it named.
        signature: [u8; 64],
    },
}

/// Something the host must do.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerOutput {
    /// Send this envelope to the coordinator.
    Send(Envelope),
    /// Run this kernel on these inputs, then report it with [`WorkerInput::Finished`].
    Run {
        /// The assignment, to report back with.
        assignment: AssignmentId,
        /// The job it belongs to ([`JobId::BENCHMARK`] for the admission benchmark).
        job: JobId,
        /// What to run.
        kernel: KernelSpec,
        /// Its inputs.
        inputs: Vec<Bytes>,
        /// How long it may run (from now): past this the coordinator has
        /// cancelled it, so a host abandons it.
        budget: Millis,
    },
    /// The coordinator no longer wants this run; its result will be dropped.
    Abort(AssignmentId),
    /// A settled epoch paid this worker (tell the user).
    Paid(crate::wire::message::PayoutNotice),
    /// Sign `message` with the identity's key and answer with
    /// [`WorkerInput::HelloSigned`] (a session whose key lives outside it,
    /// [`IdentityKey::External`]: a browser's non-extractable key).
    SignHello {
        /// What to sign ([`crate::identity::hello_message`]).
        message: Vec<u8>,
    },
    /// A shared input entered the session's cache: a host that keeps the
    /// cache beyond the process (disk, Cache Storage) stores it.
    Kept {
        /// Its digest ([`crate::shared_inputs::part_digest`]).
        digest: crate::digest::Digest,
        /// Its bytes.
        bytes: Bytes,
    },
    /// A shared input left the cache: such a host deletes its copy.
    Dropped(crate::digest::Digest),
    /// The session is over (refused, slashed, or the coordinator left):
    /// close the connection.
    Closed {
        /// Why, for the user.
        reason: String,
    },
}

/// Where a contributor's secret key is.
#[derive(Clone, Debug)]
pub enum IdentityKey {
    /// Here: the session signs its hello itself.
    Held(crate::identity::Identity),
    /// Elsewhere (a browser's non-extractable key): the session asks the
    /// host to sign ([`WorkerOutput::SignHello`]).
    External {
        /// Its Ed25519 public key.
        public_key: [u8; 32],
    },
}

impl IdentityKey {
    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            IdentityKey::Held(i) => i.public_key(),
            IdentityKey::External { public_key } => *public_key,
        }
    }
}

/// A contributor identity's part of a hello.
#[derive(Clone, Debug)]
pub struct IdentityHello {
    /// The key.
    pub key: IdentityKey,
    /// The host (and port) the worker dialed, as its URL names it.
    pub audience: String,
    /// What it declares (payout address, name, team); None keeps what the
    /// coordinator has.
    pub profile: Option<crate::identity::Profile>,
}

impl IdentityHello {
    /// An identity whose key the session holds, declaring nothing.
    pub fn held(identity: crate::identity::Identity, audience: String) -> Self {
        IdentityHello { key: IdentityKey::Held(identity), audience, profile: None }
    }
}

/// Where the session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the coordinator's challenge, then (hello sent) its
    /// welcome.
    Greeting,
    /// Admitted (or being benchmarked): taking work.
    Working {
        /// The id the coordinator knows this worker by.
        worker_id: WorkerId,
    },
    /// Over.
    Closed,
}

/// A taken offer waiting for shared inputs ([`InputData`]).
#[derive(Debug)]
struct Fetching {
    offer: TaskOffer,
    slots: Vec<Option<Bytes>>,
}

/// One connection's worth of protocol.
#[derive(Debug)]
pub struct WorkerSession {
    state: SessionState,
    /// The hello, until the challenge it answers arrives.
    hello: Option<Box<Hello>>,
    /// The contributor identity the hello joins under.
    identity: Option<IdentityHello>,
    max_concurrent: usize,
    running: HashSet<AssignmentId>,
    /// Benchmark runs: their chunk size, then (run, committed) their
    /// output until the coordinator's challenge.
    benchmarks: HashMap<AssignmentId, (u32, Option<Bytes>)>,
    /// Shared inputs kept between tasks.
    cache: InputCache<Bytes>,
    /// Taken offers waiting for shared inputs the cache lacked.
    fetching: HashMap<AssignmentId, Fetching>,
    heartbeat_every: Millis,
    next_heartbeat: Option<Millis>,
    last_tick: Option<Millis>,
    seq: u64,
    completed: u64,
    outputs: VecDeque<WorkerOutput>,
}

impl WorkerSession {
    /// Starts a session. The hello goes out when the coordinator's
    /// challenge arrives; a token in it is replaced by its proof over that
    /// challenge ([`crate::auth::hello_proof`]), so it never crosses the wire.
    pub fn new(hello: Hello) -> Self {
        let cache = InputCache::logged(hello.cache_bytes);
        WorkerSession::with_cache(hello, cache)
    }

    /// Starts a session with the shared inputs a worker already holds (an
    /// earlier session's, [`WorkerSession::take_cache`], or loaded from
    /// disk): the hello lists them, so offers name them at once. The
    /// cache's capacity is what the hello declares.
    pub fn with_cache(mut hello: Hello, cache: InputCache<Bytes>) -> Self {
        hello.cache_bytes = cache.capacity();
        let oldest_listed = cache.len().saturating_sub(crate::wire::message::MAX_HELD_INPUTS);
        hello.held = (cache.lengths().skip(oldest_listed))
            .map(|(digest, len)| crate::wire::message::HeldInput { digest, len })
            .collect();
        let max_concurrent = usize::from(hello.max_concurrent.max(1));
        WorkerSession {
            cache,
            fetching: HashMap::new(),
            state: SessionState::Greeting,
            hello: Some(Box::new(hello)),
            identity: None,
            max_concurrent,
            running: HashSet::new(),
            benchmarks: HashMap::new(),
            heartbeat_every: Millis::from_secs(10),
            next_heartbeat: None,
            last_tick: None,
            seq: 0,
            completed: 0,
            outputs: VecDeque::new(),
        }
    }

    /// Starts a session of a contributor identity: the hello joins under
    /// the key's worker id and signs the coordinator's challenge, the host
    /// the worker dialed and the profile it declares.
    pub fn with_identity(hello: Hello, identity: IdentityHello) -> Self {
        WorkerSession::new(hello).joining_as(identity)
    }

    /// This session, joining as a contributor identity (see
    /// [`WorkerSession::with_identity`]); before its hello went out.
    pub fn joining_as(mut self, identity: IdentityHello) -> Self {
        if let Some(hello) = &mut self.hello {
            hello.worker_id = crate::identity::worker_id_of(&identity.key.public_key());
            hello.auth = HelloAuth::Guest;
        }
        self.identity = Some(identity);
        self
    }

    /// The session's input cache, to carry into the next session
    /// ([`WorkerSession::with_cache`]); this one keeps an empty one.
    pub fn take_cache(&mut self) -> InputCache<Bytes> {
        std::mem::replace(&mut self.cache, InputCache::logged(0))
    }

    /// Where the session stands.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Assignments running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Results sent so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Handles an envelope from the coordinator.
    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Millis, input: WorkerInput) {
        match input {
            WorkerInput::Received(envelope) => self.on_envelope(now, envelope),
            WorkerInput::Finished { assignment, outcome } => self.on_finished(assignment, outcome),
            WorkerInput::Tick => self.on_tick(now),
            WorkerInput::Leave { reason } => self.leave(&reason),
            WorkerInput::HelloSigned { signature } => self.on_signed(&signature),
        }
    }

    /// Answers the challenge: the hello with its token's proof, or an
    /// identity's signature (made here, or asked of the host).
    fn on_challenge(&mut self, nonce: &[u8; 16]) {
        let Some(mut hello) = self.hello.take() else { return };
        let Some(identity) = &self.identity else {
            if let HelloAuth::Token(token) = &hello.auth {
                let proof = crate::auth::hello_proof(token, nonce, &hello.worker_id, hello.max_concurrent);
                hello.auth = HelloAuth::Proof(proof);
            }
            return self.send(Message::Hello(hello));
        };
        let public_key = identity.key.public_key();
        let message = crate::identity::hello_message(nonce, &public_key, &identity.audience, identity.profile.as_ref());
        hello.auth = HelloAuth::Identity {
            public_key,
            audience: identity.audience.clone(),
            signature: [[0; 32]; 2],
            profile: identity.profile.clone(),
        };
        self.hello = Some(hello);
        match &identity.key {
            IdentityKey::Held(key) => {
                let signature = key.sign(&message);
                self.on_signed(&signature);
            }
            IdentityKey::External { .. } => self.outputs.push_back(WorkerOutput::SignHello { message }),
        }
    }

    /// Sends the identity's hello with its signature (once).
    fn on_signed(&mut self, signature: &[u8; 64]) {
        if self.state == SessionState::Closed {
            return;
        }
        let Some(mut hello) = self.hello.take() else { return };
        if let HelloAuth::Identity { signature: s, .. } = &mut hello.auth {
            *s = crate::wire::message::signature_halves(signature);
            self.send(Message::Hello(hello));
        } else {
            // Not waiting for a signature: keep the hello for its challenge.
            self.hello = Some(hello);
        }
    }

    fn on_envelope(&mut self, now: Millis, envelope: Envelope) {
        if self.state == SessionState::Closed {
            return;
        }
        match envelope.message {
            Message::Challenge(c) => self.on_challenge(&c.nonce),
            Message::Welcome(w) => {
                self.heartbeat_every = Millis(u64::from(w.heartbeat_interval_ms.max(100)));
                self.next_heartbeat = Some(now + self.heartbeat_every);
                self.state = SessionState::Working { worker_id: w.worker_id };
            }
            Message::TaskOffer(offer) => self.on_offer(offer, envelope.attachments),
            Message::BenchmarkOffer(offer) => self.on_benchmark(offer),
            Message::BenchmarkChallenge(c) => self.on_benchmark_challenge(&c),
            Message::InputData(d) => self.on_input_data(d, envelope.attachments),
            Message::Cancel(c) => {
                self.benchmarks.remove(&c.assignment);
                if self.fetching.remove(&c.assignment).is_some() {
                    // Never handed to the host: nothing to abort.
                    self.running.remove(&c.assignment);
                } else if self.running.remove(&c.assignment) {
                    self.outputs.push_back(WorkerOutput::Abort(c.assignment));
                }
            }
            Message::Error(e) if e.assignment.is_none() => {
                self.close(format!("coordinator error {:?}: {}", e.code, e.message));
            }
            Message::Goodbye(g) => self.close(format!("coordinator said goodbye: {}", g.reason)),
            Message::PayoutNotice(n) => self.outputs.push_back(WorkerOutput::Paid(n)),
            // Heartbeats, assignment errors and anything a coordinator should
            // not send are ignored: a worker never fails on its input.
            _ => {}
        }
    }

    fn on_offer(&mut self, offer: TaskOffer, attachments: Vec<Bytes>) {
        let assignment = offer.assignment;
        let assembled = inputs::assemble(&offer, attachments, &mut self.cache);
        self.report_cache();
        let assembled = match assembled {
            Ok(a) => a,
            Err(message) => return self.refuse_inputs(assignment, message),
        };
        if self.running.len() >= self.max_concurrent || self.running.contains(&assignment) {
            self.send(Message::TaskDecline(TaskDecline { assignment, reason: "busy".into() }));
            return;
        }
        self.running.insert(assignment);
        self.send(Message::TaskAck(TaskAck { assignment }));
        if !assembled.missing.is_empty() {
            // Asked for at once: fetched while other work runs.
            self.send(Message::InputRequest(InputRequest { assignment, digests: assembled.missing }));
            self.fetching.insert(assignment, Fetching { offer, slots: assembled.slots });
            return;
        }
        let inputs = assembled.slots.into_iter().flatten().collect();
        self.run(offer, inputs);
    }

    /// Hands a taken offer with all its inputs to the host.
    fn run(&mut self, offer: TaskOffer, inputs: Vec<Bytes>) {
        self.outputs.push_back(WorkerOutput::Run {
            assignment: offer.assignment,
            job: offer.job,
            budget: Millis(offer.exec_budget_ms),
            kernel: std::sync::Arc::unwrap_or_clone(offer.kernel),
            inputs,
        });
    }

    /// Tells the host what entered and left the cache.
    fn report_cache(&mut self) {
        for change in self.cache.drain_changes() {
            let out = match change {
                CacheChange::Kept(digest) => match self.cache.peek(&digest) {
                    Some(bytes) => WorkerOutput::Kept { digest, bytes: bytes.clone() },
                    None => continue,
                },
                CacheChange::Dropped(digest) => WorkerOutput::Dropped(digest),
            };
            self.outputs.push_back(out);
        }
    }

    /// Refuses an offer whose inputs are not what it says.
    fn refuse_inputs(&mut self, assignment: AssignmentId, message: String) {
        self.send(Message::Error(ErrorMessage { code: ErrorCode::Malformed, assignment: Some(assignment), message }));
    }

    /// Shared inputs the coordinator sent on request: the waiting offer
    /// runs once it has them all.
    fn on_input_data(&mut self, d: InputData, attachments: Vec<Bytes>) {
        let Some(mut f) = self.fetching.remove(&d.assignment) else { return };
        let data = d.digests.into_iter().zip(attachments);
        let filled = inputs::fill(&f.offer.parts, &mut f.slots, data, &mut self.cache);
        self.report_cache();
        match filled {
            Ok(Some(inputs)) => self.run(f.offer, inputs),
            Ok(None) => {
                self.running.remove(&d.assignment);
                self.refuse_inputs(d.assignment, "the coordinator did not send every missing input".into());
            }
            Err(message) => {
                self.running.remove(&d.assignment);
                self.refuse_inputs(d.assignment, message);
            }
        }
    }

    /// Takes the admission benchmark: generates its input from the seed
    /// and runs it like any task; the output is committed to, not sent.
    fn on_benchmark(&mut self, offer: BenchmarkOffer) {
        let assignment = offer.assignment;
        let Some(n) = benchmark::edge(&offer.kernel) else {
            return self.send(Message::Error(ErrorMessage {
                code: ErrorCode::Malformed,
                assignment: Some(assignment),
                message: "a benchmark is a square matmul".into(),
            }));
        };
        let len = benchmark::output_len(n);
        let chunks = benchmark::chunk_count(len, offer.chunk_bytes);
        if !offer.chunk_bytes.is_multiple_of(4) || chunks > benchmark::MAX_CHUNKS {
            return self.send(Message::Error(ErrorMessage {
                code: ErrorCode::Malformed,
                assignment: Some(assignment),
                message: format!("benchmark chunks of {} bytes do not fit the limits", offer.chunk_bytes),
            }));
        }
        if self.running.len() >= self.max_concurrent || self.running.contains(&assignment) {
            return self.send(Message::TaskDecline(TaskDecline { assignment, reason: "busy".into() }));
        }
        self.running.insert(assignment);
        self.benchmarks.insert(assignment, (offer.chunk_bytes, None));
        self.send(Message::TaskAck(TaskAck { assignment }));
        self.outputs.push_back(WorkerOutput::Run {
            assignment,
            job: JobId::BENCHMARK,
            budget: Millis(offer.deadline_ms),
            kernel: std::sync::Arc::unwrap_or_clone(offer.kernel),
            inputs: benchmark::inputs(n, offer.seed),
        });
    }

    /// Reveals the challenged chunks of a committed benchmark output.
    fn on_benchmark_challenge(&mut self, c: &BenchmarkChallenge) {
        let Some((chunk, Some(output))) = self.benchmarks.remove(&c.assignment) else { return };
        let count = benchmark::chunk_count(output.len() as u64, chunk);
        if c.chunks.iter().any(|&i| i as usize >= count) {
            return self.send(Message::Error(ErrorMessage {
                code: ErrorCode::Malformed,
                assignment: Some(c.assignment),
                message: format!("challenged chunk beyond the {count} committed"),
            }));
        }
        let revealed = c
            .chunks
            .iter()
            .map(|&i| output.slice(benchmark::chunk_range(output.len() as u64, chunk, i as usize)))
            .collect();
        self.outputs.push_back(WorkerOutput::Send(Envelope::task_result(c.assignment, revealed)));
    }

    /// Handles the bytes of one read from the connection: every envelope
    /// they complete, in order. Frames that do not decode end the session
    /// (a worker never guesses at a coordinator's bytes).
    pub fn receive(&mut self, now: Millis, decoder: &mut MessageDecoder, bytes: Bytes) {
        decoder.push_bytes(bytes);
        loop {
            match decoder.next_envelope() {
                Ok(Some(envelope)) => self.on_envelope(now, envelope),
                Ok(None) => return,
                Err(e) => {
                    self.leave(&format!("undecodable frames from the coordinator: {e}"));
                    return;
                }
            }
        }
    }

    /// Reports a finished run: its outputs, or why it failed. Results of
    /// cancelled or unknown assignments are dropped, never sent.
    fn on_finished(&mut self, assignment: AssignmentId, outcome: Result<Vec<Bytes>, String>) {
        if self.state == SessionState::Closed || !self.running.remove(&assignment) {
            return;
        }
        if let Some((chunk, committed)) = self.benchmarks.get_mut(&assignment) {
            let output = match outcome {
                Ok(mut outputs) if outputs.len() == 1 => outputs.remove(0),
                Ok(_) => Bytes::new(),
                Err(message) => {
                    self.benchmarks.remove(&assignment);
                    return self.send(Message::Error(ErrorMessage {
                        code: ErrorCode::ExecutionFailed,
                        assignment: Some(assignment),
                        message,
                    }));
                }
            };
            let chunks = benchmark::chunk_digests(&output, *chunk);
            *committed = Some(output);
            return self.send(Message::BenchmarkCommit(BenchmarkCommit { assignment, chunks }));
        }
        match outcome {
            Ok(outputs) => {
                self.completed += 1;
                self.outputs.push_back(WorkerOutput::Send(Envelope::task_result(assignment, outputs)));
            }
            Err(message) => self.send(Message::Error(ErrorMessage {
                code: ErrorCode::ExecutionFailed,
                assignment: Some(assignment),
                message,
            })),
        }
    }

    /// The longest the host may go without a [`WorkerInput::Tick`]
    /// before the session counts as suspended: three heartbeats (the
    /// coordinator has missed them and may have re-queued the work), and
    /// never less than [`MIN_SUSPENSION`].
    pub fn suspension_limit(&self) -> Millis {
        Millis((self.heartbeat_every.0 * 3).max(MIN_SUSPENSION.0))
    }

    /// Advances the clock: heartbeats when due. The host ticks at each
    /// [`WorkerSession::poll_timeout`]; a much longer gap means the host was suspended, and
    /// past [`WorkerSession::suspension_limit`] the session ends (running
    /// work is aborted, its results never sent) so the host reconnects fresh.
    fn on_tick(&mut self, now: Millis) {
        let last = self.last_tick.replace(now);
        if let (Some(last), SessionState::Working { .. }) = (last, &self.state) {
            let gap = now.since(last);
            if gap > self.suspension_limit() {
                self.close(format!(
                    "suspended for {} s (hidden or frozen); the coordinator has re-queued this worker's work",
                    gap.0 / 1000
                ));
                return;
            }
        }
        if let Some(t) = self.next_heartbeat {
            if now >= t && self.state != SessionState::Closed {
                self.seq += 1;
                let running = self.running.len().min(usize::from(u16::MAX)) as u16;
                self.send(Message::Heartbeat(Heartbeat { seq: self.seq, running }));
                self.next_heartbeat = Some(now + self.heartbeat_every);
            }
        }
    }

    /// When the session next needs a [`WorkerInput::Tick`] (the next
    /// heartbeat); `None` before the coordinator welcomed it. A host sleeps
    /// until then, or until something else happens.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_heartbeat
    }

    /// Ends the session from this side (the user stopped the worker).
    fn leave(&mut self, reason: &str) {
        if self.state != SessionState::Closed {
            self.send(Message::Goodbye(Goodbye { reason: reason.to_owned() }));
            self.close(reason.to_owned());
        }
    }

    fn close(&mut self, reason: String) {
        self.state = SessionState::Closed;
        self.next_heartbeat = None;
        for a in self.fetching.drain().map(|(a, _)| a) {
            self.running.remove(&a);
        }
        let mut running: Vec<AssignmentId> = self.running.drain().collect();
        running.sort();
        for a in running {
            self.outputs.push_back(WorkerOutput::Abort(a));
        }
        self.outputs.push_back(WorkerOutput::Closed { reason });
    }

    fn send(&mut self, message: Message) {
        self.outputs.push_back(WorkerOutput::Send(Envelope::bare(message)));
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        self.outputs.pop_front()
    }
}

/// Reconnection delays of a worker: exponential from 250 ms to 10 s, plus
/// up to half again of random jitter so that workers dropped together (a
/// coordinator restart, a network blip) do not return together.
#[derive(Debug)]
pub struct Backoff {
    base_ms: u64,
    rng: SplitMix64,
}

impl Backoff {
    /// First delay.
    pub const FIRST_MS: u64 = 250;
    /// Longest delay before jitter.
    pub const MAX_MS: u64 = 10_000;

    /// A backoff whose jitter comes from `seed`.
    pub fn new(seed: u64) -> Self {
        Backoff { base_ms: Self::FIRST_MS, rng: SplitMix64::new(seed) }
    }

    /// The next delay, and doubles the one after.
    pub fn next_delay_ms(&mut self) -> u64 {
        let d = self.base_ms + self.rng.below(self.base_ms / 2 + 1);
        self.base_ms = (self.base_ms * 2).min(Self::MAX_MS);
        d
    }

    /// A connection succeeded: start again from the first delay.
    pub fn reset(&mut self) {
        self.base_ms = Self::FIRST_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(7);
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay_ms()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = (Backoff::FIRST_MS << i).min(Backoff::MAX_MS);
            assert!((base..=base + base / 2).contains(d), "{i}: {d}");
        }
        let mut other = Backoff::new(8);
        let theirs: Vec<u64> = (0..8).map(|_| other.next_delay_ms()).collect();
        assert_ne!(delays, theirs, "different workers wait differently");
        b.reset();
        assert!(b.next_delay_ms() < Backoff::FIRST_MS * 2);
    }
}
