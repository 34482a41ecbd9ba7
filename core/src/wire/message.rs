//! The worker protocol: typed messages with postcard payloads, and raw
//! binary attachment frames for bulk task inputs and outputs.
//!
//! A message that carries bulk data ([`TaskOffer`], [`TaskResult`]) declares
//! the length of each attachment; exactly that many [`ATTACHMENT`] frames of
//! exactly those lengths follow it. Tensors are never re-encoded: an
//! attachment's bytes are the frame's payload, handed out as [`Bytes`].
//!
//! A conversation (worker side ⇄ coordinator side):
//!
//! ```text
//!                        ◄─ Challenge(nonce)
//! Hello(profile, proof)  ─►   (proof = HMAC keyed by the token, over the nonce)
//!                        ◄─ Welcome | Error(Unauthorized/Refused) + Goodbye
//!                        ◄─ TaskOffer + N attachment frames
//! TaskAck | TaskDecline  ─►
//! Progress*              ─►
//! TaskResult + M attachment frames ─►   (or Error with the assignment)
//!                        ◄─ Cancel (task no longer needed)
//! Heartbeat (either way), Goodbye (either way)
//! ```

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::frame::{checked_len, encode_frame_with_limit, Frame, FrameError, FrameType};
use crate::digest::Digest;
use crate::ids::{AssignmentId, JobId, TaskId, WorkerId};
use crate::kernels::{KernelError, KernelId, KernelSpec};

/// The version of this protocol, sent in [`Hello`] and [`Welcome`].
/// Peers with different versions refuse each other with
/// [`ErrorCode::ProtocolVersion`].
pub const PROTOCOL_VERSION: u16 = 7;

/// Frame type numbers of the worker protocol. 1–4 belong to Pilot
/// ([`super::pilot`]); the worker protocol starts at 16.
pub mod frame_types {
    use super::FrameType;
    /// [`super::Hello`]
    pub const HELLO: FrameType = FrameType(16);
    /// [`super::Welcome`]
    pub const WELCOME: FrameType = FrameType(17);
    /// [`super::TaskOffer`]
    pub const TASK_OFFER: FrameType = FrameType(18);
    /// [`super::TaskAck`]
    pub const TASK_ACK: FrameType = FrameType(19);
    /// [`super::TaskDecline`]
    pub const TASK_DECLINE: FrameType = FrameType(20);
    /// [`super::Progress`]
    pub const PROGRESS: FrameType = FrameType(21);
    /// [`super::TaskResult`]
    pub const TASK_RESULT: FrameType = FrameType(22);
    /// [`super::Heartbeat`]
    pub const HEARTBEAT: FrameType = FrameType(23);
    /// [`super::Cancel`]
    pub const CANCEL: FrameType = FrameType(24);
    /// [`super::ErrorMessage`]
    pub const ERROR: FrameType = FrameType(25);
    /// [`super::Goodbye`]
    pub const GOODBYE: FrameType = FrameType(26);
    /// [`super::Challenge`]
    pub const CHALLENGE: FrameType = FrameType(27);
    /// [`super::PayoutNotice`]
    pub const PAYOUT_NOTICE: FrameType = FrameType(28);
    /// [`super::BenchmarkOffer`]
    pub const BENCHMARK_OFFER: FrameType = FrameType(29);
    /// [`super::BenchmarkCommit`]
    pub const BENCHMARK_COMMIT: FrameType = FrameType(30);
    /// [`super::BenchmarkChallenge`]
    pub const BENCHMARK_CHALLENGE: FrameType = FrameType(31);
    /// Raw bytes of one attachment of the preceding offer or result.
    pub const ATTACHMENT: FrameType = FrameType(32);
    /// [`super::InputRequest`]
    pub const INPUT_REQUEST: FrameType = FrameType(33);
    /// [`super::InputData`]
    pub const INPUT_DATA: FrameType = FrameType(34);
}
pub use frame_types::ATTACHMENT;

pub use super::decoder::MessageDecoder;

pub use super::inputs::{HeldInput, InputData, InputRequest, OfferPart, MAX_HELD_INPUTS};
pub use super::limits::{WireError, WireLimits};

