//! The messages of the input cache ([`crate::shared_inputs`]): how an
//! offer names a shared input instead of sending it, how a worker asks
//! for one it lacks, and how the coordinator answers.
//!
//! ```text
//!                                 ◄─ TaskOffer(parts: [Attached, Shared{d, attached: false}]) + 1 attachment
//! InputRequest(assignment, [d])   ─►   (d was not in the worker's cache)
//!                                 ◄─ InputData(assignment, [d]) + 1 attachment
//! ```

use serde::{Deserialize, Serialize};

use super::message::AttachmentMeta;
use super::WireError;
use crate::digest::Digest;
use crate::ids::AssignmentId;

/// Where one input of a [`TaskOffer`](super::message::TaskOffer) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferPart {
    /// The next attachment of the offer (one of the task's own parts).
    Attached,
    /// A shared input, named by its
    /// [`part_digest`](crate::shared_inputs::part_digest).
    Shared {
        /// Its digest.
        digest: Digest,
        /// True: it is the next attachment (the worker checks it against
        /// the digest and keeps it in its cache); false: the worker
        /// takes it from its cache (or asks with an [`InputRequest`]).
        attached: bool,
    },
}

/// Checks an offer's parts against its attachments: either no parts (every
/// input attached, in order) or one per input, with exactly as many
/// attached as there are attachments.
pub(super) fn check_parts(parts: &[OfferPart], attachments: usize, max: usize) -> Result<(), WireError> {
    if parts.is_empty() {
        return Ok(());
    }
    if parts.len() > max {
        return Err(WireError::OverLimit { what: "offer parts", value: parts.len() as u64, limit: max as u64 });
    }
    let attached =
        parts.iter().filter(|p| matches!(p, OfferPart::Attached | OfferPart::Shared { attached: true, .. })).count();
    if attached != attachments {
        return Err(WireError::InvalidField {
            field: "parts",
            reason: format!("{attached} parts are attached, the offer declares {attachments} attachments"),
        });
    }
    Ok(())
}

/// The most held inputs a hello may list (the most recently used): the
/// coordinator keeps an entry for each in its model of the worker, so a
/// connection's cost stays small (a few KiB).
pub const MAX_HELD_INPUTS: usize = 256;

/// A shared input a worker holds, as its hello lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldInput {
    /// Its digest.
    pub digest: Digest,
    /// Its length in bytes.
    pub len: u64,
}

/// The worker lacks these shared inputs of an offer it took (its cache
/// dropped them, or it restarted): the coordinator sends them with an
/// [`InputData`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRequest {
    /// The assignment that needs them.
    pub assignment: AssignmentId,
    /// Their digests (each one the offer named).
    pub digests: Vec<Digest>,
}

/// Shared inputs a worker asked for, as attachments in the order of
/// `digests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputData {
    /// The assignment they are for.
    pub assignment: AssignmentId,
    /// Which inputs follow.
    pub digests: Vec<Digest>,
    /// Their lengths.
    pub inputs: Vec<AttachmentMeta>,
}

impl InputData {
    /// Checks that every digest has its attachment.
    pub(super) fn check(&self) -> Result<(), WireError> {
        if self.digests.len() != self.inputs.len() {
            return Err(WireError::InvalidField {
                field: "inputs",
                reason: format!("{} digests for {} attachments", self.digests.len(), self.inputs.len()),
            });
        }
        Ok(())
    }
}
