//! A deterministic simulated network of consensus machines: N nodes, some
//! Byzantine, messages with delay, loss and partitions, providers played by
//! a simple BFT host (every node proves, votes go to the most proposed
//! state, a quorum is 2f + 1 equal votes, a lagging node synchronizes to the
//! highest state confirmed by f + 1 peers, and a node stuck in a round for
//! 8 s re-synchronizes). Used by the safety/liveness tests and the
//! consensus benchmark; the basis of `shoal sim` for settlement later.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::{Action, ConsensusError, ConsensusMachine, Input, MachineConfig, Reply, Unique};
use crate::digest::Digest;
use crate::rng::SplitMix64;
use crate::time::Millis;

/// A state of the simulated chain.
#[derive(Clone, Debug, PartialEq)]
pub struct St {
    /// Round.
    pub round: u64,
    /// Content hash.
    pub hash: String,
}
impl Unique for St {
    fn identity(&self) -> String {
        self.hash.clone()
    }
    fn rank(&self) -> u64 {
        self.round
    }
}

/// A vote for a state hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Vote {
    /// Round.
    pub round: u64,
    /// The hash voted for.
    pub hash: String,
}
impl Unique for Vote {
    fn identity(&self) -> String {
        self.hash.clone()
    }
    fn rank(&self) -> u64 {
        self.round
    }
}

/// A node, by index.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer(pub usize);
impl Unique for Peer {
    fn identity(&self) -> String {
        format!("n{}", self.0)
    }
    fn rank(&self) -> u64 {
        0
    }
}

/// Collected mutations (only their round matters here).
#[derive(Clone, Debug, PartialEq)]
pub struct Coll(pub u64);
impl Unique for Coll {
    fn identity(&self) -> String {
        format!("c{}", self.0)
    }
    fn rank(&self) -> u64 {
        self.0
    }
}

type Machine = ConsensusMachine<St, Vote, Peer, Coll>;
type Msg = Input<St, Vote, Peer, Coll>;

/// How a simulated node behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Sends nothing and ignores everything.
    Silent,
    /// Sends different votes to different peers.
    Equivocator,
    /// Proposes and votes for a bogus state.
    WrongProposer,
}

fn genesis() -> St {
    St { round: 0, hash: "genesis".into() }
}

/// The state every honest prover derives from `prior`: deterministic, so
/// honest proposals for a round are identical.
fn honest_next(prior: &St) -> St {
    let round = prior.round + 1;
    St { round, hash: Digest::of(format!("{}/{round}", prior.hash).as_bytes()).to_hex()[..16].to_owned() }
}

struct Node {
    m: Machine,
    role: Role,
    /// The vote this node cast per round (an honest node never changes it).
    my_votes: BTreeMap<u64, Vote>,
    /// Confirmations seen: round → hash → confirmers.
    confirmed: BTreeMap<u64, BTreeMap<String, BTreeSet<usize>>>,
    /// Round → finalized hash, as adopted by this node.
    finalized: BTreeMap<u64, String>,
    last_progress: Millis,
}

/// N consensus machines on a simulated network.
pub struct Net {
    n: usize,
    f: usize,
    rng: SplitMix64,
    now: Millis,
    loss_pct: u64,
    delay: (u64, u64),
    /// From `from` until `until`, nodes in `side` cannot talk to the others.
    pub partition: Option<(Millis, Millis, BTreeSet<usize>)>,
    queue: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    msgs: Vec<Option<(usize, Msg)>>,
    seq: u64,
    nodes: Vec<Node>,
    errors: NetErrors,
}

/// What the machines answered `handle()` with when it failed, counted
/// instead of thrown away: on an asynchronous network some inputs arrive
/// where the table has nothing for them (late replies, stale messages),
/// and a node that sees two different votes from one voter says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetErrors {
    /// Inputs with no transition in the receiver's state.
    pub no_transition: u64,
    /// Transitions a guard refused.
    pub guard_failed: u64,
    /// Accusations of equivocation: the voters accused, by node index.
    pub equivocators: BTreeSet<usize>,
}

