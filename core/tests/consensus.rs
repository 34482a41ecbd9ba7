//! The consensus machine through its public API on a fake clock, with
//! providers answered by a scripted host: the reference's scenarios
//! re-expressed sans-I/O, plus what the reference got wrong (stop during a
//! slow provider call, timeouts counted from entry, a failing confirmation
//! that must not kill the machine, pruning, equivocation).

#![cfg(not(target_arch = "wasm32"))]

use shoal_core::consensus::sim::{Coll, St, Vote};
use shoal_core::consensus::{
    dot, markdown, mermaid, next_state, transitions, Action, ConsensusError, ConsensusMachine, Event, Input,
    MachineConfig, Reply, State, Unique,
};
use shoal_core::Millis;

#[derive(Clone, Debug, PartialEq)]
struct Peer(String);

impl Unique for Peer {
    fn identity(&self) -> String {
        self.0.clone()
    }
    fn rank(&self) -> u64 {
        0
    }
}

type Machine = ConsensusMachine<St, Vote, Peer, Coll>;

fn genesis() -> St {
    St { round: 0, hash: "genesis".into() }
}

fn machine(own: &str, min_provers: usize) -> Machine {
    ConsensusMachine::new(
        MachineConfig { own: Peer(own.into()), emit_on_own_sends: true, min_provers },
        Some(genesis()),
    )
}

/// A scripted host: answers every provider call at once, unless told to
/// hold a kind of call or to fail it.
struct Host {
    leaders: Vec<&'static str>,
    quorum: usize,
    hold_prove: bool,
    fail_confirmation: bool,
    transitions: Vec<(State, Event, State)>,
    held: Vec<u64>,
}

impl Host {
    fn new(leaders: Vec<&'static str>) -> Self {
        Host { leaders, quorum: 1, hold_prove: false, fail_confirmation: false, transitions: vec![], held: vec![] }
    }

    /// Answers actions until the machine is quiet.
    fn drive(&mut self, m: &mut Machine, now: Millis) {
        while let Some(action) = m.poll_output() {
            let reply = match action {
                Action::Transitioned { from, to, event } => {
                    self.transitions.push((from, event, to));
                    continue;
                }
                Action::Synchronize { request, existing } => (request, Reply::Synced(existing.unwrap_or_else(genesis))),
                Action::NextLeaders { request, .. } => {
                    (request, Reply::Leaders(self.leaders.iter().map(|l| Peer((*l).into())).collect()))
                }
                Action::Collect { request } => {
                    let round = m.active().map_or(0, |s| s.round) + 1;
                    (request, Reply::Collected(Coll(round)))
                }
                Action::SendLiveness { request, .. } | Action::SendProposal { request, .. } => (request, Reply::Done),
                Action::ProveNextState { request, prior, .. } => {
                    if self.hold_prove {
                        self.held.push(request);
                        continue;
                    }
                    let round = prior.map_or(0, |p| p.round) + 1;
                    (request, Reply::Proved(St { round, hash: format!("proposal-{round}") }))
                }
                Action::DecideAndSendVote { request, proposals } => {
                    let (proposer, p) = proposals.into_iter().next().expect("at least one proposal");
                    (request, Reply::Voted { proposer: Peer(proposer), vote: Vote { round: p.round, hash: p.hash } })
                }
                Action::CheckQuorum { request, votes } => (request, Reply::Quorum(votes.len() >= self.quorum)),
                Action::FinalizeVotes { request, proposals, .. } => {
                    let round = proposals.values().next().map_or(1, |p| p.round);
                    (request, Reply::Finalized(St { round, hash: format!("final-{round}") }))
                }
                Action::SendConfirmation { request, .. } => {
                    if self.fail_confirmation {
                        (request, Reply::Failed("confirmation provider crashed".into()))
                    } else {
                        (request, Reply::Done)
                    }
                }
            };
            m.handle(now, Input::Reply { request: reply.0, reply: reply.1 }).expect("replies never error");
        }
    }

    /// Runs the machine on a fake clock for `ms`, ticking at each deadline.
    fn run(&mut self, m: &mut Machine, now: &mut Millis, ms: u64) {
        let end = *now + Millis(ms);
        self.drive(m, *now);
        while let Some(t) = m.poll_timeout() {
            if t > end {
                break;
            }
            *now = t.max(*now);
            m.handle(*now, Input::Tick).expect("ticks never error");
            self.drive(m, *now);
        }
        *now = end;
    }
}