/// The length of one attachment, declared by the message it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Exact length in bytes.
    pub len: u64,
}

/// How a worker proves who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloAuth {
    /// An operator-issued token in the clear: accepted only by a
    /// coordinator that checks no tokens (tests, a closed loopback swarm).
    /// A worker session never sends it: it answers the challenge with
    /// [`HelloAuth::Proof`].
    Token(String),
    /// An anonymous worker (a browser tab) if the operator allows guests.
    Guest,
    /// Proof of the token without the token: [`crate::auth::hello_proof`]
    /// over the connection's [`Challenge`].
    Proof([u8; 32]),
    /// A contributor's own key ([`crate::identity`]): the worker id is the
    /// key's, and the signature covers the connection's [`Challenge`] and
    /// the host the worker dialed.
    Identity {
        /// Ed25519 public key.
        public_key: [u8; 32],
        /// The host (and port, unless the scheme's default) the worker
        /// dialed, as its URL names it.
        audience: String,
        /// Ed25519 signature, in two halves (serde's arrays stop at 32).
        signature: [[u8; 32]; 2],
        /// What the contributor declares (payout address, name, team),
        /// under the same signature; None keeps what it declared before.
        profile: Option<crate::identity::Profile>,
    },
}

/// An Ed25519 signature as [`HelloAuth::Identity`] carries it.
pub fn signature_halves(signature: &[u8; 64]) -> [[u8; 32]; 2] {
    let mut halves = [[0u8; 32]; 2];
    halves[0].copy_from_slice(&signature[..32]);
    halves[1].copy_from_slice(&signature[32..]);
    halves
}

/// The signature [`HelloAuth::Identity`] carries, whole.
pub fn signature_whole(halves: &[[u8; 32]; 2]) -> [u8; 64] {
    let mut whole = [0u8; 64];
    whole[..32].copy_from_slice(&halves[0]);
    whole[32..].copy_from_slice(&halves[1]);
    whole
}

/// The first thing a coordinator sends on a new connection: a nonce the
/// worker's hello must prove its token over (so a hello recorded on one
/// connection is worthless on another).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Fresh for every connection.
    pub nonce: [u8; 16],
}

/// The compute backend a worker runs kernels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Backend {
    /// WebGPU in a browser.
    BrowserWebGpu,
    /// Native Vulkan.
    Vulkan,
    /// Native Metal.
    Metal,
    /// Native Direct3D 12.
    Dx12,
    /// Native OpenGL / GLES.
    Gl,
    /// No GPU: the core's CPU reference implementations.
    Cpu,
}

/// The kind of device behind the backend (as the adapter reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeviceType {
    /// A discrete GPU.
    DiscreteGpu,
    /// A GPU integrated with the CPU.
    IntegratedGpu,
    /// A virtualised GPU.
    VirtualGpu,
    /// A software rasteriser or the CPU itself (lavapipe, SwiftShader).
    Cpu,
    /// Anything else.
    Other,
}

/// What a worker says about its device. Self-reported, so only used to
/// route work and to group replicas by class; speed is measured by the
/// coordinator, never taken from here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Compute backend.
    pub backend: Backend,
    /// Device type.
    pub device_type: DeviceType,
    /// Vendor name or id.
    pub vendor: String,
    /// Adapter name.
    pub name: String,
    /// Driver description.
    pub driver: String,
    /// Largest buffer the device accepts.
    pub max_buffer_bytes: u64,
    /// Largest storage-buffer binding.
    pub max_storage_binding_bytes: u64,
    /// Most invocations per workgroup.
    pub max_workgroup_invocations: u32,
    /// Kernels this worker can run.
    pub kernels: Vec<KernelId>,
}

impl DeviceInfo {
    /// The device of a worker that runs the core's CPU reference kernels
    /// (natively, or in a browser tab without WebGPU): the `Cpu` backend, so
    /// the scheduler compares its float results only with other CPU workers.
    /// Custom WGSL needs a GPU, so only the built-in kernels are declared.
    pub fn cpu_reference(name: &str, driver: &str) -> DeviceInfo {
        DeviceInfo {
            backend: Backend::Cpu,
            device_type: DeviceType::Cpu,
            vendor: "cpu".into(),
            name: name.into(),
            driver: driver.into(),
            max_buffer_bytes: 1 << 30,
            max_storage_binding_bytes: 1 << 28,
            max_workgroup_invocations: 256,
            kernels: vec![KernelId::Sha256, KernelId::MatmulF32, KernelId::Mandelbrot],
        }
    }
}

