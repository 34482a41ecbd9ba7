//! A coordinator agreeing on its epoch settlements through the consensus
//! machine as its single prover.
//!
//! Shoal pays nobody on one component's word: every settled epoch's digest
//! goes through a consensus round before a settler acts on it. With one
//! coordinator the round has one prover (quorum 2f + 1 = 1), and this
//! module is its provider: it answers the machine's calls, holds the
//! machine in `collecting` until a settlement waits, and reports what was
//! agreed. Several coordinators replace it with peers on a network (the
//! machine is the same; see `consensus::sim`, feature `sim`). Sans-I/O like the rest: the
//! host feeds settlements and the time ([`SoloSettlement::handle`]), wakes
//! it at [`SoloSettlement::poll_timeout`], and drains what was agreed
//! ([`SoloSettlement::poll_output`]).

use std::collections::{BTreeMap, VecDeque};

use super::machine::{Action, ConsensusMachine, Input, MachineConfig, Reply, Unique};
use super::table::{Event, State};
use crate::time::Millis;

/// A round's agreed settlement (round 0: nothing agreed yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// Consensus round.
    pub round: u64,
    /// The epoch it settles.
    pub epoch: u64,
    /// The settlement's digest (hex).
    pub digest: String,
}

impl Unique for Agreed {
    fn identity(&self) -> String {
        format!("{}:{}", self.epoch, self.digest)
    }
    fn rank(&self) -> u64 {
        self.round
    }
}

/// A vote for a settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementVote {
    /// Round.
    pub round: u64,
    /// Identity of the settlement voted for.
    pub settlement: String,
}

impl Unique for SettlementVote {
    fn identity(&self) -> String {
        self.settlement.clone()
    }
    fn rank(&self) -> u64 {
        self.round
    }
}

/// The prover: this coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prover(pub String);

impl Unique for Prover {
    fn identity(&self) -> String {
        self.0.clone()
    }
    fn rank(&self) -> u64 {
        0
    }
}

/// The settlement collected for the next round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    /// The round it is for.
    pub round: u64,
    /// The epoch.
    pub epoch: u64,
    /// Its digest.
    pub digest: String,
}

impl Unique for Collected {
    fn identity(&self) -> String {
        format!("{}:{}", self.epoch, self.digest)
    }
    fn rank(&self) -> u64 {
        self.round
    }
}

type Machine = ConsensusMachine<Agreed, SettlementVote, Prover, Collected>;

/// Transitions kept for dashboards.
pub const RECENT_TRANSITIONS: usize = 16;

/// One transition, for dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When.
    pub at: Millis,
    /// From.
    pub from: State,
    /// To.
    pub to: State,
    /// On.
    pub event: Event,
}

/// Something that happened, fed to [`SoloSettlement::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettlementInput {
    /// An epoch was settled: agree on its digest.
    Settled {
        /// The epoch.
        epoch: u64,
        /// Its settlement's digest (hex).
        digest: String,
    },
    /// The time [`SoloSettlement::poll_timeout`] asked for came (early
    /// ticks are harmless).
    Tick,
}

/// The single-prover settlement consensus.
#[derive(Debug)]
pub struct SoloSettlement {
    m: Machine,
    me: Prover,
    /// Settled epochs waiting for agreement, oldest first.
    waiting: VecDeque<(u64, String)>,
    /// A `Collect` call held until a settlement waits.
    held_collect: Option<u64>,
    /// Agreed settlements, oldest first.
    agreed: Vec<Agreed>,
    /// Agreed settlements not yet polled.
    fresh: VecDeque<Agreed>,
    recent: VecDeque<Step>,
    /// Time spent in each state and entries into it, indexed as
    /// [`State::ALL`] (the current stay is added when read).
    time_in: [StateTime; State::ALL.len()],
    /// When the current state was entered, by this wrapper's clock.
    entered: Millis,
}

/// How long the machine was in one state, and how often it entered it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTime {
    /// Entries into the state.
    pub entries: u64,
    /// Time in it, all stays together.
    pub total: Millis,
}

fn index_of(state: State) -> usize {
    State::ALL.iter().position(|s| *s == state).unwrap_or(0)
}

fn genesis() -> Agreed {
    Agreed { round: 0, epoch: 0, digest: String::new() }
}