#[test]
fn the_table_has_the_reference_shape_and_the_diagrams_follow_it() {
    let table = transitions();
    assert_eq!(table.len(), 37);
    let from: std::collections::BTreeSet<State> = table.iter().map(|t| t.from).collect();
    assert_eq!(from.len(), 11, "every state has a way out");
    for t in &table {
        assert_eq!(next_state(t.from, t.event), Some(t.to));
    }
    for e in [Event::LivenessCheckReceived, Event::VoteReceived, Event::ConfirmationReceived] {
        assert!(State::ALL.iter().all(|s| next_state(*s, e).is_none()), "{e} carries data only");
    }
    let m = mermaid(Some(State::Voting), &[]);
    let d = dot(Some(State::Voting), &[]);
    assert_eq!(m.lines().filter(|l| l.contains(" --> ") && !l.contains("[*]")).count(), 37);
    assert_eq!(d.lines().filter(|l| l.contains(" -> ")).count(), 37);
    assert!(m.contains("class Voting current") && d.contains("voting [label=\"voting\", style=\"rounded,filled\""));
    assert!(m.contains("Voting --> Finalizing: quorum_reached"));
    let g = mermaid(None, &[(State::Voting, Event::QuorumReached)]);
    assert!(g.contains("Voting --> Finalizing: quorum_reached [guarded]"));
    assert!(dot(None, &[(State::Voting, Event::QuorumReached)]).contains("quorum_reached [G]"));
    let md = markdown();
    assert_eq!(md.lines().count(), 2 + State::ALL.len(), "a row per state");
    assert_eq!(md.matches("` → ").count(), 37, "every transition once");
    assert!(md.contains("| voting | Voting on proposals") && md.contains("`quorum_reached` → finalizing"), "{md}");
}

#[test]
fn guards_refuse_transitions_and_metrics_count_them() {
    fn never(_: &Machine) -> bool {
        false
    }
    let mut m = machine("leader1", 1);
    assert_eq!(m.transition_count(), 0);
    m.set_guard(State::Stopped, Event::Start, never);
    assert_eq!(m.guarded(), vec![(State::Stopped, Event::Start)]);
    assert_eq!(
        m.handle(Millis(0), Input::Start),
        Err(ConsensusError::GuardFailed { from: State::Stopped, to: State::Starting, event: Event::Start })
    );
    assert_eq!((m.state(), m.transition_count()), (State::Stopped, 0));
    let mut m = machine("leader1", 1);
    let mut host = Host::new(vec!["leader1"]);
    let mut now = Millis(5);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 1_500);
    assert!(m.transition_count() >= 3, "start, init, sync…");
    assert!(m.state_entered() <= now);
}

#[test]
fn a_single_prover_finalizes_round_after_round() {
    let mut m = machine("leader1", 1);
    let mut host = Host::new(vec!["leader1"]);
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start from stopped");
    host.run(&mut m, &mut now, 10_000);
    let rounds = m.active().map(|s| s.round).expect("active state");
    assert!(rounds >= 2, "several rounds in 10 s, got {rounds}");
    let first: Vec<State> = host.transitions.iter().take(11).map(|t| t.2).collect();
    assert_eq!(
        first,
        vec![
            State::Starting,
            State::Loading,
            State::Collecting,
            State::LivenessCheck,
            State::Proving,
            State::Publishing,
            State::Voting,
            State::Voting,
            State::Finalizing,
            State::Verifying,
            State::Collecting,
        ],
        "the happy path of the reference, with one voting poll"
    );
    assert_eq!(m.active().map(|s| s.hash.clone()), Some(format!("final-{rounds}")));
    assert!(m.stored_rounds() <= 1, "decided rounds are pruned, got {}", m.stored_rounds());
}

#[test]
fn a_node_outside_the_leader_set_keeps_resyncing_every_ten_seconds() {
    let mut m = machine("bystander", 1);
    let mut host = Host::new(vec!["leader1"]);
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 35_000);
    assert_eq!(m.state(), State::Loading);
    let syncs = host.transitions.iter().filter(|t| t.1 == Event::SyncTimeout).count();
    assert_eq!(syncs, 3, "one retry per 10 s after entering loading at 1 s");
}

