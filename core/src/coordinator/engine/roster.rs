//! The worker table as readers see it: every worker, one by id, a sorted
//! page, and a contributor's whole record (connected or not). A page is chosen by sorting small keys of every worker and
//! builds views only for its own rows, so a dashboard reading 50 rows of a
//! 10 000-worker swarm costs the engine little.

use super::registry::{Worker, WorkerState};
use super::{Coordinator, WorkerView};
use crate::ids::WorkerId;

/// What a page of workers is sorted by (ties: by id, ascending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkerSort {
    /// By id.
    #[default]
    Id,
    /// By backend (in the order of [`crate::wire::message::Backend`]).
    Backend,
    /// By measured tier.
    Tier,
    /// By measured speed.
    Mflops,
    /// By credibility.
    Credibility,
    /// By verified work, all time (the leaderboard).
    Agreed,
    /// By agreement in the open epoch (workers without a decided result first).
    EpochAccuracy,
    /// By assignments in flight.
    InFlight,
    /// By the time of the last message.
    LastSeen,
}

/// A contributor's record: what the coordinator keeps of a worker id
/// across connections (an identity's, or an operator token's worker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributorView {
    /// Who.
    pub id: WorkerId,
    /// Connected now.
    pub connected: bool,
    /// Credibility, ppm (0 once slashed).
    pub credibility_ppm: u32,
    /// Verified agreements and passed ringers, all time.
    pub agreed: u64,
    /// Caught lying (for good).
    pub slashed: bool,
    /// Results that agreed with the accepted one in the open epoch.
    pub epoch_agreed: u64,
    /// Paid in settled epochs (worker pool and bounties), base units.
    pub earned: u128,
    /// Settled epochs that paid it.
    pub epochs_paid: u32,
    /// What its identity declared (empty: nothing).
    pub profile: crate::identity::Profile,
    /// Stake it holds, base units.
    pub stake: u128,
}

impl Coordinator {
    /// A contributor's record, if the coordinator knows the id (it is
    /// connected, has a reputation, work this epoch or a payout).
    pub fn contributor(&self, id: &WorkerId) -> Option<ContributorView> {
        let connected = self.by_id.contains_key(id);
        let reputation = self.reputation.get(id);
        let epoch_agreed = self.epoch.work.get(id).map(|w| w.agreed);
        let (earned, epochs_paid) = self.contributors.earned.get(id).copied().unwrap_or_default();
        if !connected && reputation.is_none() && epoch_agreed.is_none() && epochs_paid == 0 {
            return None;
        }
        Some(ContributorView {
            id: id.clone(),
            connected,
            credibility_ppm: self.credibility(id),
            agreed: reputation.map_or(0, |r| r.agreed),
            slashed: reputation.is_some_and(|r| r.slashed),
            epoch_agreed: epoch_agreed.unwrap_or(0),
            earned,
            epochs_paid,
            profile: self.profile(id).cloned().unwrap_or_default(),
            stake: reputation.map_or(0, |r| r.stake),
        })
    }

    /// Every connected worker.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.workers.iter().flatten().map(|w| self.view_of(w)).collect()
    }

    /// One connected worker, by id (what a worker's own page shows,
    /// without copying the whole table).
    pub fn worker_view(&self, id: &WorkerId) -> Option<WorkerView> {
        self.by_id.get(id).and_then(|&idx| self.worker(idx)).map(|w| self.view_of(w))
    }

    /// Workers `offset..offset + limit` of the table sorted by `sort`, and
    /// how many workers there are in all. Only the rows up to the page's
    /// end are ordered (a selection, then a sort of those), so the first
    /// pages cost about one pass over the table.
    pub fn workers_page(
        &self,
        sort: WorkerSort,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<WorkerView>) {
        let mut keyed: Vec<(u64, &Worker)> =
            self.workers.iter().flatten().map(|w| (self.sort_key(w, sort), w)).collect();
        let total = keyed.len();
        let by_id_only = sort == WorkerSort::Id;
        let order = |(ka, a): &(u64, &Worker), (kb, b): &(u64, &Worker)| {
            let key = if descending { kb.cmp(ka) } else { ka.cmp(kb) };
            let id = if descending && by_id_only { b.id.cmp(&a.id) } else { a.id.cmp(&b.id) };
            key.then(id)
        };
        let end = offset.saturating_add(limit).min(total);
        if end < total {
            keyed.select_nth_unstable_by(end, order);
            keyed.truncate(end);
        }
        keyed.sort_unstable_by(order);
        let page = keyed.iter().skip(offset).map(|(_, w)| self.view_of(w)).collect();
        (total, page)
    }

    fn sort_key(&self, w: &Worker, sort: WorkerSort) -> u64 {
        let reputation = || self.reputation.get(&w.id);
        match sort {
            WorkerSort::Id => 0,
            WorkerSort::Backend => w.class().map_or(0, |c| c.backend as u64 + 1),
            WorkerSort::Tier => w.class().map_or(0, |c| c.tier as u64),
            WorkerSort::Mflops => match w.state {
                WorkerState::Active { mflops, .. } => mflops,
                WorkerState::Profiling => 0,
            },
            WorkerSort::Credibility => u64::from(self.credibility(&w.id)),
            WorkerSort::Agreed => reputation().map_or(0, |r| r.agreed),
            WorkerSort::EpochAccuracy => self.epoch_accuracy_ppm(&w.id).map_or(0, |ppm| u64::from(ppm) + 1),
            WorkerSort::InFlight => u64::from(w.in_flight),
            WorkerSort::LastSeen => w.last_seen.0,
        }
    }

    fn epoch_accuracy_ppm(&self, id: &WorkerId) -> Option<u32> {
        self.epoch
            .work
            .get(id)
            .filter(|e| e.agreed + e.outvoted > 0)
            .map(crate::coordinator::rewards::EpochWork::accuracy_ppm)
    }

    pub(super) fn view_of(&self, w: &Worker) -> WorkerView {
        let reputation = self.reputation.get(&w.id);
        WorkerView {
            id: w.id.clone(),
            class: w.class(),
            mflops: match w.state {
                WorkerState::Active { mflops, .. } => Some(mflops),
                WorkerState::Profiling => None,
            },
            credibility_ppm: self.credibility(&w.id),
            in_flight: w.in_flight,
            agreed: reputation.map_or(0, |r| r.agreed),
            last_seen: w.last_seen,
            slashed: reputation.is_some_and(|r| r.slashed),
            epoch_accuracy_ppm: self.epoch_accuracy_ppm(&w.id),
            stake: reputation.map_or(0, |r| r.stake),
        }
    }
}
