//! Shared inputs on the coordinator's side ([`crate::shared_inputs`]):
//! what an offer sends and what it only names (from its model of each
//! worker's cache), answering a worker that lacks a named input, and the
//! byte counts of jobs with shared inputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::digest::Digest;
use crate::shared_inputs::SharedLayout;
use crate::wire::message::{AttachmentMeta, InputData, InputRequest, OfferPart};
use crate::wire::Message;

use super::registry::WorkerIdx;
use super::types::{ConnId, TaskLayout, TaskSpec};
use super::Coordinator;

/// The inputs of an offer: every part, and where the shared ones sit.
#[derive(Clone, Debug, Default)]
pub(super) struct OfferInputs {
    pub(super) bytes: Vec<Bytes>,
    pub(super) layout: Option<Arc<SharedLayout>>,
}

/// What an open assignment with shared inputs keeps, to answer an
/// [`InputRequest`] (once).
#[derive(Debug)]
pub(super) struct SharedOffer {
    pub(super) layout: Arc<SharedLayout>,
    pub(super) inputs: Vec<Bytes>,
}

/// Bytes of a task's own inputs (those not shared).
pub(super) fn own_bytes(inputs: &[Bytes], layout: Option<&SharedLayout>) -> u64 {
    match layout {
        None => inputs.iter().map(|b| b.len() as u64).sum(),
        Some(l) => l.own(inputs).map(|b| b.len() as u64).sum(),
    }
}

/// The distinct shared inputs `tasks` use, by digest.
pub(super) fn used_shared<'a>(
    tasks: impl IntoIterator<Item = (&'a [Bytes], Option<&'a SharedLayout>)>,
) -> BTreeMap<Digest, Bytes> {
    let mut out = BTreeMap::new();
    for (inputs, layout) in tasks {
        let Some(layout) = layout else { continue };
        for (b, p) in inputs.iter().zip(layout.parts()) {
            if let Some(d) = p {
                out.entry(*d).or_insert_with(|| b.clone());
            }
        }
    }
    out
}

/// [`used_shared`] of a submitted job.
pub(super) fn job_shared(tasks: &[TaskSpec], layouts: &[Option<TaskLayout>]) -> BTreeMap<Digest, Bytes> {
    used_shared(tasks.iter().zip(layouts).map(|(t, l)| (&t.inputs[..], l.as_ref().map(|l| &*l.layout))))
}

impl Coordinator {
    /// The parts and attachments of an offer of `inputs` to worker `w`:
    /// a shared input the model says `w` holds is named, not sent; one it
    /// lacks is sent and, from now on, counted as held. When some input
    /// was only named, the inputs come back to be kept with the
    /// assignment (the worker may ask for them once).
    pub(super) fn offer_parts(
        &mut self,
        w: WorkerIdx,
        inputs: OfferInputs,
    ) -> (Vec<OfferPart>, Vec<Bytes>, Option<Box<SharedOffer>>) {
        let Some(layout) = inputs.layout else {
            self.stats.input_bytes_sent += inputs.bytes.iter().map(|b| b.len() as u64).sum::<u64>();
            return (Vec::new(), inputs.bytes, None);
        };
        let (mut parts, mut attached) = (Vec::with_capacity(inputs.bytes.len()), Vec::new());
        let (mut sent, mut named) = (0u64, 0u64);
        let Some(worker) = self.worker_mut(w) else { return (parts, attached, None) };
        for (b, p) in inputs.bytes.iter().zip(layout.parts()) {
            let len = b.len() as u64;
            match p {
                None => {
                    parts.push(OfferPart::Attached);
                    attached.push(b.clone());
                    sent += len;
                }
                Some(digest) if worker.cache.get(digest).is_some() => {
                    parts.push(OfferPart::Shared { digest: *digest, attached: false });
                    named += len;
                }
                Some(digest) => {
                    worker.cache.insert(*digest, len, ());
                    parts.push(OfferPart::Shared { digest: *digest, attached: true });
                    attached.push(b.clone());
                    sent += len;
                }
            }
        }
        self.stats.input_bytes_sent += sent;
        self.stats.shared_bytes_named += named;
        let kept = (named > 0).then(|| Box::new(SharedOffer { layout, inputs: inputs.bytes }));
        (parts, attached, kept)
    }

    /// A worker lacks shared inputs its offer named: they are sent (each
    /// one the offer named, once per assignment). A request for an
    /// assignment that already ended is dropped (it crossed the cancel);
    /// one for inputs the offer did not name, or a second one, ends the
    /// connection.
    pub(super) fn on_input_request(&mut self, conn: ConnId, w: WorkerIdx, r: InputRequest) {
        let Some(a) = self.assignments.get_mut(&r.assignment) else { return };
        if a.worker != w {
            return self.violation(conn, "input request for another worker's assignment");
        }
        let Some(offer) = a.shared.take() else {
            return self.violation(conn, "input request for an offer that named no shared input, or a second one");
        };
        let mut inputs = Vec::with_capacity(r.digests.len());
        for (i, d) in r.digests.iter().enumerate() {
            let found = offer.layout.parts().iter().position(|p| p.as_ref() == Some(d));
            match found.and_then(|pos| offer.inputs.get(pos)) {
                Some(b) if !r.digests[..i].contains(d) => inputs.push(b.clone()),
                _ => return self.violation(conn, "input request for an input the offer did not name"),
            }
        }
        let len: u64 = inputs.iter().map(|b| b.len() as u64).sum();
        if let Some(worker) = self.worker_mut(w) {
            for (d, b) in r.digests.iter().zip(&inputs) {
                worker.cache.insert(*d, b.len() as u64, ());
            }
        }
        self.stats.input_requests += 1;
        self.stats.input_bytes_sent += len;
        self.stats.shared_bytes_named = self.stats.shared_bytes_named.saturating_sub(len);
        let data = InputData {
            assignment: r.assignment,
            inputs: inputs.iter().map(|b| AttachmentMeta { len: b.len() as u64 }).collect(),
            digests: r.digests,
        };
        self.send(conn, Message::InputData(data), inputs);
    }
}
