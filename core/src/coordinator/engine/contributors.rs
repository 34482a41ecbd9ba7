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
    /// Paid in settled epochs (pool and bounties, base units) and how many
    /// epochs paid, by worker id: kept as epochs settle, so records and
    /// leaderboards never rescan the history.
    pub(super) earned: super::Map<WorkerId, (u128, u32)>,
    /// Identities the operator approved (`coordinator.identities = "approval"`).
    pub(super) approved: std::collections::BTreeSet<WorkerId>,
    /// Identities that proved their key and wait for approval, with the
    /// order they asked in (the oldest go first past [`MAX_PENDING`]).
    pending: std::collections::BTreeMap<WorkerId, u64>,
    asked: u64,
}

/// Identities kept waiting for approval at most (fresh keys cost nothing:
/// the list must not grow without bound).
pub(super) const MAX_PENDING: usize = 1_000;

/// What a leaderboard of contributors is sorted by (descending; ties by id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContributorSort {
    /// Verified agreements and passed ringers, all time.
    #[default]
    Agreed,
    /// Paid in settled epochs, all time.
    Earned,
}

/// A team: the contributors that declared it, together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamView {
    /// Its name, as declared.
    pub name: String,
    /// Contributors that declared it.
    pub members: u32,
    /// Their verified work, all time.
    pub agreed: u64,
    /// Their pay in settled epochs, base units.
    pub earned: u128,
}

impl Contributors {
    /// No profiles yet; addresses must match `pattern` whole.
    pub(super) fn new(pattern: &str) -> Self {
        Contributors {
            profiles: super::Map::default(),
            payout_pattern: crate::coordinator::config::compile_payout_pattern(pattern).ok(),
            earned: super::Map::default(),
            approved: std::collections::BTreeSet::new(),
            pending: std::collections::BTreeMap::new(),
            asked: 0,
        }
    }

    /// Whether an identity may join under the approval policy; one that
    /// may not is listed as pending.
    pub(super) fn check_approved(&mut self, id: &WorkerId) -> Result<(), String> {
        if self.approved.contains(id) {
            return Ok(());
        }
        self.asked += 1;
        self.pending.insert(id.clone(), self.asked);
        if self.pending.len() > MAX_PENDING {
            if let Some(oldest) = self.pending.iter().min_by_key(|(_, n)| **n).map(|(id, _)| id.clone()) {
                self.pending.remove(&oldest);
            }
        }
        Err(format!("identity {id} awaits the operator's approval (shoal contributor approve {id})"))
    }