impl Net {
    /// Nodes with these roles; `loss_pct` of messages lost, one-way delay
    /// uniformly in `delay_ms` (inclusive).
    pub fn new(seed: u64, roles: &[Role], loss_pct: u64, delay_ms: (u64, u64)) -> Self {
        let n = roles.len();
        let f = (n - 1) / 3;
        let nodes = roles
            .iter()
            .enumerate()
            .map(|(i, role)| Node {
                m: ConsensusMachine::new(
                    MachineConfig { own: Peer(i), emit_on_own_sends: true, min_provers: 2 * f + 1 },
                    Some(genesis()),
                ),
                role: *role,
                my_votes: BTreeMap::new(),
                confirmed: BTreeMap::new(),
                finalized: BTreeMap::new(),
                last_progress: Millis(0),
            })
            .collect();
        Net {
            n,
            f,
            rng: SplitMix64::new(seed),
            now: Millis(0),
            loss_pct,
            delay: delay_ms,
            partition: None,
            queue: BinaryHeap::new(),
            msgs: Vec::new(),
            seq: 0,
            nodes,
            errors: NetErrors::default(),
        }
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        match &self.partition {
            Some((from, until, side)) => {
                self.now >= *from && self.now < *until && side.contains(&a) != side.contains(&b)
            }
            None => false,
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if from != to && (self.cut(from, to) || self.rng.below(100) < self.loss_pct) {
            return;
        }
        let (lo, hi) = self.delay;
        let at = self.now + Millis(lo + self.rng.below(hi.saturating_sub(lo) + 1));
        self.seq += 1;
        self.msgs.push(Some((to, msg)));
        self.queue.push(Reverse((at, self.seq, self.msgs.len() - 1)));
    }

    fn broadcast(&mut self, from: usize, make: impl Fn(usize) -> Msg) {
        for to in 0..self.n {
            if to != from {
                let msg = make(to);
                self.send(from, to, msg);
            }
        }
    }

    /// Answers node `i`'s provider calls (one arm per provider call).
    #[allow(clippy::too_many_lines)]
    fn drive(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].m.poll_output() {
            let role = self.nodes[i].role;
            let (request, reply) = match action {
                Action::Transitioned { .. } => {
                    let node = &mut self.nodes[i];
                    if let Some(a) = node.m.active() {
                        if a.round > 0 && node.finalized.insert(a.round, a.hash.clone()).is_none() {
                            node.last_progress = self.now;
                        }
                    }
                    continue;
                }
                Action::Synchronize { request, existing } => {
                    // Sync RPC to every reachable peer: learn the confirmations they
                    // hold, then take the highest state confirmed by f + 1 distinct
                    // peers (so by at least one honest one).
                    let reachable: Vec<usize> = (0..self.n).filter(|&p| p != i && !self.cut(i, p)).collect();
                    for p in reachable {
                        if self.nodes[p].role == Role::Silent {
                            continue;
                        }
                        let theirs = self.nodes[p].confirmed.clone();
                        for (round, by_hash) in theirs {
                            for (hash, who) in by_hash {
                                self.nodes[i].confirmed.entry(round).or_default().entry(hash).or_default().extend(who);
                            }
                        }
                    }
                    let need = self.f + 1;
                    let best = self.nodes[i].confirmed.iter().rev().find_map(|(round, by_hash)| {
                        by_hash
                            .iter()
                            .find(|(_, who)| who.len() >= need)
                            .map(|(h, _)| St { round: *round, hash: h.clone() })
                    });
                    let current = existing.unwrap_or_else(genesis);
                    let synced = match best {
                        Some(b) if b.round > current.round => b,
                        _ => current,
                    };
                    (request, Reply::Synced(synced))
                }
                Action::NextLeaders { request, .. } => (request, Reply::Leaders((0..self.n).map(Peer).collect())),
                Action::Collect { request } => {
                    let round = self.nodes[i].m.active().map_or(0, |s| s.round) + 1;
                    (request, Reply::Collected(Coll(round)))
                }
                Action::SendLiveness { request, collected, .. } => {
                    if role != Role::Silent {
                        self.broadcast(i, |_| Input::Liveness { peer: Peer(i), collected: collected.clone() });
                    }
                    (request, Reply::Done)
                }
                Action::ProveNextState { request, prior, .. } => {
                    let prior = prior.unwrap_or_else(genesis);
                    let mut s = honest_next(&prior);
                    if role == Role::WrongProposer {
                        s.hash = format!("bogus-{i}-{}", s.round);
                    }
                    (request, Reply::Proved(s))
                }
                Action::SendProposal { request, proposal } => {
                    if role != Role::Silent {
                        self.broadcast(i, |_| Input::Proposal { peer: Peer(i), proposal: proposal.clone() });
                    }
                    (request, Reply::Done)
                }
                Action::DecideAndSendVote { request, proposals } => {
                    let round = proposals.values().next().map_or(0, |p| p.round);
                    // Honest rule: the hash proposed most often (ties: smallest); never change a cast vote.
                    let vote = match self.nodes[i].my_votes.get(&round) {
                        Some(v) => v.clone(),
                        None => {
                            let mut count: BTreeMap<String, usize> = BTreeMap::new();
                            for p in proposals.values() {
                                *count.entry(p.hash.clone()).or_default() += 1;
                            }
                            let best =
                                count.iter().max_by_key(|(h, c)| (**c, Reverse((*h).clone()))).map(|(h, _)| h.clone());
                            let mut hash = best.unwrap_or_default();
                            if role == Role::WrongProposer {
                                hash = format!("bogus-{i}-{round}");
                            }
                            Vote { round, hash }
                        }
                    };
                    self.nodes[i].my_votes.insert(round, vote.clone());
                    match role {
                        Role::Silent => {}
                        Role::Equivocator => {
                            // A different vote to every other peer.
                            self.broadcast(i, |to| Input::Vote {
                                proposer: Peer(0),
                                voter: Peer(i),
                                vote: Vote {
                                    round,
                                    hash: if to % 2 == 0 { vote.hash.clone() } else { format!("equivocal-{to}") },
                                },
                            });
                        }
                        _ => {
                            self.broadcast(i, |_| Input::Vote {
                                proposer: Peer(0),
                                voter: Peer(i),
                                vote: vote.clone(),
                            });
                        }
                    }
                    (request, Reply::Voted { proposer: Peer(0), vote })
                }
                Action::CheckQuorum { request, votes } => {
                    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
                    for v in votes.values() {
                        *count.entry(v.hash.as_str()).or_default() += 1;
                    }
                    let quorum = 2 * self.f + 1;
                    let q = count.values().any(|c| *c >= quorum);
                    (request, Reply::Quorum(q))
                }
                Action::FinalizeVotes { request, proposals, votes } => {
                    let mut count: BTreeMap<String, usize> = BTreeMap::new();
                    for v in votes.values() {
                        *count.entry(v.hash.clone()).or_default() += 1;
                    }
                    let quorum = 2 * self.f + 1;
                    let winner = count.into_iter().find(|(_, c)| *c >= quorum).map(|(h, _)| h);
                    let round = proposals.values().next().map_or(0, |p| p.round);
                    match winner {
                        Some(hash) => (request, Reply::Finalized(St { round, hash })),
                        None => (request, Reply::Failed("no quorum".into())),
                    }
                }
                Action::SendConfirmation { request, state } => {
                    self.nodes[i]
                        .confirmed
                        .entry(state.round)
                        .or_default()
                        .entry(state.hash.clone())
                        .or_default()
                        .insert(i);
                    if role != Role::Silent {
                        self.broadcast(i, |_| Input::Confirmation { peer: Peer(i), state: state.clone() });
                    }
                    (request, Reply::Done)
                }
            };
            let now = self.now;
            self.handle(i, now, Input::Reply { request, reply });
        }
    }

