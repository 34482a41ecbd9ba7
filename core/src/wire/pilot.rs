//! Pilot-compatible JSON mode: the four frame types of the Pilot task
//! submission protocol (1 SUBMIT, 2 RESULT, 3 STATUS_UPDATE, 4
//! SEND_RESULTS) with UTF-8 JSON payloads, so a Pilot-style client can
//! submit tasks to Shoal and receive results.
//!
//! The JSON is byte-exact with Go's `encoding/json` `Marshal` of the same
//! structs: fields in declaration order, no spaces, `omitempty` fields left
//! out, `[]byte` as standard base64, and `<`, `>`, `&`, U+2028, U+2029
//! escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`.
//!
//! Unlike the reference, every decoded field is bounded (see
//! [`crate::task::limits`]) and every error is typed.

use std::borrow::Cow;
use std::io;

use base64::Engine as _;
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::frame::{encode_frame, Frame, FrameError, FrameType};
use crate::task::{check_result_filename, limits, ResultFileError, TaskStatus};

/// SUBMIT: a task submission (request) and its answer (response).
pub const SUBMIT: FrameType = FrameType(1);
/// RESULT: the legacy result message.
pub const RESULT: FrameType = FrameType(2);
/// STATUS_UPDATE: a task changed status.
pub const STATUS_UPDATE: FrameType = FrameType(3);
/// SEND_RESULTS: the results of a task.
pub const SEND_RESULTS: FrameType = FrameType(4);

/// Submit-response status: accepted.
pub const STATUS_ACCEPTED: u16 = 200;
/// Submit-response status: rejected.
pub const STATUS_REJECTED: u16 = 400;

/// The name Pilot prints for a frame type: `SUBMIT`, `RESULT`,
/// `STATUS_UPDATE`, `SEND_RESULTS` or `UNKNOWN(n)`.
pub fn frame_type_name(t: FrameType) -> Cow<'static, str> {
    match t {
        SUBMIT => "SUBMIT".into(),
        RESULT => "RESULT".into(),
        STATUS_UPDATE => "STATUS_UPDATE".into(),
        SEND_RESULTS => "SEND_RESULTS".into(),
        FrameType(n) => format!("UNKNOWN({n})").into(),
    }
}

/// What can go wrong in the Pilot JSON mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PilotError {
    /// The framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame's type is not the one expected here.
    #[error("expected a {expected} frame, got {got}")]
    WrongFrameType {
        /// Expected type name.
        expected: &'static str,
        /// Received type name.
        got: String,
    },
    /// The payload is not the JSON expected.
    #[error("invalid {what} JSON: {detail}")]
    Json {
        /// Which message.
        what: &'static str,
        /// serde_json's description.
        detail: String,
    },
    /// A field exceeds its size bound.
    #[error("{field} is {len} bytes, the limit is {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A result's file name is not acceptable.
    #[error(transparent)]
    ResultFile(#[from] ResultFileError),
    /// A field's value is not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A message of the Pilot JSON mode.
pub trait PilotMessage: Serialize + DeserializeOwned {
    /// The frame type that carries it.
    const FRAME_TYPE: FrameType;
    /// Its name for errors.
    const NAME: &'static str;
    /// Checks the size bounds of every field.
    fn validate(&self) -> Result<(), PilotError>;
}

fn bound(field: &'static str, len: usize, max: usize) -> Result<(), PilotError> {
    if len > max {
        return Err(PilotError::FieldTooLong { field, len, max });
    }
    Ok(())
}

/// Longest address (`0:0000.0000.0001` style) accepted.
pub const MAX_ADDR_LEN: usize = 64;
/// Longest task id accepted (Pilot ids are 36 characters).
pub const MAX_TASK_ID_LEN: usize = 64;
/// Longest RFC 3339 time stamp accepted.
pub const MAX_TIMESTAMP_LEN: usize = 64;

/// A task submission (SUBMIT request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// 36-character task id chosen by the submitter.
    pub task_id: String,
    /// What to do.
    pub task_description: String,
    /// The submitter's address (self-declared; not trusted).
    pub from_addr: String,
    /// The receiver's address.
    pub to_addr: String,
}

impl PilotMessage for SubmitRequest {
    const FRAME_TYPE: FrameType = SUBMIT;
    const NAME: &'static str = "submit request";
    fn validate(&self) -> Result<(), PilotError> {
        bound("task_id", self.task_id.len(), MAX_TASK_ID_LEN)?;
        bound("task_description", self.task_description.len(), limits::MAX_DESCRIPTION)?;
        bound("from_addr", self.from_addr.len(), MAX_ADDR_LEN)?;
        bound("to_addr", self.to_addr.len(), MAX_ADDR_LEN)
    }
}

/// The answer to a submission (SUBMIT response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The echoed task id.
    pub task_id: String,
    /// [`STATUS_ACCEPTED`] or [`STATUS_REJECTED`].
    pub status: u16,
    /// Human-readable detail.
    pub message: String,
}

impl PilotMessage for SubmitResponse {
    const FRAME_TYPE: FrameType = SUBMIT;
    const NAME: &'static str = "submit response";
    fn validate(&self) -> Result<(), PilotError> {
        bound("task_id", self.task_id.len(), MAX_TASK_ID_LEN)?;
        bound("message", self.message.len(), limits::MAX_JUSTIFICATION)
    }
}

/// A status change (STATUS_UPDATE).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    /// Which task.
    pub task_id: String,
    /// Its new status.
    pub status: TaskStatus,
    /// Why.
    pub justification: String,
}