/// First message of a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the worker.
    pub protocol_version: u16,
    /// Who the worker claims to be (checked against the token).
    pub worker_id: WorkerId,
    /// Token or guest.
    pub auth: HelloAuth,
    /// The device.
    pub device: DeviceInfo,
    /// Worker software and version, for logs.
    pub software: String,
    /// How many assignments the worker runs at once.
    pub max_concurrent: u16,
    /// Bytes of shared inputs the worker keeps between tasks
    /// ([`crate::shared_inputs`]); 0: none, every offer sends them.
    pub cache_bytes: u64,
    /// The shared inputs it holds already (from an earlier connection, or
    /// from disk), least recently used first: offers name them at once.
    pub held: Vec<HeldInput>,
}

/// The coordinator's answer to an accepted [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// [`PROTOCOL_VERSION`] of the coordinator.
    pub protocol_version: u16,
    /// The worker's id as the coordinator knows it (a guest's is assigned).
    pub worker_id: WorkerId,
    /// How often the worker must send a heartbeat.
    pub heartbeat_interval_ms: u32,
    /// Largest frame payload the coordinator accepts.
    pub max_frame_payload: u32,
}

/// One task given to one worker; its inputs follow as attachments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskOffer {
    /// This replica.
    pub assignment: AssignmentId,
    /// The task it replicates.
    pub task: TaskId,
    /// The job the task belongs to.
    pub job: JobId,
    /// What to run (shared with the task that holds it: an offer does not
    /// copy the kernel's parameters or its source).
    pub kernel: std::sync::Arc<KernelSpec>,
    /// Lengths of the input attachments that follow.
    pub inputs: Vec<AttachmentMeta>,
    /// Where each input comes from when some are shared inputs
    /// ([`OfferPart`]); empty: every input is attached, in order.
    pub parts: Vec<OfferPart>,
    /// [`Digest::of_parts`] of the inputs: their name (the key they are
    /// stored under, what results and logs refer to).
    pub input_digest: Digest,
    /// [`Digest::check_of_parts`] of the inputs, computed when the task was
    /// submitted: a worker checks it on receipt, so damage on the way or a
    /// wrong attachment is refused. (A worker cannot tell a consistent lie
    /// of its coordinator from the truth either way; a cryptographic pass
    /// per replica would buy no more than this, at a fraction of the speed.)
    pub input_check: u128,
    /// How long the worker has, from receipt, before the coordinator gives
    /// the task to someone else.
    pub deadline_ms: u64,
    /// How long the worker may execute once it acknowledged the offer, ms
    /// (the coordinator cancels the run then; the worker abandons it).
    pub exec_budget_ms: u64,
}

/// The admission benchmark ([`crate::benchmark`]): a square matmul of
/// `A` by itself, `A` generated by the worker from `seed`. The worker
/// acknowledges it, runs it, and answers with a [`BenchmarkCommit`]; the
/// coordinator's timing stops there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkOffer {
    /// This run.
    pub assignment: AssignmentId,
    /// The kernel (a square matmul).
    pub kernel: std::sync::Arc<KernelSpec>,
    /// Seed of `A`'s elements.
    pub seed: u64,
    /// Size of the chunks the output is committed in.
    pub chunk_bytes: u32,
    /// How long the worker has, from receipt, to commit.
    pub deadline_ms: u64,
}

/// The worker's commitment to a benchmark's output: the digest of each
/// chunk, in order. It keeps the output until challenged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkCommit {
    /// Which run.
    pub assignment: AssignmentId,
    /// BLAKE3 of each chunk.
    pub chunks: Vec<Digest>,
}

/// The chunks of a committed benchmark output the coordinator wants to
/// see; the worker answers with a [`TaskResult`] whose outputs are those
/// chunks, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkChallenge {
    /// Which run.
    pub assignment: AssignmentId,
    /// Chunk indices.
    pub chunks: Vec<u32>,
}

