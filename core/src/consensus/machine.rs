//! The sans-I/O consensus machine.
//!
//! The reference ran each state's behaviour synchronously on its event
//! loop (so a slow provider blocked even `stop`, and a state's timeout only
//! started once its behaviour returned) and died for good on a panic in a
//! provider. Here the machine never waits: every provider call is an
//! [`Action`] the host performs, whose outcome comes back as an
//! [`Input::Reply`] tagged with the request it answers. A transition
//! invalidates every outstanding request, so a late reply from an earlier
//! state is ignored; timeouts are deadlines counted from entering a state;
//! `stop` is honoured at any moment; and a failing provider leads to the
//! documented recovery (re-synchronize), never to a stuck or dead machine.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::table::{next_state, Event, State};
use crate::time::Millis;

/// What every value the machine handles must offer (the reference's
/// `Unique`): an identity and a rank (round / frame number).
pub trait Unique: Clone + fmt::Debug {
    /// Identity, e.g. a hash or a peer id.
    fn identity(&self) -> String;
    /// The round this value belongs to (0 for peer ids).
    fn rank(&self) -> u64;
}

/// How far ahead of the active round messages are kept; later ones are
/// dropped (the reference kept every future round forever).
pub const RANK_WINDOW: u64 = 16;
/// The reference's retry pause after a failed or unfruitful sync.
pub const SYNC_RETRY: Millis = Millis(10_000);
/// The reference's pause before re-announcing liveness.
pub const LIVENESS_RETRY: Millis = Millis(1_000);

/// A provider call for the host to perform. Calls with a `request` expect
/// an [`Input::Reply`] carrying the same number.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<S, V, C> {
    /// Synchronize from `existing`; reply `Synced` or `Failed`.
    Synchronize {
        /// Reply tag.
        request: u64,
        /// The current active state.
        existing: Option<S>,
    },
    /// Who proves next after `prior`; reply `Leaders` or `Failed`.
    NextLeaders {
        /// Reply tag.
        request: u64,
        /// The prior state.
        prior: Option<S>,
    },
    /// Collect mutations for the next round; reply `Collected` or `Failed`.
    Collect {
        /// Reply tag.
        request: u64,
    },
    /// Announce liveness; reply `Done` or `Failed`.
    SendLiveness {
        /// Reply tag.
        request: u64,
        /// The prior state.
        prior: Option<S>,
        /// What was collected.
        collected: C,
    },
    /// Prove the next state (may take long); reply `Proved` or `Failed`.
    ProveNextState {
        /// Reply tag.
        request: u64,
        /// The prior state.
        prior: Option<S>,
        /// What was collected.
        collected: C,
    },
    /// Publish the own proposal; reply `Done` or `Failed`.
    SendProposal {
        /// Reply tag.
        request: u64,
        /// The proposal.
        proposal: S,
    },
    /// Choose among proposals and publish a vote; reply `Voted` or `Failed`.
    DecideAndSendVote {
        /// Reply tag.
        request: u64,
        /// Proposals of the next round by proposer identity.
        proposals: BTreeMap<String, S>,
    },
    /// Whether these votes are a quorum; reply `Quorum` or `Failed`.
    CheckQuorum {
        /// Reply tag.
        request: u64,
        /// Votes of the next round by voter identity.
        votes: BTreeMap<String, V>,
    },
    /// Aggregate into the finalized state; reply `Finalized` or `Failed`.
    FinalizeVotes {
        /// Reply tag.
        request: u64,
        /// Proposals of the next round.
        proposals: BTreeMap<String, S>,
        /// Votes of the next round.
        votes: BTreeMap<String, V>,
    },
    /// Publish a confirmation of the finalized state; reply `Done` or `Failed`.
    SendConfirmation {
        /// Reply tag.
        request: u64,
        /// The finalized state.
        state: S,
    },
    /// A transition happened (for listeners and diagrams).
    Transitioned {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// The event.
        event: Event,
    },
}