impl SoloSettlement {
    /// Starts the machine at `now` as prover `name`.
    pub fn new(now: Millis, name: &str) -> Self {
        let me = Prover(name.to_owned());
        let cfg = MachineConfig { own: me.clone(), emit_on_own_sends: true, min_provers: 1 };
        let mut s = SoloSettlement {
            m: ConsensusMachine::new(cfg, Some(genesis())),
            me,
            waiting: VecDeque::new(),
            held_collect: None,
            agreed: Vec::new(),
            fresh: VecDeque::new(),
            recent: VecDeque::new(),
            time_in: [StateTime::default(); State::ALL.len()],
            entered: now,
        };
        s.time_in[index_of(s.m.state())].entries = 1;
        let _ = s.m.handle(now, Input::Start);
        s.drive(now);
        s
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Millis, input: SettlementInput) {
        match input {
            SettlementInput::Settled { epoch, digest } => {
                self.waiting.push_back((epoch, digest));
                if let Some(request) = self.held_collect.take() {
                    let reply = self.collected();
                    let _ = self.m.handle(now, Input::Reply { request, reply });
                }
            }
            SettlementInput::Tick => {
                let _ = self.m.handle(now, Input::Tick);
            }
        }
        self.drive(now);
    }

    /// The next newly agreed settlement, oldest first (each once).
    pub fn poll_output(&mut self) -> Option<Agreed> {
        self.fresh.pop_front()
    }

    /// When the machine next needs a [`SettlementInput::Tick`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.m.poll_timeout()
    }

    /// The machine's state.
    pub fn state(&self) -> State {
        self.m.state()
    }

    /// When it entered that state.
    pub fn state_entered(&self) -> Millis {
        self.m.state_entered()
    }

    /// Transitions so far.
    pub fn transition_count(&self) -> u64 {
        self.m.transition_count()
    }

    /// Agreed settlements, oldest first.
    pub fn agreed(&self) -> &[Agreed] {
        &self.agreed
    }

    /// Settlements waiting for agreement.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The last transitions, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Step> {
        self.recent.iter()
    }

    /// Rounds agreed so far (the last agreed round's number).
    pub fn rounds(&self) -> u64 {
        self.agreed.last().map_or(0, |a| a.round)
    }

    /// Time in each state up to `now` and entries into it, in
    /// [`State::ALL`] order: where the machine spends its time.
    pub fn time_per_state(&self, now: Millis) -> Vec<(State, StateTime)> {
        let current = index_of(self.m.state());
        State::ALL
            .iter()
            .zip(self.time_in)
            .enumerate()
            .map(|(i, (state, mut t))| {
                if i == current {
                    t.total = t.total + now.since(self.entered);
                }
                (*state, t)
            })
            .collect()
    }

    fn collected(&self) -> Reply<Agreed, SettlementVote, Prover, Collected> {
        let round = self.m.active().map_or(0, |a| a.round) + 1;
        match self.waiting.front() {
            Some((epoch, digest)) => Reply::Collected(Collected { round, epoch: *epoch, digest: digest.clone() }),
            None => Reply::Failed("nothing to settle".into()),
        }
    }

    /// Performs the machine's calls until it waits.
    fn drive(&mut self, now: Millis) {
        while let Some(action) = self.m.poll_output() {
            let (request, reply) = match action {
                Action::Transitioned { from, to, event } => {
                    let stay = now.since(self.entered);
                    self.time_in[index_of(from)].total = self.time_in[index_of(from)].total + stay;
                    self.time_in[index_of(to)].entries += 1;
                    self.entered = now;
                    if self.recent.len() == RECENT_TRANSITIONS {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(Step { at: now, from, to, event });
                    self.note_agreement();
                    continue;
                }
                Action::Synchronize { request, existing } => (request, Reply::Synced(existing.unwrap_or_else(genesis))),
                Action::NextLeaders { request, .. } => (request, Reply::Leaders(vec![self.me.clone()])),
                Action::Collect { request } => {
                    if self.waiting.is_empty() {
                        // Answered when a settlement arrives (or dropped when
                        // the state's timeout moves the machine on).
                        self.held_collect = Some(request);
                        continue;
                    }
                    (request, self.collected())
                }
                Action::SendLiveness { request, .. }
                | Action::SendProposal { request, .. }
                | Action::SendConfirmation { request, .. } => (request, Reply::Done),
                Action::ProveNextState { request, prior, collected } => {
                    let round = prior.map_or(0, |p| p.round) + 1;
                    (request, Reply::Proved(Agreed { round, epoch: collected.epoch, digest: collected.digest }))
                }
                Action::DecideAndSendVote { request, proposals } => match proposals.values().next() {
                    Some(p) => {
                        let vote = SettlementVote { round: p.round, settlement: p.identity() };
                        (request, Reply::Voted { proposer: self.me.clone(), vote })
                    }
                    None => (request, Reply::Failed("no proposal".into())),
                },
                Action::CheckQuorum { request, votes } => (request, Reply::Quorum(!votes.is_empty())),
                Action::FinalizeVotes { request, proposals, votes } => (request, finalize(&proposals, &votes)),
            };
            let _ = self.m.handle(now, Input::Reply { request, reply });
        }
    }

    /// Records a newly active round as agreed, and retires its settlement.
    fn note_agreement(&mut self) {
        let Some(active) = self.m.active() else { return };
        if active.round == 0 || self.agreed.last().is_some_and(|a| a.round >= active.round) {
            return;
        }
        if self.waiting.front().is_some_and(|(e, d)| *e == active.epoch && *d == active.digest) {
            self.waiting.pop_front();
        }
        self.agreed.push(active.clone());
        self.fresh.push_back(active.clone());
    }
}