/// The worker takes the assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAck {
    /// Which assignment.
    pub assignment: AssignmentId,
}

/// The worker refuses the assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDecline {
    /// Which assignment.
    pub assignment: AssignmentId,
    /// Why.
    pub reason: String,
}

/// Progress of a running assignment (informational only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Which assignment.
    pub assignment: AssignmentId,
    /// Units done.
    pub done: u32,
    /// Units in all.
    pub total: u32,
}

/// The outputs of an assignment; they follow as attachments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Which assignment.
    pub assignment: AssignmentId,
    /// Lengths of the output attachments that follow.
    pub outputs: Vec<AttachmentMeta>,
    /// [`Digest::of_parts`] of the outputs (the coordinator recomputes it).
    pub output_digest: Digest,
}

/// Liveness, either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increasing sequence number.
    pub seq: u64,
    /// Assignments the sender is running.
    pub running: u16,
}

/// The coordinator no longer needs an assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// Which assignment.
    pub assignment: AssignmentId,
    /// Why.
    pub reason: String,
}

/// Machine-readable class of an [`ErrorMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The token is missing or wrong.
    Unauthorized,
    /// The peers speak different protocol versions.
    ProtocolVersion,
    /// The worker does not pass admission (too slow, too little memory).
    Refused,
    /// A frame or message could not be decoded.
    Malformed,
    /// Something exceeded a size cap.
    TooLarge,
    /// The assignment is unknown or no longer valid.
    UnknownAssignment,
    /// Running the kernel failed (device lost, out of memory, validation).
    ExecutionFailed,
    /// The sender is at capacity.
    Busy,
    /// Anything else.
    Internal,
}

/// An error, either way; with an assignment when it concerns one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The class of error.
    pub code: ErrorCode,
    /// The assignment concerned, if any.
    pub assignment: Option<AssignmentId>,
    /// Human-readable detail.
    pub message: String,
}

/// The sender is closing the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why.
    pub reason: String,
}

/// What a settled epoch paid this worker, sent to it when the epoch
/// closes (the seed tells its agents in heartbeat replies): amounts in
/// base units, its rank among the epoch's payees by amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutNotice {
    /// The epoch.
    pub epoch: u64,
    /// Its share of the worker pool.
    pub amount: u128,
    /// Its share of the bounty (for exposing liars).
    pub bounty: u128,
    /// 1 for the largest payout of the epoch.
    pub rank: u32,
    /// Workers the epoch paid.
    pub payees: u32,
    /// Everything it was paid across settled epochs.
    pub total: u128,
}

