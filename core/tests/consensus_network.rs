//! Several consensus machines on a deterministic simulated network with
//! delay, loss and partitions, some of them Byzantine (equivocating votes,
//! wrong proposals, silence): honest nodes never finalize different states
//! for the same round (safety), and keep finalizing once the network heals
//! (liveness).

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use shoal_core::consensus::sim::{Net, NetErrors, Role};
use shoal_core::Millis;

const DELAY: (u64, u64) = (5, 50);

#[test]
fn four_honest_nodes_agree_round_after_round() {
    let mut net = Net::new(1, &[Role::Honest; 4], 0, DELAY);
    net.start();
    net.run(Millis::from_secs(30));
    assert_eq!(net.conflict(), None, "honest nodes finalized conflicting states");
    assert!(net.min_honest_round() >= 5, "every node finalized rounds: {}", net.min_honest_round());
    assert_eq!(net.errors(), &NetErrors::default(), "no machine refused an input");
}

#[test]
fn byzantine_minorities_never_break_safety_and_the_swarm_recovers_from_partitions() {
    let cases: [(&[Role], u64); 4] = [
        (&[Role::Honest, Role::Honest, Role::Honest, Role::Equivocator], 5),
        (&[Role::Honest, Role::Honest, Role::Honest, Role::WrongProposer], 5),
        (&[Role::Honest, Role::Honest, Role::Honest, Role::Silent], 5),
        (
            &[
                Role::Honest,
                Role::Honest,
                Role::Honest,
                Role::Honest,
                Role::Honest,
                Role::Equivocator,
                Role::WrongProposer,
            ],
            5,
        ),
    ];
    for (seed, (roles, loss)) in cases.iter().enumerate() {
        let mut net = Net::new(seed as u64 + 10, roles, *loss, DELAY);
        // A partition cuts the first node off for 15 s.
        net.partition = Some((Millis::from_secs(10), Millis::from_secs(25), BTreeSet::from([0])));
        net.start();
        net.run(Millis::from_secs(25));
        assert_eq!(net.conflict(), None, "honest nodes finalized conflicting states");
        let before_heal = net.min_honest_round();
        net.run(Millis::from_secs(70));
        assert_eq!(net.conflict(), None, "honest nodes finalized conflicting states");
        let after = net.min_honest_round();
        println!("{} nodes {:?}: lowest honest round {before_heal} at heal, {after} at the end", roles.len(), roles);
        assert!(after > before_heal + 2, "honest nodes keep finalizing after the partition heals ({roles:?})");
        // No machine refused an input (a refusal is never thrown away: an
        // accusation of equivocation would name the accused here).
        assert_eq!(net.errors(), &NetErrors::default(), "{roles:?}");
    }
}