    /// Adds a settled epoch's payouts to the totals.
    pub(super) fn credit(&mut self, s: &EpochSettlement) {
        for p in &s.payouts {
            let e = self.earned.entry(p.worker.clone()).or_default();
            e.0 = e.0.saturating_add(p.amount).saturating_add(p.bounty);
            e.1 += 1;
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
    /// Approves an identity, or withdraws its approval (and disconnects
    /// it); false when it already was so.
    pub(super) fn approve(&mut self, id: &WorkerId, approve: bool) -> bool {
        let key = id.as_str().as_bytes().to_vec();
        if approve {
            self.contributors.pending.remove(id);
            if !self.contributors.approved.insert(id.clone()) {
                return false;
            }
            self.ledger.put(ns::APPROVED, key, Vec::new());
        } else {
            if !self.contributors.approved.remove(id) {
                return false;
            }
            self.ledger.delete(ns::APPROVED, key);
            let conn = self.by_id.get(id).and_then(|&w| self.worker(w)).map(|w| w.conn);
            if let Some(conn) = conn {
                self.staged.push_back(super::Output::Close {
                    conn,
                    reason: "the operator withdrew this identity's approval".into(),
                });
                self.on_disconnect(conn, "approval withdrawn");
            }
        }
        true
    }

    /// Identities waiting for the operator's approval, oldest first.
    pub fn pending_identities(&self) -> Vec<WorkerId> {
        let mut p: Vec<(&WorkerId, &u64)> = self.contributors.pending.iter().collect();
        p.sort_by_key(|(_, n)| **n);
        p.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Whether the operator approved this identity.
    pub fn is_approved(&self, id: &WorkerId) -> bool {
        self.contributors.approved.contains(id)
    }

    /// Records what an identity declared, if it changed.
    pub(super) fn declare_profile(&mut self, id: &WorkerId, profile: Profile) {
        if self.contributors.profiles.get(id) == Some(&profile) {
            return;
        }
        self.ledger.put(ns::PROFILE, id.as_str().as_bytes().to_vec(), encode(&profile));
        self.contributors.profiles.insert(id.clone(), profile);
    }

    /// Tells each connected payee of a settlement what it was paid, its
    /// rank among the payees and its total so far.
    pub(super) fn notify_payees(&mut self, s: &EpochSettlement) {
        let mut ranked: Vec<&crate::coordinator::rewards::Payout> =
            s.payouts.iter().filter(|p| p.amount.saturating_add(p.bounty) > 0).collect();
        ranked.sort_by(|a, b| {
            b.amount.saturating_add(b.bounty).cmp(&a.amount.saturating_add(a.bounty)).then(a.worker.cmp(&b.worker))
        });
        let payees = ranked.len() as u32;
        for (i, p) in ranked.into_iter().enumerate() {
            let Some(conn) = self.by_id.get(&p.worker).and_then(|&w| self.worker(w)).map(|w| w.conn) else {
                continue;
            };
            let notice = crate::wire::message::PayoutNotice {
                epoch: s.epoch,
                amount: p.amount,
                bounty: p.bounty,
                rank: i as u32 + 1,
                payees,
                total: self.contributors.earned.get(&p.worker).map_or(0, |e| e.0),
            };
            self.send(conn, crate::wire::Message::PayoutNotice(notice), vec![]);
        }
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

impl Coordinator {
    /// Contributors `offset..offset + limit` of all time — every worker id
    /// with a record or a payout, connected or not, guests (whose ids last
    /// one connection) aside — sorted by `sort`, and how many there are.
    pub fn contributors_page(
        &self,
        sort: ContributorSort,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<super::ContributorView>) {
        let mut ids: Vec<&WorkerId> = self.reputation.keys().collect();
        ids.extend(self.contributors.earned.keys().filter(|id| !self.reputation.contains_key(*id)));
        ids.retain(|id| !id.as_str().starts_with("guest-"));
        let key = |id: &WorkerId| -> u128 {
            match sort {
                ContributorSort::Agreed => u128::from(self.reputation.get(id).map_or(0, |r| r.agreed)),
                ContributorSort::Earned => self.contributors.earned.get(id).map_or(0, |e| e.0),
            }
        };
        let mut keyed: Vec<(u128, &WorkerId)> = ids.into_iter().map(|id| (key(id), id)).collect();
        let total = keyed.len();
        let order = |a: &(u128, &WorkerId), b: &(u128, &WorkerId)| b.0.cmp(&a.0).then(a.1.cmp(b.1));
        let end = offset.saturating_add(limit).min(total);
        if end < total {
            keyed.select_nth_unstable_by(end, order);
            keyed.truncate(end);
        }
        keyed.sort_unstable_by(order);
        (total, keyed.iter().skip(offset).filter_map(|(_, id)| self.contributor(id)).collect())
    }

    /// The teams contributors declared, most paid first (then most work,
    /// then by name), at most `limit`.
    pub fn teams(&self, limit: usize) -> Vec<TeamView> {
        let mut teams: std::collections::BTreeMap<&str, TeamView> = std::collections::BTreeMap::new();
        for (id, p) in self.contributors.profiles.iter().filter(|(_, p)| !p.team.is_empty()) {
            let t = teams.entry(p.team.as_str()).or_insert_with(|| TeamView {
                name: p.team.clone(),
                members: 0,
                agreed: 0,
                earned: 0,
            });
            t.members += 1;
            t.agreed += self.reputation.get(id).map_or(0, |r| r.agreed);
            t.earned = t.earned.saturating_add(self.contributors.earned.get(id).map_or(0, |e| e.0));
        }
        let mut teams: Vec<TeamView> = teams.into_values().collect();
        teams.sort_by(|a, b| b.earned.cmp(&a.earned).then(b.agreed.cmp(&a.agreed)).then(a.name.cmp(&b.name)));
        teams.truncate(limit);
        teams
    }
}
