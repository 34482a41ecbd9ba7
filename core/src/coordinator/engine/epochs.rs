//! Epochs and the glue to rewards: per-worker work of the open epoch,
//! the records that let a restart resume it, stakes, and closing an epoch
//! into an exact settlement.

use crate::coordinator::recovery::{encode, ns, OpenEpoch, WorkerRecordRef};
use crate::coordinator::rewards::{settle_epoch, EpochSettlement, EpochStakes, EpochWork};
use crate::ids::WorkerId;
use crate::time::Millis;

use super::registry::Reputation;
use super::types::Event;
use super::{Coordinator, Map};

#[derive(Debug)]
pub(super) struct EpochState {
    pub(super) number: u64,
    pub(super) opened: Millis,
    pub(super) verified: u64,
    pub(super) work: Map<WorkerId, EpochWork>,
    pub(super) carried: u128,
    pub(super) forfeited: u128,
    /// Who forfeited how much of `forfeited`.
    pub(super) forfeits: std::collections::BTreeMap<WorkerId, u128>,
    pub(super) history: Vec<EpochSettlement>,
}

/// The workers whose records must be written at the end of the round, in
/// the order they were first touched (deterministic on every platform,
/// and no sort per round).
#[derive(Debug, Default)]
pub(super) struct DirtyWorkers {
    pub(super) order: Vec<WorkerId>,
    pub(super) seen: std::collections::HashSet<WorkerId, foldhash::fast::FixedState>,
}

impl DirtyWorkers {
    pub(super) fn insert(&mut self, id: WorkerId) {
        // One hash per call; the clone is a reference count.
        if self.seen.insert(id.clone()) {
            self.order.push(id);
        }
    }

    /// The workers touched since the last call, in first-touch order.
    pub(super) fn take(&mut self) -> Vec<WorkerId> {
        self.seen.clear();
        std::mem::take(&mut self.order)
    }
}

impl Coordinator {
    /// Records the reputation and open-epoch work of every worker touched
    /// this round, and the open epoch's counters, so a restart resumes them.
    pub(super) fn flush_worker_records(&mut self) {
        let (none, idle) = (Reputation::default(), EpochWork::default());
        for id in self.dirty.take() {
            let record = WorkerRecordRef {
                reputation: self.reputation.get(&id).unwrap_or(&none),
                epoch: self.epoch.number,
                work: self.epoch.work.get(&id).unwrap_or(&idle),
            };
            self.ledger.put(ns::WORKER_STATE, id.as_str().as_bytes().to_vec(), encode(&record));
        }
        if std::mem::take(&mut self.epoch_dirty) {
            let open = OpenEpoch {
                number: self.epoch.number,
                verified: self.epoch.verified,
                carried: self.epoch.carried,
                forfeited: self.epoch.forfeited,
            };
            self.ledger.put(ns::EPOCH_OPEN, Vec::new(), encode(&open));
        }
    }

    /// Attaches the stakes behind the payouts and the open epoch's
    /// forfeits to its settlement: they join its digest and go to the
    /// ledger beside it.
    fn attach_stakes(&mut self, s: &mut EpochSettlement) {
        let held = s
            .payouts
            .iter()
            .filter_map(|p| {
                let stake = self.epoch.work.get(&p.worker).map_or(0, |w| w.stake);
                (stake > 0).then(|| (p.worker.clone(), stake))
            })
            .collect();
        let forfeits: Vec<(WorkerId, u128)> = std::mem::take(&mut self.epoch.forfeits).into_iter().collect();
        for (w, _) in &forfeits {
            self.ledger.delete(ns::FORFEIT_OPEN, w.as_str().as_bytes().to_vec());
        }
        let stakes = EpochStakes { held, forfeits };
        if stakes.is_empty() {
            return;
        }
        let bytes = encode(&stakes);
        s.digest = crate::digest::Digest::of_parts([s.digest.as_bytes().as_slice(), b"stakes", bytes.as_slice()]);
        self.ledger.put(ns::EPOCH_STAKES, s.epoch.to_be_bytes().to_vec(), bytes);
        s.stakes = stakes;
    }