/// The outcome of a provider call.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply<S, V, P, C> {
    /// Synchronized to this state.
    Synced(S),
    /// The next leaders, in order.
    Leaders(Vec<P>),
    /// Collected mutations.
    Collected(C),
    /// The proven next state.
    Proved(S),
    /// The chosen proposer and the own vote.
    Voted {
        /// Chosen proposer.
        proposer: P,
        /// Own vote.
        vote: V,
    },
    /// Whether the votes are a quorum.
    Quorum(bool),
    /// The finalized state.
    Finalized(S),
    /// A send succeeded.
    Done,
    /// The call failed (errors are assumed transient).
    Failed(String),
}

/// Something that happened, fed to [`ConsensusMachine::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input<S, V, P, C> {
    /// Start the machine.
    Start,
    /// Stop the machine (honoured in every running state, at once).
    Stop,
    /// Force a re-synchronization.
    InduceSync,
    /// A provider call's outcome.
    Reply {
        /// The request it answers.
        request: u64,
        /// The outcome.
        reply: Reply<S, V, P, C>,
    },
    /// A peer announced liveness.
    Liveness {
        /// Who.
        peer: P,
        /// Its collected data (ranked).
        collected: C,
    },
    /// A peer proposed a state.
    Proposal {
        /// Who.
        peer: P,
        /// The proposal.
        proposal: S,
    },
    /// A vote.
    Vote {
        /// For whose proposal.
        proposer: P,
        /// Who voted.
        voter: P,
        /// The vote.
        vote: V,
    },
    /// A peer confirmed a finalized state.
    Confirmation {
        /// Who.
        peer: P,
        /// The state.
        state: S,
    },
    /// Time passed (deliver at or after [`ConsensusMachine::poll_timeout`]).
    Tick,
}

/// Errors a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The table has no transition for this event in this state.
    #[error("no transition for event {event} in state {state}")]
    NoTransition {
        /// Current state.
        state: State,
        /// Requested event.
        event: Event,
    },
    /// A guard refused the transition.
    #[error("transition guard failed for {from} -> {to} on {event}")]
    GuardFailed {
        /// Current state.
        from: State,
        /// Target state.
        to: State,
        /// The event.
        event: Event,
    },
    /// A voter sent a second, different vote for the same round.
    #[error("received conflicting vote from {voter} for round {rank}")]
    ConflictingVote {
        /// The equivocating voter.
        voter: String,
        /// The round.
        rank: u64,
    },
}

/// What the outstanding request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Await {
    Sync,
    LoadingLeaders,
    Collect,
    CollectingLeaders,
    CollectingLiveness,
    LivenessLeaders,
    LivenessResend,
    Prove,
    Publish,
    Decide,
    Quorum,
    Finalize,
    Confirm,
}

/// Retries scheduled by a behaviour (the reference slept inside its loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    SyncTimeout,
    ResendLiveness,
}

type RoundMap<T> = BTreeMap<u64, BTreeMap<String, T>>;

/// Configuration.
#[derive(Clone, Debug)]
pub struct MachineConfig<P> {
    /// This node.
    pub own: P,
    /// Record own liveness and votes locally (when the pub/sub layer does
    /// not deliver one's own messages).
    pub emit_on_own_sends: bool,
    /// Liveness records and proposals needed to go on (at least 1).
    pub min_provers: usize,
}

/// A predicate a transition must satisfy (the reference's optional guards;
/// it defines none, so none is installed by default).
pub type Guard<S, V, P, C> = fn(&ConsensusMachine<S, V, P, C>) -> bool;

/// The generic consensus state machine (see the module docs).
#[derive(Debug)]
pub struct ConsensusMachine<S, V, P, C> {
    guards: BTreeMap<(State, Event), Guard<S, V, P, C>>,
    cfg: MachineConfig<P>,
    state: State,
    entered: Millis,
    transitions: u64,
    deadline: Option<(Millis, Event)>,
    retry: Option<(Millis, Retry)>,
    request: u64,
    awaiting: Option<Await>,
    active: Option<S>,
    next: Option<S>,
    collected: Option<C>,
    next_provers: Vec<P>,
    chosen: Option<P>,
    liveness: RoundMap<C>,
    proposals: RoundMap<S>,
    votes: RoundMap<V>,
    confirmations: RoundMap<S>,
    raised: VecDeque<Event>,
    actions: VecDeque<Action<S, V, C>>,
}