    /// Feeds node `i` an input, counting what it refuses.
    fn handle(&mut self, i: usize, now: Millis, input: Msg) {
        match self.nodes[i].m.handle(now, input) {
            Ok(()) => {}
            Err(ConsensusError::NoTransition { .. }) => self.errors.no_transition += 1,
            Err(ConsensusError::GuardFailed { .. }) => self.errors.guard_failed += 1,
            Err(ConsensusError::ConflictingVote { voter, .. }) => {
                // Peers are named `n<index>` (`Peer::identity`).
                let index = voter.strip_prefix('n').and_then(|n| n.parse().ok());
                self.errors.equivocators.insert(index.unwrap_or(usize::MAX));
            }
        }
    }

    /// The machines' refusals so far.
    pub fn errors(&self) -> &NetErrors {
        &self.errors
    }

    /// Runs the network until `until` (10 ms steps).
    pub fn run(&mut self, until: Millis) {
        while self.now < until {
            self.now = self.now + Millis(10);
            let now = self.now;
            // Deliver what is due; messages sent meanwhile (even with zero
            // delay) wait for the next step, so a step is one network hop.
            let mut due = Vec::new();
            while let Some(Reverse((t, _, idx))) = self.queue.peek().copied() {
                if t > now {
                    break;
                }
                self.queue.pop();
                due.push(idx);
            }
            for idx in due {
                let Some((to, msg)) = self.msgs[idx].take() else { continue };
                if self.nodes[to].role == Role::Silent {
                    continue;
                }
                if let Input::Confirmation { peer, state } = &msg {
                    self.nodes[to]
                        .confirmed
                        .entry(state.round)
                        .or_default()
                        .entry(state.hash.clone())
                        .or_default()
                        .insert(peer.0);
                }
                self.handle(to, now, msg);
                self.drive(to);
            }
            for i in 0..self.n {
                if self.nodes[i].m.poll_timeout().is_some_and(|d| d <= now) {
                    self.handle(i, now, Input::Tick);
                }
                // Pacemaker: a node stuck in a round re-synchronizes.
                if now.since(self.nodes[i].last_progress) > Millis::from_secs(8) {
                    self.nodes[i].last_progress = now;
                    self.handle(i, now, Input::InduceSync);
                }
                self.drive(i);
            }
        }
    }

    /// Starts every node.
    pub fn start(&mut self) {
        for i in 0..self.n {
            self.handle(i, Millis(0), Input::Start);
            self.drive(i);
        }
    }

    fn honest(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.iter().filter(|n| n.role == Role::Honest)
    }

    /// The first round at which two honest nodes finalized different states.
    pub fn conflict(&self) -> Option<u64> {
        let mut by_round: BTreeMap<u64, &str> = BTreeMap::new();
        for node in self.honest() {
            for (round, hash) in &node.finalized {
                let seen = by_round.entry(*round).or_insert(hash.as_str());
                if *seen != hash.as_str() {
                    return Some(*round);
                }
            }
        }
        None
    }

    /// The lowest round any honest node has finalized.
    pub fn min_honest_round(&self) -> u64 {
        self.honest().map(|n| n.m.active().map_or(0, |s| s.round)).min().unwrap_or(0)
    }
}
