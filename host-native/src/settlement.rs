//! Settlement consensus: every settled epoch's digest goes through the
//! core's consensus machine (this coordinator as its single prover,
//! [`SoloSettlement`]) before a settler acts on it. This task only feeds it
//! the engine's settlements and the time, and publishes where it stands.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::consensus::solo::{Agreed, SettlementInput, SoloSettlement, StateTime, Step};
use shoal_core::consensus::State;
use shoal_core::coordinator::Event;
use shoal_core::Millis;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::engine::{Clock, TimedEvent};

/// Agreed settlements kept for readers.
const AGREED_KEPT: usize = 20;

/// Where the settlement consensus stands, for the API.
#[derive(Clone, Debug)]
pub struct ConsensusView {
    /// The machine's state.
    pub state: State,
    /// When it entered it (ms since the Unix epoch).
    pub state_entered: Millis,
    /// Transitions since the start.
    pub transitions: u64,
    /// Settlements waiting for agreement.
    pub waiting: usize,
    /// The last agreed settlements, oldest first.
    pub agreed: Vec<Agreed>,
    /// The last transitions, oldest first.
    pub recent: Vec<Step>,
    /// Rounds agreed.
    pub rounds: u64,
    /// Time in each state and entries into it, as of `as_of`.
    pub time_per_state: Vec<(State, StateTime)>,
    /// When the view was taken (a reader adds the time since to the current state).
    pub as_of: Millis,
    /// Where this run's settled epochs stand with the settler, by epoch
    /// (the last [`SETTLEMENTS_KEPT`]).
    pub settlements: std::collections::BTreeMap<u64, SettlementState>,
}

/// Epochs whose settlement state is kept in the view.
pub const SETTLEMENTS_KEPT: usize = 1_000;

/// Where a settled epoch stands with the settler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettlementState {
    /// Waiting for the consensus to agree, or being written.
    Pending,
    /// Its signed file is written.
    Settled,
    /// The settler gave up after its retries (see the log).
    Failed,
}

impl SettlementState {
    /// As the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementState::Pending => "pending",
            SettlementState::Settled => "settled",
            SettlementState::Failed => "failed",
        }
    }
}

/// Records an epoch's settlement state in the shared view.
pub fn set_state(view: &SharedConsensus, epoch: u64, state: SettlementState) {
    if let Ok(mut v) = view.lock() {
        v.settlements.insert(epoch, state);
        while v.settlements.len() > SETTLEMENTS_KEPT {
            v.settlements.pop_first();
        }
    }
}

/// The view, shared with the API.
pub type SharedConsensus = Arc<Mutex<ConsensusView>>;

fn view_of(s: &SoloSettlement, now: Millis) -> ConsensusView {
    let agreed = s.agreed();
    ConsensusView {
        rounds: s.rounds(),
        time_per_state: s.time_per_state(now),
        as_of: now,
        state: s.state(),
        state_entered: s.state_entered(),
        transitions: s.transition_count(),
        waiting: s.waiting(),
        agreed: agreed[agreed.len().saturating_sub(AGREED_KEPT)..].to_vec(),
        recent: s.recent().copied().collect(),
        settlements: std::collections::BTreeMap::new(),
    }
}

/// Settlements waiting for agreement kept at most (older ones are dropped
/// unsettled, with a warning).
const WAITING_KEPT: usize = 1_000;

/// Starts the settlement consensus on the engine's events; each agreed
/// settlement goes to the settler. It ends when `stop` turns true or the
/// engine goes away.
pub fn spawn(
    mut events: broadcast::Receiver<TimedEvent>,
    mut stop: watch::Receiver<bool>,
    settler: Option<crate::settler::Settler>,
) -> (SharedConsensus, JoinHandle<()>) {
    // The machine's deadlines need a clock that never steps back.
    let mut clock = Clock::resume(Millis(0));
    let mut solo = SoloSettlement::new(clock.now(), "coordinator");
    let shared = Arc::new(Mutex::new(view_of(&solo, clock.now())));
    let publish = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        let mut waiting: std::collections::BTreeMap<u64, shoal_core::coordinator::rewards::EpochSettlement> =
            std::collections::BTreeMap::new();
        loop {
            let now = clock.now();
            let wait = solo.poll_timeout().map_or(Duration::from_mins(1), |d| Duration::from_millis(d.since(now).0));
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(TimedEvent { event: Event::EpochSettled(s), .. }) => {
                        tracing::info!(epoch = s.epoch, digest = %s.digest, "settlement sent to consensus");
                        solo.handle(clock.now(), SettlementInput::Settled { epoch: s.epoch, digest: s.digest.to_hex() });
                        set_state(&publish, s.epoch, SettlementState::Pending);
                        waiting.insert(s.epoch, *s);
                        while waiting.len() > WAITING_KEPT {
                            if let Some((epoch, _)) = waiting.pop_first() {
                                tracing::warn!(epoch, "settlement dropped unsettled: too many wait for agreement");
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "settlement consensus lagged behind the event stream");
                    }
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(wait) => solo.handle(clock.now(), SettlementInput::Tick),
                _ = stop.changed() => {
                    if *stop.borrow() {
                        return;
                    }
                }
            }
            while let Some(a) = solo.poll_output() {
                tracing::info!(round = a.round, epoch = a.epoch, digest = %a.digest, "settlement agreed");
                let Some(settled) = waiting.remove(&a.epoch).filter(|s| s.digest.to_hex() == a.digest) else {
                    continue;
                };
                if let Some(settler) = settler.clone() {
                    let view = Arc::clone(&publish);
                    tokio::spawn(async move {
                        let epoch = settled.epoch;
                        let done = crate::settler::settle(settler, settled).await;
                        set_state(&view, epoch, if done { SettlementState::Settled } else { SettlementState::Failed });
                    });
                }
            }
            let view = view_of(&solo, clock.now());
            if let Ok(mut v) = publish.lock() {
                let settlements = std::mem::take(&mut v.settlements);
                *v = ConsensusView { settlements, ..view };
            }
        }
    });
    (shared, task)
}