impl<S: Unique, V: Unique, P: Unique, C: Unique> ConsensusMachine<S, V, P, C> {
    /// A stopped machine; `initial` is the active state it starts from.
    pub fn new(cfg: MachineConfig<P>, initial: Option<S>) -> Self {
        ConsensusMachine {
            guards: BTreeMap::new(),
            cfg,
            state: State::Stopped,
            entered: Millis::ZERO,
            transitions: 0,
            deadline: None,
            retry: None,
            request: 0,
            awaiting: None,
            active: initial,
            next: None,
            collected: None,
            next_provers: Vec::new(),
            chosen: None,
            liveness: BTreeMap::new(),
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            confirmations: BTreeMap::new(),
            raised: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// Installs a guard on the transition taken from `from` on `event`.
    pub fn set_guard(&mut self, from: State, event: Event, guard: Guard<S, V, P, C>) {
        self.guards.insert((from, event), guard);
    }

    /// The transitions that carry a guard (for the diagrams).
    pub fn guarded(&self) -> Vec<(State, Event)> {
        self.guards.keys().copied().collect()
    }

    fn guard_allows(&self, from: State, event: Event) -> bool {
        self.guards.get(&(from, event)).is_none_or(|g| g(self))
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered.
    pub fn state_entered(&self) -> Millis {
        self.entered
    }

    /// Transitions made so far.
    pub fn transition_count(&self) -> u64 {
        self.transitions
    }

    /// The active (last finalized) state.
    pub fn active(&self) -> Option<&S> {
        self.active.as_ref()
    }

    /// Rounds with liveness records (for tests and dashboards).
    pub fn liveness_rounds(&self) -> usize {
        self.liveness.len()
    }

    /// Rounds with confirmations.
    pub fn confirmation_rounds(&self) -> usize {
        self.confirmations.len()
    }

    /// Rounds with any stored message.
    pub fn stored_rounds(&self) -> usize {
        let mut ranks: Vec<u64> = self
            .liveness
            .keys()
            .chain(self.proposals.keys())
            .chain(self.votes.keys())
            .chain(self.confirmations.keys())
            .copied()
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        ranks.len()
    }

    /// The next action for the host.
    pub fn poll_output(&mut self) -> Option<Action<S, V, C>> {
        self.actions.pop_front()
    }

    /// When the host must deliver [`Input::Tick`] at the latest.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.deadline.map(|d| d.0), self.retry.map(|r| r.0)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn active_rank(&self) -> u64 {
        self.active.as_ref().map_or(0, Unique::rank)
    }

    /// Feeds one input that happened at `now`.
    pub fn handle(&mut self, now: Millis, input: Input<S, V, P, C>) -> Result<(), ConsensusError> {
        let requested = match input {
            Input::Start => Some(Event::Start),
            Input::Stop => Some(Event::Stop),
            Input::InduceSync => Some(Event::InduceSync),
            Input::Reply { request, reply } => {
                if request == self.request {
                    if let Some(what) = self.awaiting.take() {
                        self.on_reply(now, what, reply);
                    }
                }
                None
            }
            Input::Liveness { peer, collected } => {
                let rank = collected.rank();
                if self.in_window(rank) {
                    self.liveness.entry(rank).or_default().entry(peer.identity()).or_insert(collected);
                    self.raised.push_back(Event::LivenessCheckReceived);
                    self.recheck_liveness();
                }
                None
            }
            Input::Proposal { peer, proposal } => {
                let rank = proposal.rank();
                if self.in_window(rank) {
                    self.proposals.entry(rank).or_default().entry(peer.identity()).or_insert(proposal);
                    self.raised.push_back(Event::ProposalReceived);
                }
                None
            }
            Input::Vote { proposer: _, voter, vote } => {
                let rank = vote.rank();
                if self.in_window(rank) {
                    let round = self.votes.entry(rank).or_default();
                    let id = voter.identity();
                    if let Some(existing) = round.get(&id) {
                        if existing.identity() != vote.identity() {
                            return Err(ConsensusError::ConflictingVote { voter: id, rank });
                        }
                    } else {
                        round.insert(id, vote);
                    }
                    self.raised.push_back(Event::VoteReceived);
                    self.recheck_quorum();
                }
                None
            }
            Input::Confirmation { peer, state } => {
                let rank = state.rank();
                if self.in_window(rank) {
                    self.confirmations.entry(rank).or_default().entry(peer.identity()).or_insert(state);
                    self.raised.push_back(Event::ConfirmationReceived);
                }
                None
            }
            Input::Tick => {
                self.on_tick(now);
                None
            }
        };
        let result = match requested {
            Some(event) => match next_state(self.state, event) {
                Some(to) if !self.guard_allows(self.state, event) => {
                    Err(ConsensusError::GuardFailed { from: self.state, to, event })
                }
                Some(_) => {
                    self.raised.push_front(event);
                    Ok(())
                }
                None => Err(ConsensusError::NoTransition { state: self.state, event }),
            },
            None => Ok(()),
        };
        self.run_events(now);
        result
    }

    /// Messages of decided rounds and of rounds too far ahead are ignored.
    fn in_window(&self, rank: u64) -> bool {
        let active = self.active_rank();
        rank > active && rank <= active.saturating_add(RANK_WINDOW)
    }

    fn on_tick(&mut self, now: Millis) {
        if let Some((t, retry)) = self.retry {
            if now >= t {
                self.retry = None;
                match retry {
                    Retry::SyncTimeout => self.raised.push_back(Event::SyncTimeout),
                    Retry::ResendLiveness => {
                        if let Some(collected) = self.collected.clone() {
                            let prior = self.active.clone();
                            let request = self.ask(Await::LivenessResend);
                            self.actions.push_back(Action::SendLiveness { request, prior, collected });
                        }
                    }
                }
            }
        }
        if let Some((t, event)) = self.deadline {
            if now >= t {
                self.deadline = None;
                self.raised.push_back(event);
            }
        }
    }

    /// Processes raised events in order; events without a transition in
    /// the current state (e.g. `vote_received`) are dropped, as in the reference.
    fn run_events(&mut self, now: Millis) {
        let mut guard = 0;
        while let Some(event) = self.raised.pop_front() {
            guard += 1;
            if guard > 10_000 {
                // A behaviour loop that never settles would be a bug; stop the machine safely.
                self.raised.clear();
                self.enter(now, State::Stopping, Event::Stop);
                break;
            }
            if let Some(to) = next_state(self.state, event) {
                if self.guard_allows(self.state, event) {
                    self.enter(now, to, event);
                }
            }
        }
    }

    fn ask(&mut self, what: Await) -> u64 {
        self.awaiting = Some(what);
        self.request
    }

    fn enter(&mut self, now: Millis, to: State, event: Event) {
        let from = self.state;
        // Invalidate outstanding requests and behaviour timers of the old state.
        self.request += 1;
        self.awaiting = None;
        self.retry = None;
        self.state = to;
        self.entered = now;
        self.transitions += 1;
        self.deadline = to.timeout().map(|(d, e)| (now + d, e));
        self.actions.push_back(Action::Transitioned { from, to, event });
        self.behave(now);
    }

    fn fail(&mut self) {
        self.raised.push_back(Event::InduceSync);
    }

    /// The state's behaviour, run on every entry (self-transitions included).
    fn behave(&mut self, now: Millis) {
        let r1 = self.active_rank() + 1;
        match self.state {
            State::Stopped | State::Starting => {}
            State::Loading => {
                let existing = self.active.clone();
                let request = self.ask(Await::Sync);
                self.actions.push_back(Action::Synchronize { request, existing });
            }
            State::Collecting => {
                let request = self.ask(Await::Collect);
                self.actions.push_back(Action::Collect { request });
            }
            State::LivenessCheck => {
                if self.next_provers.len() < self.cfg.min_provers {
                    let prior = self.active.clone();
                    let request = self.ask(Await::LivenessLeaders);
                    self.actions.push_back(Action::NextLeaders { request, prior });
                } else {
                    self.check_liveness(now, r1);
                }
            }
            State::Proving => match self.collected.take() {
                None => self.fail(),
                Some(collected) => {
                    let prior = self.active.clone();
                    let request = self.ask(Await::Prove);
                    self.actions.push_back(Action::ProveNextState { request, prior, collected });
                }
            },
            State::Publishing => {
                let own = self.cfg.own.identity();
                if let Some(proposal) = self.proposals.get(&r1).and_then(|m| m.get(&own)).cloned() {
                    let request = self.ask(Await::Publish);
                    self.actions.push_back(Action::SendProposal { request, proposal });
                }
            }
            State::Voting => {
                let proposals = self.proposals.get(&r1).cloned().unwrap_or_default();
                if self.chosen.is_none() {
                    if proposals.len() >= self.cfg.min_provers {
                        let request = self.ask(Await::Decide);
                        self.actions.push_back(Action::DecideAndSendVote { request, proposals });
                    }
                } else {
                    let votes = self.votes.get(&r1).cloned().unwrap_or_default();
                    let request = self.ask(Await::Quorum);
                    self.actions.push_back(Action::CheckQuorum { request, votes });
                }
            }
            State::Finalizing => {
                let proposals = self.proposals.get(&r1).cloned().unwrap_or_default();
                let votes = self.votes.get(&r1).cloned().unwrap_or_default();
                let request = self.ask(Await::Finalize);
                self.actions.push_back(Action::FinalizeVotes { request, proposals, votes });
            }
            State::Verifying => {
                let own = self.cfg.own.identity();
                let confirmed = self.confirmations.get(&r1).is_some_and(|m| m.contains_key(&own));
                match (&self.next, confirmed) {
                    (Some(next), false) => {
                        let state = next.clone();
                        let request = self.ask(Await::Confirm);
                        self.actions.push_back(Action::SendConfirmation { request, state });
                    }
                    (Some(_), true) => self.adopt(),
                    (None, _) => {}
                }
            }
            State::Stopping => self.raised.push_back(Event::CleanupComplete),
        }
    }

    /// Data-driven re-check (the reference only re-checked on its 2 s
    /// timeout, since `liveness_check_received` has no transition): when a
    /// liveness record completes the count, signal at once.
    fn recheck_liveness(&mut self) {
        if self.state != State::LivenessCheck || self.awaiting.is_some() {
            return;
        }
        if self.liveness.get(&(self.active_rank() + 1)).map_or(0, BTreeMap::len) >= self.cfg.min_provers
            && self.next_provers.len() >= self.cfg.min_provers
        {
            self.raised.push_back(Event::ProverSignal);
        }
    }

    /// Data-driven re-check of the quorum when a peer's vote arrives (the
    /// reference polled once per second; the own vote still waits for that
    /// poll, so a lone prover does not spin through rounds).
    fn recheck_quorum(&mut self) {
        if self.state != State::Voting || self.chosen.is_none() || self.awaiting.is_some() {
            return;
        }
        let votes = self.votes.get(&(self.active_rank() + 1)).cloned().unwrap_or_default();
        let request = self.ask(Await::Quorum);
        self.actions.push_back(Action::CheckQuorum { request, votes });
    }

    fn check_liveness(&mut self, now: Millis, r1: u64) {
        let live = self.liveness.get(&r1).map_or(0, BTreeMap::len);
        if live >= self.cfg.min_provers {
            self.raised.push_back(Event::ProverSignal);
        } else {
            self.retry = Some((now + LIVENESS_RETRY, Retry::ResendLiveness));
        }
    }

    /// Makes the finalized state active and prunes every decided round.
    fn adopt(&mut self) {
        let Some(next) = self.next.take() else { return };
        let rank = next.rank();
        self.active = Some(next);
        self.collected = None;
        self.liveness.retain(|r, _| *r > rank);
        self.proposals.retain(|r, _| *r > rank);
        self.votes.retain(|r, _| *r > rank);
        self.confirmations.retain(|r, _| *r > rank);
        self.raised.push_back(Event::VerificationDone);
    }

    fn on_reply(&mut self, now: Millis, what: Await, reply: Reply<S, V, P, C>) {
        let own = self.cfg.own.identity();
        let r1 = self.active_rank() + 1;
        match (what, reply) {
            (_, Reply::Failed(_)) => match what {
                // Loading retries after a pause, as the reference does.
                Await::Sync | Await::LoadingLeaders => self.retry = Some((now + SYNC_RETRY, Retry::SyncTimeout)),
                _ => self.fail(),
            },
            (Await::Sync, Reply::Synced(s)) => {
                self.active = Some(s);
                let prior = self.active.clone();
                let request = self.ask(Await::LoadingLeaders);
                self.actions.push_back(Action::NextLeaders { request, prior });
            }
            (Await::LoadingLeaders, Reply::Leaders(leaders)) => {
                if leaders.iter().any(|p| p.identity() == own) {
                    self.raised.push_back(Event::SyncComplete);
                } else {
                    self.retry = Some((now + SYNC_RETRY, Retry::SyncTimeout));
                }
            }
            (Await::Collect, Reply::Collected(c)) => {
                self.next_provers.clear();
                self.chosen = None;
                self.collected = Some(c);
                let prior = self.active.clone();
                let request = self.ask(Await::CollectingLeaders);
                self.actions.push_back(Action::NextLeaders { request, prior });
            }
            (Await::CollectingLeaders, Reply::Leaders(leaders)) => {
                self.next_provers = leaders;
                match self.collected.clone() {
                    Some(collected) => {
                        let prior = self.active.clone();
                        let request = self.ask(Await::CollectingLiveness);
                        self.actions.push_back(Action::SendLiveness { request, prior, collected });
                    }
                    None => self.fail(),
                }
            }
            (Await::CollectingLiveness, Reply::Done) => {
                if self.cfg.emit_on_own_sends {
                    if let Some(c) = self.collected.clone() {
                        let rank = c.rank();
                        if self.in_window(rank) {
                            self.liveness.entry(rank).or_default().entry(own).or_insert(c);
                        }
                    }
                }
                self.raised.push_back(Event::CollectionDone);
            }
            (Await::LivenessLeaders, Reply::Leaders(leaders)) => {
                self.next_provers = leaders;
                self.check_liveness(now, r1);
            }
            (Await::LivenessResend, Reply::Done) => {}
            (Await::Prove, Reply::Proved(s)) => {
                let rank = s.rank();
                if self.in_window(rank) {
                    self.proposals.entry(rank).or_default().insert(own, s);
                }
                self.raised.push_back(Event::ProofComplete);
            }
            (Await::Publish, Reply::Done) => self.raised.push_back(Event::PublishComplete),
            (Await::Decide, Reply::Voted { proposer, vote }) => {
                self.chosen = Some(proposer);
                if self.cfg.emit_on_own_sends && self.in_window(vote.rank()) {
                    self.votes.entry(vote.rank()).or_default().entry(own).or_insert(vote);
                }
            }
            (Await::Quorum, Reply::Quorum(q)) => {
                let enough = self.proposals.get(&r1).map_or(0, BTreeMap::len) >= self.cfg.min_provers;
                if q && enough {
                    self.raised.push_back(Event::QuorumReached);
                }
            }
            (Await::Finalize, Reply::Finalized(s)) => {
                self.next = Some(s);
                self.raised.push_back(Event::AggregationDone);
            }
            (Await::Confirm, Reply::Done) => {
                if let Some(next) = self.next.clone() {
                    let rank = next.rank();
                    if self.in_window(rank) {
                        self.confirmations.entry(rank).or_default().insert(own, next);
                    }
                }
                self.adopt();
            }
            // A reply of the wrong kind is a host bug: recover by re-synchronizing.
            _ => self.fail(),
        }
    }
}