/// The proposal every vote names (a quorum of one), or a failure.
fn finalize(
    proposals: &BTreeMap<String, Agreed>,
    votes: &BTreeMap<String, SettlementVote>,
) -> Reply<Agreed, SettlementVote, Prover, Collected> {
    let Some(vote) = votes.values().next() else { return Reply::Failed("no vote".into()) };
    if votes.values().any(|v| v.settlement != vote.settlement) {
        return Reply::Failed("votes disagree".into());
    }
    match proposals.values().find(|p| p.identity() == vote.settlement) {
        Some(p) => Reply::Finalized(p.clone()),
        None => Reply::Failed("the voted settlement was not proposed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks at every deadline until `until`.
    fn run(s: &mut SoloSettlement, now: &mut Millis, span: Millis) {
        let until = *now + span;
        while let Some(d) = s.poll_timeout() {
            if d > until {
                break;
            }
            *now = d.max(*now);
            s.handle(*now, SettlementInput::Tick);
        }
        *now = until;
        s.handle(*now, SettlementInput::Tick);
    }

    #[test]
    fn every_settlement_is_agreed_in_order_and_the_machine_waits_between() {
        let mut now = Millis(1_000);
        let mut s = SoloSettlement::new(now, "coordinator");
        run(&mut s, &mut now, Millis(4_000));
        assert_eq!(s.state(), State::Collecting, "nothing to settle: it waits");
        assert!(s.agreed().is_empty());
        for (i, epoch) in [1u64, 2, 3].into_iter().enumerate() {
            s.handle(now, SettlementInput::Settled { epoch, digest: format!("digest-{epoch}") });
            run(&mut s, &mut now, Millis(5_000));
            assert_eq!(s.agreed().len(), i + 1, "epoch {epoch} agreed; recent {:?}", s.recent().collect::<Vec<_>>());
        }
        let epochs: Vec<(u64, u64, &str)> = s.agreed().iter().map(|a| (a.round, a.epoch, a.digest.as_str())).collect();
        assert_eq!(epochs, vec![(1, 1, "digest-1"), (2, 2, "digest-2"), (3, 3, "digest-3")]);
        let polled: Vec<u64> = std::iter::from_fn(|| s.poll_output()).map(|a| a.epoch).collect();
        assert_eq!(polled, vec![1, 2, 3], "each agreement is polled once");
        assert_eq!(s.waiting(), 0);
        // Idle for a minute: it keeps cycling harmlessly (collect times out, resyncs), agrees nothing new.
        let before = s.agreed().len();
        run(&mut s, &mut now, Millis::from_mins(1));
        assert_eq!(s.agreed().len(), before);
        assert!(s.transition_count() > 0);
        // Two settlements at once are agreed one round each.
        s.handle(now, SettlementInput::Settled { epoch: 4, digest: "d4".into() });
        s.handle(now, SettlementInput::Settled { epoch: 5, digest: "d5".into() });
        run(&mut s, &mut now, Millis(30_000));
        let last: Vec<u64> = s.agreed().iter().map(|a| a.epoch).collect();
        assert_eq!(last, vec![1, 2, 3, 4, 5]);
        assert!(s.recent().count() <= RECENT_TRANSITIONS);
        // Its statistics: every millisecond since the start is in one
        // state, every transition entered one, and five rounds agreed.
        let times = s.time_per_state(now);
        let total: u64 = times.iter().map(|(_, t)| t.total.0).sum();
        assert_eq!(total, now.since(Millis(1_000)).0);
        let entries: u64 = times.iter().map(|(_, t)| t.entries).sum();
        assert_eq!(entries, s.transition_count() + 1, "the start entered the first state");
        assert_eq!(s.rounds(), 5);
        assert!(times.iter().any(|(st, t)| *st == State::Collecting && t.total.0 > 0));
    }
}
