//! The states, events, transition table and timeouts of the consensus
//! machine (the reference's v2.1.0.4 table: 11 states, 37 transitions),
//! and diagrams rendered from the table itself so they can never drift.

use core::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// The machine's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// Not running.
    Stopped,
    /// Starting up.
    Starting,
    /// Synchronizing with the network.
    Loading,
    /// Collecting mutations for the next round.
    Collecting,
    /// Waiting for enough provers to announce liveness.
    LivenessCheck,
    /// Proving the next state (leaders).
    Proving,
    /// Publishing the own proposal.
    Publishing,
    /// Voting on proposals.
    Voting,
    /// Aggregating votes into the finalized state.
    Finalizing,
    /// Confirming and adopting the finalized state.
    Verifying,
    /// Shutting down.
    Stopping,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 11] = [
        State::Stopped,
        State::Starting,
        State::Loading,
        State::Collecting,
        State::LivenessCheck,
        State::Proving,
        State::Publishing,
        State::Voting,
        State::Finalizing,
        State::Verifying,
        State::Stopping,
    ];

    /// The reference's name (`liveness_check`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Loading => "loading",
            State::Collecting => "collecting",
            State::LivenessCheck => "liveness_check",
            State::Proving => "proving",
            State::Publishing => "publishing",
            State::Voting => "voting",
            State::Finalizing => "finalizing",
            State::Verifying => "verifying",
            State::Stopping => "stopping",
        }
    }

    /// What the machine does in the state, for people (the markdown table).
    pub fn note(self) -> &'static str {
        match self {
            State::Stopped => "Not running; `start` leaves it.",
            State::Starting => "Starting up: the host initialises its providers.",
            State::Loading => "Synchronising with the network until caught up (or the long sync timeout).",
            State::Collecting => "Collecting mutations for the next round; a quiet round induces a sync.",
            State::LivenessCheck => "Waiting for enough provers to announce they are alive.",
            State::Proving => "Leaders prove the next state from the collected mutations.",
            State::Publishing => "Publishing the own proposal to the other provers.",
            State::Voting => "Voting on proposals until a quorum agrees (or the vote times out).",
            State::Finalizing => "Aggregating the votes into the finalised state.",
            State::Verifying => "Confirming and adopting the finalised state, then collecting again.",
            State::Stopping => "Shutting down: cleanup, then stopped.",
        }
    }

    /// How long the machine may stay before the state's timeout event fires.
    pub fn timeout(self) -> Option<(Millis, Event)> {
        Some(match self {
            State::Stopped => return None,
            State::Starting => (Millis::from_secs(1), Event::InitComplete),
            State::Loading => (Millis::from_mins(600), Event::SyncTimeout),
            State::Collecting => (Millis::from_secs(10), Event::InduceSync),
            State::LivenessCheck => (Millis::from_secs(2), Event::LivenessTimeout),
            State::Proving => (Millis::from_secs(120), Event::PublishTimeout),
            State::Publishing => (Millis::from_secs(1), Event::PublishTimeout),
            State::Voting => (Millis::from_secs(1), Event::VotingTimeout),
            State::Finalizing => (Millis::from_secs(1), Event::AggregationTimeout),
            State::Verifying => (Millis::from_secs(1), Event::VerificationTimeout),
            State::Stopping => (Millis::from_secs(30), Event::CleanupComplete),
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Event {
    /// Start the machine.
    Start,
    /// Stop the machine (honoured in every running state).
    Stop,
    /// Synchronization gave up for now; retry.
    SyncTimeout,
    /// Something failed: go back to synchronizing.
    InduceSync,
    /// Synchronized, and this node is among the next provers.
    SyncComplete,
    /// Initialization finished.
    InitComplete,
    /// Mutations collected and liveness announced.
    CollectionDone,
    /// A liveness announcement arrived (no transition: data only).
    LivenessCheckReceived,
    /// The liveness wait timed out; check again.
    LivenessTimeout,
    /// Enough provers are live.
    ProverSignal,
    /// The own proof is ready.
    ProofComplete,
    /// The own proposal was published.
    PublishComplete,
    /// Proving or publishing took too long; go vote.
    PublishTimeout,
    /// A proposal arrived.
    ProposalReceived,
    /// A vote arrived (no transition: data only).
    VoteReceived,
    /// Enough votes agree.
    QuorumReached,
    /// No quorum yet; check again.
    VotingTimeout,
    /// Votes aggregated into the finalized state.
    AggregationDone,
    /// Aggregation took too long; retry.
    AggregationTimeout,
    /// A confirmation arrived (no transition: data only).
    ConfirmationReceived,
    /// The finalized state was adopted.
    VerificationDone,
    /// Verification took too long; retry.
    VerificationTimeout,
    /// Shutdown finished.
    CleanupComplete,
}

impl Event {
    /// The reference's name (`sync_complete`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Stop => "stop",
            Event::SyncTimeout => "sync_timeout",
            Event::InduceSync => "induce_sync",
            Event::SyncComplete => "sync_complete",
            Event::InitComplete => "init_complete",
            Event::CollectionDone => "collection_done",
            Event::LivenessCheckReceived => "liveness_check_received",
            Event::LivenessTimeout => "liveness_timeout",
            Event::ProverSignal => "prover_signal",
            Event::ProofComplete => "proof_complete",
            Event::PublishComplete => "publish_complete",
            Event::PublishTimeout => "publish_timeout",
            Event::ProposalReceived => "proposal_received",
            Event::VoteReceived => "vote_received",
            Event::QuorumReached => "quorum_reached",
            Event::VotingTimeout => "voting_timeout",
            Event::AggregationDone => "aggregation_done",
            Event::AggregationTimeout => "aggregation_timeout",
            Event::ConfirmationReceived => "confirmation_received",
            Event::VerificationDone => "verification_done",
            Event::VerificationTimeout => "verification_timeout",
            Event::CleanupComplete => "cleanup_complete",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// From this state…
    pub from: State,
    /// …on this event…
    pub event: Event,
    /// …to this state.
    pub to: State,
}

const fn t(from: State, event: Event, to: State) -> Transition {
    Transition { from, event, to }
}

/// The states from which `stop` and `induce_sync` are honoured.
const RUNNING: [State; 9] = [
    State::Starting,
    State::Loading,
    State::Collecting,
    State::LivenessCheck,
    State::Proving,
    State::Publishing,
    State::Voting,
    State::Finalizing,
    State::Verifying,
];

const BASE: [Transition; 19] = {
    use Event as E;
    use State as S;
    [
        t(S::Stopped, E::Start, S::Starting),
        t(S::Starting, E::InitComplete, S::Loading),
        t(S::Loading, E::SyncTimeout, S::Loading),
        t(S::Loading, E::SyncComplete, S::Collecting),
        t(S::Collecting, E::CollectionDone, S::LivenessCheck),
        t(S::LivenessCheck, E::ProverSignal, S::Proving),
        t(S::LivenessCheck, E::LivenessTimeout, S::LivenessCheck),
        t(S::Proving, E::ProofComplete, S::Publishing),
        t(S::Proving, E::PublishTimeout, S::Voting),
        t(S::Publishing, E::PublishComplete, S::Voting),
        t(S::Publishing, E::PublishTimeout, S::Voting),
        t(S::Voting, E::ProposalReceived, S::Voting),
        t(S::Voting, E::QuorumReached, S::Finalizing),
        t(S::Voting, E::VotingTimeout, S::Voting),
        t(S::Finalizing, E::AggregationDone, S::Verifying),
        t(S::Finalizing, E::AggregationTimeout, S::Finalizing),
        t(S::Verifying, E::VerificationDone, S::Collecting),
        t(S::Verifying, E::VerificationTimeout, S::Verifying),
        t(S::Stopping, E::CleanupComplete, S::Stopped),
    ]
};

/// The whole table: the 19 specific transitions plus `stop → stopping` and
/// `induce_sync → loading` from each of the 9 running states (37 in all).
pub fn transitions() -> Vec<Transition> {
    let mut all = BASE.to_vec();
    for s in RUNNING {
        all.push(t(s, Event::Stop, State::Stopping));
        all.push(t(s, Event::InduceSync, State::Loading));
    }
    all
}

/// The state `event` leads to from `from`, if the table has that row.
pub fn next_state(from: State, event: Event) -> Option<State> {
    if matches!(event, Event::Stop | Event::InduceSync) && RUNNING.contains(&from) {
        return Some(if event == Event::Stop { State::Stopping } else { State::Loading });
    }
    BASE.iter().find(|x| x.from == from && x.event == event).map(|x| x.to)
}

/// The table as a Mermaid state diagram; `current` is highlighted and
/// `guarded` edges are marked `[guarded]`.
pub fn mermaid(current: Option<State>, guarded: &[(State, Event)]) -> String {
    let mut s = String::from("stateDiagram-v2\n    [*] --> Stopped\n");
    for x in transitions() {
        let mark = if guarded.contains(&(x.from, x.event)) { " [guarded]" } else { "" };
        let _ = writeln!(s, "    {:?} --> {:?}: {}{mark}", x.from, x.to, x.event);
    }
    if let Some(c) = current {
        let _ = writeln!(s, "    classDef current fill:#f9d71c,stroke:#333\n    class {c:?} current");
    }
    s
}

/// The table as markdown, a section per state: what it does, its
/// timeout, and every event that leaves it with the state it leads to
/// (what the README and operators read; rendered from the table, so it
/// cannot drift).
pub fn markdown() -> String {
    let mut s = String::from("| state | what it does | timeout | on event → next state |\n|---|---|---|---|\n");
    let all = transitions();
    for st in State::ALL {
        let timeout =
            st.timeout().map_or_else(|| "—".to_owned(), |(d, e)| format!("{} s → `{e}`", d.0 as f64 / 1000.0));
        let exits: Vec<String> =
            all.iter().filter(|x| x.from == st).map(|x| format!("`{}` → {}", x.event, x.to.as_str())).collect();
        let _ = writeln!(s, "| {} | {} | {timeout} | {} |", st.as_str(), st.note(), exits.join("<br>"));
    }
    s
}

/// The table as a Graphviz digraph; `current` is filled and `guarded`
/// edges are marked `[G]`.
pub fn dot(current: Option<State>, guarded: &[(State, Event)]) -> String {
    let mut s = String::from("digraph consensus {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n");
    for st in State::ALL {
        let fill = if Some(st) == current { ", style=\"rounded,filled\", fillcolor=gold" } else { "" };
        let _ = writeln!(s, "    {} [label=\"{}\"{fill}];", st.as_str(), st.as_str());
    }
    for x in transitions() {
        let mark = if guarded.contains(&(x.from, x.event)) { " [G]" } else { "" };
        let _ = writeln!(s, "    {} -> {} [label=\"{}{mark}\"];", x.from.as_str(), x.to.as_str(), x.event);
    }
    s.push_str("}\n");
    s
}