#[test]
fn stop_is_honoured_while_a_provider_call_is_outstanding_and_late_replies_are_ignored() {
    let mut m = machine("leader1", 1);
    let mut host = Host::new(vec!["leader1"]);
    host.hold_prove = true;
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 1_500);
    assert_eq!(m.state(), State::Proving, "waiting on a slow prover");
    m.handle(now, Input::Stop).expect("stop while proving");
    host.drive(&mut m, now);
    assert_eq!(m.state(), State::Stopped, "stopping cleans up at once");
    let late = host.held[0];
    let proof = Reply::Proved(St { round: 1, hash: "late".into() });
    m.handle(now, Input::Reply { request: late, reply: proof }).expect("ignored");
    assert_eq!(m.state(), State::Stopped);
    assert_eq!(
        m.handle(now, Input::Stop),
        Err(ConsensusError::NoTransition { state: State::Stopped, event: Event::Stop })
    );
    // And it can be started again (the reference could not, after a crash).
    host.hold_prove = false;
    m.handle(now, Input::Start).expect("restart");
    host.run(&mut m, &mut now, 5_000);
    assert!(m.active().is_some_and(|s| s.round >= 1));
}

#[test]
fn timeouts_count_from_entering_the_state() {
    let mut m = machine("leader1", 1);
    let mut host = Host::new(vec!["leader1"]);
    host.hold_prove = true;
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 1_500);
    let entered = m.state_entered();
    assert_eq!(m.state(), State::Proving);
    assert_eq!(m.poll_timeout(), Some(entered + Millis::from_secs(120)));
    let until_just_before = 120_000 - (now.0 - entered.0) - 1;
    host.run(&mut m, &mut now, until_just_before);
    assert_eq!(m.state(), State::Proving, "not a millisecond early");
    host.run(&mut m, &mut now, 1);
    assert!(host.transitions.iter().any(|t| t.0 == State::Proving && t.1 == Event::PublishTimeout));
}

#[test]
fn a_failing_confirmation_leads_to_resync_not_to_a_dead_machine() {
    let mut m = machine("leader1", 1);
    let mut host = Host::new(vec!["leader1"]);
    host.fail_confirmation = true;
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 3_000);
    assert!(host
        .transitions
        .iter()
        .any(|t| t.0 == State::Verifying && t.1 == Event::InduceSync && t.2 == State::Loading));
    host.fail_confirmation = false;
    host.run(&mut m, &mut now, 5_000);
    assert!(m.active().is_some_and(|s| s.round >= 1), "it recovered and finalized");
}

#[test]
fn equivocation_is_rejected_and_old_or_far_rounds_are_ignored() {
    let mut m = machine("leader1", 2);
    let now = Millis(0);
    let vote = |p: &str| Vote { round: 1, hash: p.into() };
    let peer = |p: &str| Peer(p.into());
    m.handle(now, Input::Vote { proposer: peer("a"), voter: peer("v"), vote: vote("x") }).expect("first vote");
    m.handle(now, Input::Vote { proposer: peer("a"), voter: peer("v"), vote: vote("x") }).expect("same vote again");
    assert_eq!(
        m.handle(now, Input::Vote { proposer: peer("b"), voter: peer("v"), vote: vote("y") }),
        Err(ConsensusError::ConflictingVote { voter: "v".into(), rank: 1 })
    );
    m.handle(now, Input::Liveness { peer: peer("l"), collected: Coll(0) }).expect("old round");
    m.handle(now, Input::Liveness { peer: peer("l"), collected: Coll(1_000) }).expect("far round");
    assert_eq!(m.liveness_rounds(), 0, "decided and far-future rounds are not stored");
    m.handle(now, Input::Liveness { peer: peer("l"), collected: Coll(1) }).expect("next round");
    m.handle(now, Input::Confirmation { peer: peer("l"), state: St { round: 1, hash: "h".into() } }).expect("stored");
    assert_eq!((m.liveness_rounds(), m.confirmation_rounds()), (1, 1));
    assert_eq!(m.handle(now, Input::Start), Ok(()));
    assert_eq!(
        m.handle(now, Input::Start),
        Err(ConsensusError::NoTransition { state: State::Starting, event: Event::Start })
    );
}