    /// Sets a worker's stake (base units); recorded at the end of the round.
    pub(super) fn stake(&mut self, worker: &WorkerId, stake: u128) {
        self.reputation.entry(worker.clone()).or_default().stake = stake;
        self.epoch.work.entry(worker.clone()).or_default().stake = stake;
        self.dirty.insert(worker.clone());
    }

    pub(super) fn maybe_close_epoch(&mut self, now: Millis, force: bool) {
        let by_count = self.cfg.epoch.every_verified_tasks.is_some_and(|n| self.epoch.verified >= n.max(1));
        let by_time =
            self.cfg.epoch.every.is_some_and(|d| now.since(self.epoch.opened) >= d.max(Millis::from_secs(30)));
        if !(force || by_count || by_time) {
            return;
        }
        let mut s = settle_epoch(
            &self.cfg.rewards,
            self.epoch.number,
            self.epoch.carried,
            self.epoch.forfeited,
            &self.epoch.work.iter().map(|(w, e)| (w.clone(), e.clone())).collect(),
        );
        self.attach_addresses(&mut s);
        self.attach_stakes(&mut s);
        self.epoch_dirty = true;
        // In id order, so the closing round's records do not follow the
        // hash map's layout.
        let mut worked: Vec<WorkerId> = self.epoch.work.keys().cloned().collect();
        worked.sort_unstable();
        for w in worked {
            self.dirty.insert(w);
        }
        self.ledger.put(ns::EPOCH, self.epoch.number.to_be_bytes().to_vec(), encode(&s));
        self.epoch.number += 1;
        self.epoch.opened = now;
        self.epoch.verified = 0;
        self.epoch.carried = s.carried_out;
        self.epoch.forfeited = 0;
        let mut stakes: Vec<(WorkerId, u128)> =
            self.reputation.iter().filter(|(_, r)| r.stake > 0).map(|(w, r)| (w.clone(), r.stake)).collect();
        stakes.sort();
        self.epoch.work.clear();
        for (w, stake) in stakes {
            self.epoch.work.entry(w).or_default().stake = stake;
        }
        self.contributors.credit(&s);
        self.notify_payees(&s);
        self.event(Event::EpochSettled(Box::new(s.clone())));
        self.epoch.history.push(s);
    }
}

/// The open epoch as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenEpochView {
    /// Its number.
    pub number: u64,
    /// When it opened (coordinator clock).
    pub opened: Millis,
    /// Tasks verified in it.
    pub verified: u64,
    /// Workers with work in it.
    pub workers: usize,
    /// Their results that agreed with the accepted one.
    pub agreed: u64,
    /// Their results that were outvoted.
    pub outvoted: u64,
    /// The workers with the most agreed results, most first (ties by id).
    pub leaders: Vec<(WorkerId, EpochWork)>,
}

impl Coordinator {
    /// The open epoch: its counters and its `leaders` first workers.
    pub fn open_epoch(&self, leaders: usize) -> OpenEpochView {
        let (mut agreed, mut outvoted) = (0u64, 0u64);
        for w in self.epoch.work.values() {
            agreed += w.agreed;
            outvoted += w.outvoted;
        }
        let mut top: Vec<(&WorkerId, &EpochWork)> =
            self.epoch.work.iter().filter(|(_, w)| w.agreed + w.outvoted > 0).collect();
        let order =
            |a: &(&WorkerId, &EpochWork), b: &(&WorkerId, &EpochWork)| b.1.agreed.cmp(&a.1.agreed).then(a.0.cmp(b.0));
        if top.len() > leaders {
            top.select_nth_unstable_by(leaders, order);
            top.truncate(leaders);
        }
        top.sort_unstable_by(order);
        OpenEpochView {
            number: self.epoch.number,
            opened: self.epoch.opened,
            verified: self.epoch.verified,
            workers: self.epoch.work.len(),
            agreed,
            outvoted,
            leaders: top.into_iter().map(|(id, w)| (id.clone(), w.clone())).collect(),
        }
    }
}
