//! What contributor identities declare about themselves — a payout
//! address, a display name, a team ([`Profile`]) — kept by worker id,
//! written to the ledger (so it survives restarts), and attached to the
//! payouts of every epoch they earn in. A profile only ever arrives inside
//! an identity's signed hello, so only the key's holder sets or changes it.

use super::Coordinator;
use crate::coordinator::recovery::{encode, ns};
use crate::coordinator::rewards::{EpochSettlement, PayoutAddress};
use crate::digest::Digest;
use crate::identity::Profile;
use crate::ids::WorkerId;

/// The profiles, and the operator's rule for payout addresses.
#[derive(Debug)]
pub(super) struct Contributors {
    /// Declared profiles, by worker id.
    pub(super) profiles: super::Map<WorkerId, Profile>,
    /// `coordinator.payout_pattern`, compiled (None: it does not compile,
    /// so no address is accepted; the host refuses such a configuration).
    payout_pattern: Option<regex_lite::Regex>,
}

impl Contributors {
    /// No profiles yet; addresses must match `pattern` whole.
    pub(super) fn new(pattern: &str) -> Self {
        Contributors {
            profiles: super::Map::default(),
            payout_pattern: crate::coordinator::config::compile_payout_pattern(pattern).ok(),
        }
    }

    /// Whether the coordinator takes this profile (its address matches the
    /// operator's pattern; an empty address declares none).
    pub(super) fn check(&self, p: &Profile) -> Result<(), String> {
        if p.payout.is_empty() {
            return Ok(());
        }
        match &self.payout_pattern {
            Some(re) if re.is_match(&p.payout) => Ok(()),
            Some(re) => Err(format!(
                "payout address {:?} does not match this coordinator's pattern {:?}",
                p.payout,
                re.as_str().trim_start_matches("^(?:").trim_end_matches(")$")
            )),
            None => Err("this coordinator's payout pattern does not compile; no address is accepted".into()),
        }
    }
}

impl Coordinator {
    /// Records what an identity declared, if it changed.
    pub(super) fn declare_profile(&mut self, id: &WorkerId, profile: Profile) {
        if self.contributors.profiles.get(id) == Some(&profile) {
            return;
        }
        self.ledger.put(ns::PROFILE, id.as_str().as_bytes().to_vec(), encode(&profile));
        self.contributors.profiles.insert(id.clone(), profile);
    }

    /// What a contributor declared (None: nothing, or not an identity).
    pub fn profile(&self, id: &WorkerId) -> Option<&Profile> {
        self.contributors.profiles.get(id)
    }

    /// Attaches the payees' addresses to a settlement, as declared when
    /// it closes: they join its digest (what settlement agrees on) and go
    /// to the ledger beside it.
    pub(super) fn attach_addresses(&mut self, s: &mut EpochSettlement) {
        let addresses: Vec<PayoutAddress> = s
            .payouts
            .iter()
            .filter_map(|p| {
                let address = &self.contributors.profiles.get(&p.worker)?.payout;
                (!address.is_empty()).then(|| PayoutAddress { worker: p.worker.clone(), address: address.clone() })
            })
            .collect();
        if addresses.is_empty() {
            return;
        }
        let bytes = encode(&addresses);
        s.digest = Digest::of_parts([s.digest.as_bytes().as_slice(), bytes.as_slice()]);
        self.ledger.put(ns::EPOCH_ADDRESSES, s.epoch.to_be_bytes().to_vec(), bytes);
        s.addresses = addresses;
    }
}