impl PilotMessage for TaskStatusUpdate {
    const FRAME_TYPE: FrameType = STATUS_UPDATE;
    const NAME: &'static str = "status update";
    fn validate(&self) -> Result<(), PilotError> {
        bound("task_id", self.task_id.len(), MAX_TASK_ID_LEN)?;
        bound("justification", self.justification.len(), limits::MAX_JUSTIFICATION)
    }
}

/// Whether a result is text or a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultType {
    /// `result_text` holds the result.
    Text,
    /// `filename` + `file_data` hold the result.
    File,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn ser_base64<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
}

fn de_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s: Cow<'de, str> = Deserialize::deserialize(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("file_data is not base64: {e}")))
}

/// The results of a task (SEND_RESULTS).
///
/// The three durations are carried for compatibility only: Shoal computes
/// durations from the coordinator's own clock and never trusts these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResultMessage {
    /// Which task.
    pub task_id: String,
    /// Text or file.
    pub result_type: ResultType,
    /// The text result.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result_text: String,
    /// The file name of a file result.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filename: String,
    /// The bytes of a file result.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ser_base64",
        deserialize_with = "de_base64"
    )]
    pub file_data: Vec<u8>,
    /// When the task completed (RFC 3339).
    pub completed_at: String,
    /// Reported idle time (informational).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_idle_ms: u64,
    /// Reported staged time (informational).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_staged_ms: u64,
    /// Reported CPU time (informational).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_cpu_ms: u64,
}

impl PilotMessage for TaskResultMessage {
    const FRAME_TYPE: FrameType = SEND_RESULTS;
    const NAME: &'static str = "task result";
    fn validate(&self) -> Result<(), PilotError> {
        bound("task_id", self.task_id.len(), MAX_TASK_ID_LEN)?;
        bound("completed_at", self.completed_at.len(), MAX_TIMESTAMP_LEN)?;
        match self.result_type {
            ResultType::Text => {
                bound("result_text", self.result_text.len(), limits::MAX_RESULT_TEXT)?;
                if !self.filename.is_empty() || !self.file_data.is_empty() {
                    return Err(PilotError::InvalidField {
                        field: "result_type",
                        reason: "a text result carries no file".into(),
                    });
                }
                Ok(())
            }
            ResultType::File => {
                check_result_filename(&self.filename)?;
                bound("file_data", self.file_data.len(), limits::MAX_RESULT_FILE)
            }
        }
    }
}

/// The legacy result message (RESULT, type 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyTaskResult {
    /// The task's description.
    pub task_description: String,
    /// `success` or `error`.
    pub status: String,
    /// Any JSON.
    pub result: serde_json::Value,
    /// Error detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// When (RFC 3339).
    pub timestamp: String,
}

impl PilotMessage for LegacyTaskResult {
    const FRAME_TYPE: FrameType = RESULT;
    const NAME: &'static str = "legacy result";
    fn validate(&self) -> Result<(), PilotError> {
        bound("task_description", self.task_description.len(), limits::MAX_DESCRIPTION)?;
        bound("status", self.status.len(), 16)?;
        bound("error", self.error.len(), limits::MAX_JUSTIFICATION)?;
        bound("timestamp", self.timestamp.len(), MAX_TIMESTAMP_LEN)
    }
}

/// A frame a Pilot-style client may send to Shoal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PilotInbound {
    /// SUBMIT request.
    Submit(SubmitRequest),
    /// Legacy RESULT.
    LegacyResult(LegacyTaskResult),
    /// STATUS_UPDATE.
    StatusUpdate(TaskStatusUpdate),
    /// SEND_RESULTS.
    SendResults(TaskResultMessage),
}

impl PilotInbound {
    /// Decodes whatever a client sent, by frame type.
    pub fn decode(frame: &Frame) -> Result<Self, PilotError> {
        Ok(match frame.frame_type {
            SUBMIT => PilotInbound::Submit(decode(frame)?),
            RESULT => PilotInbound::LegacyResult(decode(frame)?),
            STATUS_UPDATE => PilotInbound::StatusUpdate(decode(frame)?),
            SEND_RESULTS => PilotInbound::SendResults(decode(frame)?),
            other => {
                return Err(PilotError::WrongFrameType {
                    expected: "SUBMIT, RESULT, STATUS_UPDATE or SEND_RESULTS",
                    got: frame_type_name(other).into_owned(),
                })
            }
        })
    }
}

/// Serialises `v` as Go's `json.Marshal` would.
pub fn to_go_json<T: Serialize>(v: &T) -> Result<Vec<u8>, PilotError> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    v.serialize(&mut ser).map_err(|e| PilotError::Json { what: "outgoing", detail: e.to_string() })?;
    Ok(out)
}

/// Encodes a Pilot message as one frame appended to `out`.
pub fn encode<T: PilotMessage>(msg: &T, out: &mut BytesMut) -> Result<(), PilotError> {
    msg.validate()?;
    let json = to_go_json(msg)?;
    encode_frame(T::FRAME_TYPE, &json, out)?;
    Ok(())
}

/// Decodes a frame as the Pilot message `T`, checking its type and bounds.
pub fn decode<T: PilotMessage>(frame: &Frame) -> Result<T, PilotError> {
    if frame.frame_type != T::FRAME_TYPE {
        return Err(PilotError::WrongFrameType {
            expected: T::NAME,
            got: frame_type_name(frame.frame_type).into_owned(),
        });
    }
    let msg: T = serde_json::from_slice(&frame.payload)
        .map_err(|e| PilotError::Json { what: T::NAME, detail: e.to_string() })?;
    msg.validate()?;
    Ok(msg)
}

/// serde_json formatter that adds Go's HTML-safe escapes.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(esc)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}