/// Every message of the worker protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// See [`Hello`] (boxed: it is the largest message and is sent once per
    /// connection, so every other message stays small).
    Hello(Box<Hello>),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`TaskOffer`].
    TaskOffer(TaskOffer),
    /// See [`TaskAck`].
    TaskAck(TaskAck),
    /// See [`TaskDecline`].
    TaskDecline(TaskDecline),
    /// See [`Progress`].
    Progress(Progress),
    /// See [`TaskResult`].
    TaskResult(TaskResult),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Cancel`].
    Cancel(Cancel),
    /// See [`ErrorMessage`].
    Error(ErrorMessage),
    /// See [`Goodbye`].
    Goodbye(Goodbye),
    /// See [`Challenge`].
    Challenge(Challenge),
    /// See [`PayoutNotice`].
    PayoutNotice(PayoutNotice),
    /// See [`BenchmarkOffer`].
    BenchmarkOffer(BenchmarkOffer),
    /// See [`BenchmarkCommit`].
    BenchmarkCommit(BenchmarkCommit),
    /// See [`BenchmarkChallenge`].
    BenchmarkChallenge(BenchmarkChallenge),
    /// See [`InputRequest`].
    InputRequest(InputRequest),
    /// See [`InputData`].
    InputData(InputData),
}

/// A message with the attachments that travel with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The message.
    pub message: Message,
    /// Its attachments, in declaration order (empty for most messages).
    pub attachments: Vec<Bytes>,
}

impl Envelope {
    /// A message without attachments.
    pub fn bare(message: Message) -> Self {
        Envelope { message, attachments: Vec::new() }
    }

    /// A [`TaskResult`] for `assignment` carrying `outputs`, with their
    /// lengths declared and their digest computed.
    pub fn task_result(assignment: AssignmentId, outputs: Vec<Bytes>) -> Self {
        let result = TaskResult {
            assignment,
            outputs: outputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            output_digest: Digest::of_parts(outputs.iter().map(|b| &b[..])),
        };
        Envelope { message: Message::TaskResult(result), attachments: outputs }
    }

    /// The frames of this envelope: the message, then one frame per
    /// attachment whose payload shares the attachment's bytes (no copy), for
    /// hosts that write frames with vectored I/O.
    pub fn to_frames(&self, limits: &WireLimits) -> Result<Vec<Frame>, WireError> {
        self.check_attachments()?;
        let meta = self.message.encode_payload()?;
        checked_len(meta.len(), limits.max_frame_payload)?;
        let mut frames = Vec::with_capacity(1 + self.attachments.len());
        frames.push(Frame::new(self.message.frame_type(), meta));
        for a in &self.attachments {
            checked_len(a.len(), limits.max_frame_payload)?;
            frames.push(Frame { frame_type: ATTACHMENT, payload: a.clone() });
        }
        Ok(frames)
    }

    /// Appends the encoded envelope (message frame + attachment frames) to `out`.
    pub fn encode_into(&self, limits: &WireLimits, out: &mut BytesMut) -> Result<(), WireError> {
        self.check_attachments()?;
        let meta = self.message.encode_payload()?;
        encode_frame_with_limit(self.message.frame_type(), &meta, limits.max_frame_payload, out)?;
        for a in &self.attachments {
            encode_frame_with_limit(ATTACHMENT, a, limits.max_frame_payload, out)?;
        }
        Ok(())
    }

    fn check_attachments(&self) -> Result<(), WireError> {
        let declared = self.message.declared_attachments();
        if declared.len() != self.attachments.len() {
            return Err(WireError::AttachmentCount { declared: declared.len(), given: self.attachments.len() });
        }
        for (index, (meta, a)) in declared.iter().zip(&self.attachments).enumerate() {
            if meta.len != a.len() as u64 {
                return Err(WireError::AttachmentLength { index, declared: meta.len, actual: a.len() as u64 });
            }
        }
        Ok(())
    }
}

fn encode<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(v).map_err(|e| WireError::Malformed { what, detail: e.to_string() })
}

fn decode<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, WireError> {
    let (v, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed { what, detail: e.to_string() })?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { what, extra: rest.len() });
    }
    Ok(v)
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), WireError> {
    if count > limit {
        return Err(WireError::OverLimit { what, value: count as u64, limit: limit as u64 });
    }
    Ok(())
}

fn check_text(field: &'static str, s: &str, limits: &WireLimits) -> Result<(), WireError> {
    if s.len() > limits.max_text {
        return Err(WireError::OverLimit { what: field, value: s.len() as u64, limit: limits.max_text as u64 });
    }
    Ok(())
}

impl Message {
    /// The frame type that carries this message.
    pub fn frame_type(&self) -> FrameType {
        use frame_types as t;
        match self {
            Message::Hello(_) => t::HELLO,
            Message::Welcome(_) => t::WELCOME,
            Message::TaskOffer(_) => t::TASK_OFFER,
            Message::TaskAck(_) => t::TASK_ACK,
            Message::TaskDecline(_) => t::TASK_DECLINE,
            Message::Progress(_) => t::PROGRESS,
            Message::TaskResult(_) => t::TASK_RESULT,
            Message::Heartbeat(_) => t::HEARTBEAT,
            Message::Cancel(_) => t::CANCEL,
            Message::Error(_) => t::ERROR,
            Message::Goodbye(_) => t::GOODBYE,
            Message::Challenge(_) => t::CHALLENGE,
            Message::PayoutNotice(_) => t::PAYOUT_NOTICE,
            Message::BenchmarkOffer(_) => t::BENCHMARK_OFFER,
            Message::BenchmarkCommit(_) => t::BENCHMARK_COMMIT,
            Message::BenchmarkChallenge(_) => t::BENCHMARK_CHALLENGE,
            Message::InputRequest(_) => t::INPUT_REQUEST,
            Message::InputData(_) => t::INPUT_DATA,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::TaskOffer(_) => "task offer",
            Message::TaskAck(_) => "task ack",
            Message::TaskDecline(_) => "task decline",
            Message::Progress(_) => "progress",
            Message::TaskResult(_) => "task result",
            Message::Heartbeat(_) => "heartbeat",
            Message::Cancel(_) => "cancel",
            Message::Error(_) => "error",
            Message::Goodbye(_) => "goodbye",
            Message::Challenge(_) => "challenge",
            Message::PayoutNotice(_) => "payout notice",
            Message::BenchmarkOffer(_) => "benchmark offer",
            Message::BenchmarkCommit(_) => "benchmark commit",
            Message::BenchmarkChallenge(_) => "benchmark challenge",
            Message::InputRequest(_) => "input request",
            Message::InputData(_) => "input data",
        }
    }

    /// The attachments this message says follow it.
    pub fn declared_attachments(&self) -> &[AttachmentMeta] {
        match self {
            Message::TaskOffer(o) => &o.inputs,
            Message::TaskResult(r) => &r.outputs,
            Message::InputData(d) => &d.inputs,
            _ => &[],
        }
    }

    /// The postcard payload of this message.
    pub fn encode_payload(&self) -> Result<Vec<u8>, WireError> {
        let what = self.name();
        match self {
            Message::Hello(m) => encode(what, m),
            Message::Welcome(m) => encode(what, m),
            Message::TaskOffer(m) => encode(what, m),
            Message::TaskAck(m) => encode(what, m),
            Message::TaskDecline(m) => encode(what, m),
            Message::Progress(m) => encode(what, m),
            Message::TaskResult(m) => encode(what, m),
            Message::Heartbeat(m) => encode(what, m),
            Message::Cancel(m) => encode(what, m),
            Message::Error(m) => encode(what, m),
            Message::Goodbye(m) => encode(what, m),
            Message::Challenge(m) => encode(what, m),
            Message::PayoutNotice(m) => encode(what, m),
            Message::BenchmarkOffer(m) => encode(what, m),
            Message::BenchmarkCommit(m) => encode(what, m),
            Message::BenchmarkChallenge(m) => encode(what, m),
            Message::InputRequest(m) => encode(what, m),
            Message::InputData(m) => encode(what, m),
        }
    }

    /// Decodes the payload of a frame of type `frame_type` and checks every
    /// field against `limits`. Attachment frames are not messages.
    pub fn decode(frame_type: FrameType, payload: &[u8], limits: &WireLimits) -> Result<Message, WireError> {
        use frame_types as t;
        let m = match frame_type {
            t::HELLO => Message::Hello(decode("hello", payload)?),
            t::WELCOME => Message::Welcome(decode("welcome", payload)?),
            t::TASK_OFFER => Message::TaskOffer(decode("task offer", payload)?),
            t::TASK_ACK => Message::TaskAck(decode("task ack", payload)?),
            t::TASK_DECLINE => Message::TaskDecline(decode("task decline", payload)?),
            t::PROGRESS => Message::Progress(decode("progress", payload)?),
            t::TASK_RESULT => Message::TaskResult(decode("task result", payload)?),
            t::HEARTBEAT => Message::Heartbeat(decode("heartbeat", payload)?),
            t::CANCEL => Message::Cancel(decode("cancel", payload)?),
            t::ERROR => Message::Error(decode("error", payload)?),
            t::GOODBYE => Message::Goodbye(decode("goodbye", payload)?),
            t::CHALLENGE => Message::Challenge(decode("challenge", payload)?),
            t::PAYOUT_NOTICE => Message::PayoutNotice(decode("payout notice", payload)?),
            t::BENCHMARK_OFFER => Message::BenchmarkOffer(decode("benchmark offer", payload)?),
            t::BENCHMARK_COMMIT => Message::BenchmarkCommit(decode("benchmark commit", payload)?),
            t::BENCHMARK_CHALLENGE => Message::BenchmarkChallenge(decode("benchmark challenge", payload)?),
            t::INPUT_REQUEST => Message::InputRequest(decode("input request", payload)?),
            t::INPUT_DATA => Message::InputData(decode("input data", payload)?),
            t::ATTACHMENT => return Err(WireError::UnexpectedAttachment),
            other => return Err(WireError::UnknownFrameType(other.0)),
        };
        m.validate(limits)?;
        Ok(m)
    }

    /// Checks every peer-controlled field against `limits`.
    pub fn validate(&self, limits: &WireLimits) -> Result<(), WireError> {
        let declared = self.declared_attachments();
        if declared.len() > limits.max_attachments {
            return Err(WireError::OverLimit {
                what: "attachment count",
                value: declared.len() as u64,
                limit: limits.max_attachments as u64,
            });
        }
        let mut total: u64 = 0;
        for a in declared {
            if a.len > u64::from(limits.max_frame_payload) {
                return Err(FrameError::TooLarge { declared: a.len, limit: limits.max_frame_payload }.into());
            }
            total = total.saturating_add(a.len);
        }
        if total > limits.max_attachment_bytes {
            return Err(WireError::OverLimit {
                what: "attachment bytes",
                value: total,
                limit: limits.max_attachment_bytes,
            });
        }
        match self {
            Message::Hello(h) => {
                check_text("software", &h.software, limits)?;
                check_text("vendor", &h.device.vendor, limits)?;
                check_text("device name", &h.device.name, limits)?;
                check_text("driver", &h.device.driver, limits)?;
                match &h.auth {
                    HelloAuth::Token(t) => check_text("token", t, limits)?,
                    HelloAuth::Identity { audience, profile, .. } => {
                        check_text("audience", audience, limits)?;
                        if let Some(p) = profile {
                            check_text("payout address", &p.payout, limits)?;
                            check_text("display name", &p.name, limits)?;
                            check_text("team", &p.team, limits)?;
                            p.check()
                                .map_err(|e| WireError::InvalidField { field: "profile", reason: e.to_string() })?;
                        }
                        if audience.len() > crate::identity::MAX_AUDIENCE_LEN {
                            return Err(WireError::OverLimit {
                                what: "audience length",
                                value: audience.len() as u64,
                                limit: crate::identity::MAX_AUDIENCE_LEN as u64,
                            });
                        }
                    }
                    HelloAuth::Guest | HelloAuth::Proof(_) => {}
                }
                check_count("held inputs", h.held.len(), MAX_HELD_INPUTS)?;
                if h.device.kernels.len() > limits.max_kernels {
                    return Err(WireError::OverLimit {
                        what: "kernel count",
                        value: h.device.kernels.len() as u64,
                        limit: limits.max_kernels as u64,
                    });
                }
                Ok(())
            }
            Message::TaskOffer(o) => {
                super::inputs::check_parts(&o.parts, o.inputs.len(), limits.max_attachments)?;
                o.kernel
                    .validate()
                    .map_err(|e: KernelError| WireError::InvalidField { field: "kernel", reason: e.to_string() })
            }
            Message::InputRequest(r) => check_count("requested inputs", r.digests.len(), limits.max_attachments),
            Message::InputData(d) => d.check(),
            Message::BenchmarkOffer(o) => o
                .kernel
                .validate()
                .map_err(|e: KernelError| WireError::InvalidField { field: "kernel", reason: e.to_string() }),
            Message::BenchmarkCommit(c) => {
                check_count("benchmark chunks", c.chunks.len(), crate::benchmark::MAX_CHUNKS)
            }
            Message::BenchmarkChallenge(c) => check_count("challenged chunks", c.chunks.len(), limits.max_attachments),
            Message::TaskDecline(d) => check_text("reason", &d.reason, limits),
            Message::Cancel(c) => check_text("reason", &c.reason, limits),
            Message::Error(e) => check_text("message", &e.message, limits),
            Message::Goodbye(g) => check_text("reason", &g.reason, limits),
            Message::Welcome(_)
            | Message::Challenge(_)
            | Message::PayoutNotice(_)
            | Message::TaskAck(_)
            | Message::Progress(_)
            | Message::TaskResult(_)
            | Message::Heartbeat(_) => Ok(()),
        }
    }
}
