//! A worker's side of shared inputs ([`crate::shared_inputs`]): putting an
//! offer's inputs together from its attachments and the cache, checking
//! them, and waiting for the ones the cache lacked.

use bytes::Bytes;

use crate::digest::Digest;
use crate::shared_inputs::{part_digest, InputCache, SharedLayout};
use crate::wire::message::{OfferPart, TaskOffer};

/// An offer's inputs, put together.
pub(super) struct Assembled {
    /// Every position; None where a shared input must still be fetched.
    pub(super) slots: Vec<Option<Bytes>>,
    /// The shared inputs to ask for (each once).
    pub(super) missing: Vec<Digest>,
}

/// Puts together the inputs of `offer` from its `attachments` and
/// `cache`, checking each attached shared input against its digest
/// (before it enters the cache) and the whole against the offer's
/// checksum. Attached shared inputs are kept in the cache even if the
/// offer is then declined: the coordinator counts them as held.
pub(super) fn assemble(
    offer: &TaskOffer,
    attachments: Vec<Bytes>,
    cache: &mut InputCache<Bytes>,
) -> Result<Assembled, String> {
    if offer.parts.is_empty() {
        if Digest::check_of_parts(attachments.iter().map(|b| &b[..])) != offer.input_check {
            return Err("inputs do not match their checksum".into());
        }
        return Ok(Assembled { slots: attachments.into_iter().map(Some).collect(), missing: Vec::new() });
    }
    let mut attached = attachments.into_iter();
    let (mut slots, mut own, mut missing) = (Vec::with_capacity(offer.parts.len()), Vec::new(), Vec::new());
    let mut positions = Vec::with_capacity(offer.parts.len());
    for part in &offer.parts {
        match *part {
            OfferPart::Attached => {
                let b = attached.next().ok_or("fewer attachments than attached parts")?;
                own.push(b.clone());
                slots.push(Some(b));
                positions.push(None);
            }
            OfferPart::Shared { digest, attached: true } => {
                let b = attached.next().ok_or("fewer attachments than attached parts")?;
                if part_digest(&b) != digest {
                    return Err("a shared input does not match its digest".into());
                }
                cache.insert(digest, b.len() as u64, b.clone());
                slots.push(Some(b));
                positions.push(Some(digest));
            }
            OfferPart::Shared { digest, attached: false } => {
                let held = cache.get(&digest).cloned();
                if held.is_none() && !missing.contains(&digest) {
                    missing.push(digest);
                }
                slots.push(held);
                positions.push(Some(digest));
            }
        }
    }
    let layout = SharedLayout::new(positions).ok_or("parts without a shared input")?;
    if layout.check(Digest::check_of_parts(own.iter().map(|b| &b[..]))) != offer.input_check {
        return Err("inputs do not match their checksum".into());
    }
    Ok(Assembled { slots, missing })
}

/// Fills the slots waiting for shared inputs with `data` (digests and
/// their bytes, each checked), keeping each in `cache`. Returns the full
/// inputs once no slot is empty.
pub(super) fn fill(
    offer_parts: &[OfferPart],
    slots: &mut [Option<Bytes>],
    data: impl IntoIterator<Item = (Digest, Bytes)>,
    cache: &mut InputCache<Bytes>,
) -> Result<Option<Vec<Bytes>>, String> {
    for (digest, b) in data {
        if part_digest(&b) != digest {
            return Err("a shared input does not match its digest".into());
        }
        cache.insert(digest, b.len() as u64, b.clone());
        for (slot, part) in slots.iter_mut().zip(offer_parts) {
            if slot.is_none() && matches!(part, OfferPart::Shared { digest: d, .. } if *d == digest) {
                *slot = Some(b.clone());
            }
        }
    }
    Ok(slots.iter().cloned().collect())
}