#[test]
fn external_proposals_and_votes_drive_a_non_leader_to_finalize() {
    // Two provers needed: our node proves, a peer's proposal and vote arrive.
    let mut m = machine("leader1", 2);
    let mut host = Host::new(vec!["leader1", "leader2"]);
    host.quorum = 2;
    let mut now = Millis(0);
    m.handle(now, Input::Start).expect("start");
    host.run(&mut m, &mut now, 1_100);
    assert_eq!(m.state(), State::LivenessCheck, "waiting for a second live prover");
    m.handle(now, Input::Liveness { peer: Peer("leader2".into()), collected: Coll(1) }).expect("live");
    m.handle(now, Input::Proposal { peer: Peer("leader2".into()), proposal: St { round: 1, hash: "p2".into() } })
        .expect("proposal");
    host.run(&mut m, &mut now, 2_500);
    assert!(matches!(m.state(), State::Voting), "voting once two proposals exist, got {}", m.state());
    m.handle(
        now,
        Input::Vote {
            proposer: Peer("leader1".into()),
            voter: Peer("leader2".into()),
            vote: Vote { round: 1, hash: "proposal-1".into() },
        },
    )
    .expect("vote");
    host.run(&mut m, &mut now, 2_000);
    assert!(m.active().is_some_and(|s| s.round == 1), "finalized round 1: {:?}", m.active());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn input() -> impl Strategy<Value = Input<St, Vote, Peer, Coll>> {
        let peer = prop_oneof![Just("leader1"), Just("leader2"), Just("x")].prop_map(|p: &str| Peer(p.into()));
        let st = (0u64..4, "[a-c]").prop_map(|(round, hash)| St { round, hash });
        let reply = prop_oneof![
            st.clone().prop_map(Reply::Synced),
            Just(Reply::Leaders(vec![Peer("leader1".into())])),
            (0u64..4).prop_map(|round| Reply::Collected(Coll(round))),
            st.clone().prop_map(Reply::Proved),
            (0u64..4, "[a-c]").prop_map(|(round, proposal)| Reply::Voted {
                proposer: Peer("leader1".into()),
                vote: Vote { round, hash: proposal }
            }),
            any::<bool>().prop_map(Reply::Quorum),
            st.clone().prop_map(Reply::Finalized),
            Just(Reply::Done),
            Just(Reply::Failed("boom".into())),
        ];
        prop_oneof![
            Just(Input::Start),
            Just(Input::Stop),
            Just(Input::InduceSync),
            Just(Input::Tick),
            (0u64..40, reply).prop_map(|(request, reply)| Input::Reply { request, reply }),
            (peer.clone(), 0u64..4).prop_map(|(peer, round)| Input::Liveness { peer, collected: Coll(round) }),
            (peer.clone(), st.clone()).prop_map(|(peer, proposal)| Input::Proposal { peer, proposal }),
            (peer.clone(), peer.clone(), 0u64..4, "[a-c]").prop_map(|(proposer, voter, round, proposal)| Input::Vote {
                proposer,
                voter,
                vote: Vote { round, hash: proposal }
            }),
            (peer, st).prop_map(|(peer, state)| Input::Confirmation { peer, state }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any sequence of inputs at any times: no panic, always a defined
        /// state, every reported transition is a row of the table, and
        /// errors are only the two documented kinds.
        #[test]
        fn random_inputs_never_break_the_machine(steps in prop::collection::vec((0u64..5_000, input()), 0..200)) {
            let mut m = machine("leader1", 1);
            let mut now = Millis(0);
            for (dt, i) in steps {
                now = now + Millis(dt);
                match m.handle(now, i) {
                    Ok(()) | Err(ConsensusError::NoTransition { .. } | ConsensusError::ConflictingVote { .. }) => {}
                    Err(e @ ConsensusError::GuardFailed { .. }) => prop_assert!(false, "no guard is installed: {}", e),
                }
                while let Some(a) = m.poll_output() {
                    if let Action::Transitioned { from, to, event } = a {
                        prop_assert_eq!(next_state(from, event), Some(to));
                    }
                }
                prop_assert!(State::ALL.contains(&m.state()));
                prop_assert!(m.stored_rounds() <= 2 * shoal_core::consensus::machine::RANK_WINDOW as usize);
            }
        }
    }
}

/// `docs/consensus.md` holds the table as rendered from the code (when the
/// table changes: `SHOAL_WRITE_DOCS=1 cargo test -p shoal-core --test consensus`).
#[test]
fn the_documented_table_is_the_code_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/consensus.md");
    let head = "# The settlement consensus machine\n\nRendered from `shoal_core::consensus::markdown()` (11 states, 37 transitions; `Stop` and `InduceSync` leave every running state). The dashboard's Consensus page draws the same table as a diagram.\n\n";
    let want = format!("{head}{}", markdown());
    if std::env::var_os("SHOAL_WRITE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write the doc");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(have, want, "docs/consensus.md is stale: SHOAL_WRITE_DOCS=1 cargo test -p shoal-core --test consensus");
}
