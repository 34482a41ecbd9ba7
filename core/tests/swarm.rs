//! The coordinator's brain, proven by the seeded swarm simulator: no task
//! lost, quorum from distinct workers and origins, exact epoch books,
//! Sarmenta's error rate for plain voting, and what credibility, ringers
//! and slashing do to it.

#![cfg(not(target_arch = "wasm32"))]

use shoal_core::sim::{run, Behaviour, SimConfig, SimReport, WorkerGroup};
use shoal_core::Millis;

fn group(count: usize, behaviour: Behaviour) -> WorkerGroup {
    WorkerGroup::of(count, behaviour)
}

fn assert_sound(r: &SimReport) {
    assert_eq!(r.lost, 0, "every task ends verified, dead-lettered or cancelled: {r:#?}");
    assert_eq!(r.quorum_violations, 0, "quorum from distinct workers and origins: {r:#?}");
    assert_eq!(r.unbalanced_epochs, 0, "payouts + cut + carry == pool: {r:#?}");
    assert_eq!(r.honest_slashed, 0, "no honest worker slashed: {r:#?}");
}

/// Sarmenta's ε(f, m): probability that m-first voting accepts a wrong
/// answer when a fraction f of workers collude on one wrong answer.
fn sarmenta(f: f64, m: u32) -> f64 {
    let n = 2 * m - 1;
    (m..=n).map(|j| binomial(n, j) * f.powi(j as i32) * (1.0 - f).powi((n - j) as i32)).sum()
}

fn binomial(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

fn colluders(seed: u64, f_pct: usize, tasks: usize, defended: bool) -> SimReport {
    let mut cfg = SimConfig::honest(seed, 0, tasks);
    let bad = f_pct * 2;
    cfg.workers = vec![group(200 - bad, Behaviour::Honest), group(bad, Behaviour::Colluder(100))];
    cfg.coordinator.max_replicas = 3; // m-first voting with m = 2: at most 2m − 1 replicas
    cfg.coordinator.credibility.slash_outvoted = defended;
    cfg.coordinator.credibility.ringer_pct = if defended { 10 } else { 0 };
    run(cfg)
}

#[test]
fn honest_swarm_verifies_everything_with_two_replicas() {
    let r = run(SimConfig::honest(1, 20, 2_000));
    assert_sound(&r);
    assert_eq!((r.submitted, r.verified, r.wrong_accepted), (2_000, 2_000, 0));
    assert_eq!(r.mean_replicas_milli, 2_000);
    assert_eq!(r.epochs, 1);
    assert_eq!(r.paid + r.operator_cut, 800 * shoal_core::coordinator::rewards::TOKEN);
}

#[test]
fn random_liars_at_thirty_percent_never_win_with_escalation() {
    let mut cfg = SimConfig::honest(2, 0, 100_000);
    cfg.workers = vec![group(70, Behaviour::Honest), group(30, Behaviour::Liar(100))];
    cfg.coordinator.credibility.slash_outvoted = false; // plain escalation, liars stay
    cfg.tasks_per_job = 10_000;
    let r = run(cfg);
    assert_sound(&r);
    // With 5 replicas at most, P(fewer than 2 honest of 5) = 3.1 %: those
    // tasks are undecidable and go to the dead-letter queue, never wrong.
    assert_eq!(r.verified + r.dead_lettered, 100_000);
    assert!(r.dead_lettered < 4_000, "{r:#?}");
    assert_eq!(r.wrong_accepted, 0, "{r:#?}");
    println!("random liars f = 0.3: {} verified, {} undecidable, 0 wrong", r.verified, r.dead_lettered);
    assert!(r.stats.mismatched_tasks > 10_000, "liars were really there: {r:#?}");
}

#[test]
fn plain_voting_matches_sarmenta_and_defences_beat_it() {
    for f_pct in [10usize, 30] {
        let f = f_pct as f64 / 100.0;
        let tasks = 20_000;
        let plain = colluders(10 + f_pct as u64, f_pct, tasks, false);
        assert_sound(&plain);
        let eps = sarmenta(f, 2);
        let measured = plain.wrong_rate();
        let sigma = (eps * (1.0 - eps) / tasks as f64).sqrt();
        println!("f = {f}: ε(f,2) = {eps:.4}, plain voting measured {measured:.4} (σ {sigma:.4})");
        assert!((measured - eps).abs() < 5.0 * sigma + 0.005, "f {f}: measured {measured}, ε {eps}");

        let defended = colluders(20 + f_pct as u64, f_pct, tasks, true);
        assert_eq!(defended.lost, 0);
        assert_eq!(defended.unbalanced_epochs, 0);
        let d = defended.wrong_rate();
        println!(
            "f = {f}: with credibility + ringers + slashing {d:.5} ({} wrong of {}), factor {:.0}×, {} slashed",
            defended.wrong_accepted,
            defended.verified,
            eps / d.max(1.0 / tasks as f64),
            defended.slashed
        );
        assert!(d < eps / 10.0, "defences must cut the wrong-acceptance rate by 10× at least: {d} vs {eps}");
    }
}

/// One Sybil scenario at f = 0.3 (60 attackers among 200 workers), with
/// the defences on (credibility, 10 % ringers, slashing).
fn sybils(seed: u64, attackers: WorkerGroup, adaptive: bool) -> SimReport {
    let mut cfg = SimConfig::honest(seed, 0, 20_000);
    cfg.workers = vec![group(200 - attackers.count, Behaviour::Honest), attackers];
    cfg.coordinator.max_replicas = 3;
    cfg.coordinator.credibility.ringer_pct = 10;
    cfg.coordinator.credibility.adaptive_replication = adaptive;
    let r = run(cfg);
    // Colluders that outvote an honest replica get it slashed: not asserted here.
    assert_eq!((r.lost, r.quorum_violations, r.unbalanced_epochs), (0, 0, 0), "{r:#?}");
    r
}

/// Contributor identities against Sybils: what keeping a slashed identity
/// slashed buys over the guest model (a slashed guest rejoins under a
/// fresh id, as does an identity its owner drops for a new key), for
/// colluders and for sleepers that build credibility before they lie; and
/// a farm of fresh identities on one network, which never forms a quorum.
#[test]
fn sybil_identities_against_the_guest_model() {
    let colluder = Behaviour::Colluder(100);
    let sleeper = Behaviour::Sleeper { honest_tasks: 50, lie_pct: 100 };
    let rows = [
        ("colluders, a slashed identity stays slashed", WorkerGroup::of(60, colluder), false),
        (
            "colluders rejoining fresh after each slash (guest model)",
            WorkerGroup { whitewash: true, ..WorkerGroup::of(60, colluder) },
            false,
        ),
        ("sleepers (50 tasks honest), adaptive replication, stay slashed", WorkerGroup::of(60, sleeper), true),
        (
            "sleepers rejoining fresh after each slash, adaptive replication",
            WorkerGroup { whitewash: true, ..WorkerGroup::of(60, sleeper) },
            true,
        ),
        (
            "60 fresh colluder identities from one network",
            WorkerGroup { same_origin: true, whitewash: true, ..WorkerGroup::of(60, colluder) },
            false,
        ),
    ];
    let mut rates = Vec::new();
    // One seed for every row: each whitewashing row is paired with the
    // row it differs from only by coming back (the same run until the
    // first comeback).
    for (name, attackers, adaptive) in rows {
        let r = sybils(40, attackers, adaptive);
        println!(
            "{name}: {:.5} wrong ({} of {} verified), {} slashed ({} honest), {} dead-lettered",
            r.wrong_rate(),
            r.wrong_accepted,
            r.verified,
            r.slashed,
            r.honest_slashed,
            r.dead_lettered
        );
        rates.push(r);
    }
    // A slashed Sybil back at once under a fresh id lies again: colluders
    // and sleepers both gain by it (the guest model's cost).
    assert!(rates[1].wrong_accepted > rates[0].wrong_accepted, "colluders gain by coming back clean");
    assert!(rates[3].wrong_accepted > rates[2].wrong_accepted, "sleepers gain by coming back clean");
    assert_eq!(rates[4].wrong_accepted, 0, "one network never forms a quorum with itself");
    // Identities that stay slashed keep the 10× cut below plain voting's
    // ε = 0.216; the guest model keeps a 5× cut.
    for r in [&rates[0], &rates[2], &rates[4]] {
        assert!(r.wrong_rate() < 0.216 / 10.0, "the defences hold: {r:#?}");
    }
    for r in [&rates[1], &rates[3]] {
        assert!(r.wrong_rate() < 0.216 / 5.0, "whitewashing is bounded: {r:#?}");
    }
}

/// Ringers are replays of verified tasks of live jobs: a colluder that
/// answers honestly on jobs it has not seen (the tell of ringers with job
/// ids of their own) is caught by them as often as one that does not try.
#[test]
fn a_cheat_that_tries_to_recognise_ringers_gains_nothing() {
    let run_with = |seed: u64, behaviour: Behaviour| {
        let mut cfg = SimConfig::honest(seed, 0, 20_000);
        cfg.workers = vec![group(140, Behaviour::Honest), group(60, behaviour)];
        cfg.tasks_per_job = 500;
        cfg.coordinator.max_replicas = 3;
        cfg.coordinator.credibility.ringer_pct = 10;
        let r = run(cfg);
        assert_eq!((r.lost, r.quorum_violations, r.unbalanced_epochs), (0, 0, 0), "{r:#?}");
        r
    };
    let plain = run_with(60, Behaviour::Colluder(100));
    let spotter = run_with(60, Behaviour::Spotter(100));
    for (name, r) in [("colluders", &plain), ("colluders that try to spot ringers", &spotter)] {
        println!(
            "{name} f = 0.3, 10 % ringers: {:.5} wrong ({} of {}), {} slashed, {} ringers failed of {}",
            r.wrong_rate(),
            r.wrong_accepted,
            r.verified,
            r.slashed,
            r.stats.ringers_failed,
            r.stats.ringers
        );
    }
    assert!(spotter.stats.ringers_failed > 0, "ringers catch spotters too: {spotter:#?}");
    assert!(
        spotter.wrong_accepted <= plain.wrong_accepted + plain.wrong_accepted / 2 + 5,
        "spotting gains nothing: {} vs {}",
        spotter.wrong_accepted,
        plain.wrong_accepted
    );
}

/// 30 % of the swarm decline, fail or silently drop every offer: no honest
/// task is dead-lettered, and verified throughput is reported beside the
/// honest 70 % alone (same seed, same tasks).
#[test]
fn saboteurs_at_thirty_percent_dead_letter_no_honest_task() {
    let tasks = 20_000;
    let mut alone = SimConfig::honest(6, 70, tasks);
    alone.tasks_per_job = 2_000;
    let alone = run(alone);
    let mut cfg = SimConfig::honest(6, 0, tasks);
    cfg.tasks_per_job = 2_000;
    cfg.workers = vec![
        group(70, Behaviour::Honest),
        group(10, Behaviour::Decliner(100)),
        group(10, Behaviour::Failer(100)),
        group(10, Behaviour::Hanging(100)),
    ];
    let r = run(cfg);
    assert_sound(&r);
    assert_eq!((r.verified, r.dead_lettered, r.wrong_accepted), (tasks, 0, 0), "{r:#?}");
    assert!(r.stats.timeouts > 0, "the silent ones really hung: {r:#?}");
    let rate = |r: &SimReport| r.verified as f64 * 1_000.0 / r.elapsed.0.max(1) as f64;
    println!(
        "saboteurs f = 0.3 (decline, fail, hang): {} verified, {} dead-lettered, {:.0} verified/s vs {:.0} for the honest 70 alone ({:.2}x)",
        r.verified,
        r.dead_lettered,
        rate(&r),
        rate(&alone),
        rate(&r) / rate(&alone),
    );
}

#[test]
fn half_the_swarm_vanishing_mid_task_loses_nothing() {
    let mut cfg = SimConfig::honest(3, 60, 5_000);
    cfg.churn = Some((Millis(2_500), 50));
    let r = run(cfg);
    assert_sound(&r);
    assert_eq!(r.verified, 5_000, "{r:#?}");
    assert!(r.stats.requeued_on_leave > 0, "churn hit running work: {r:#?}");
}

#[test]
fn byzantine_mix_loses_nothing_and_accepts_nothing_wrong() {
    let mut cfg = SimConfig::honest(4, 0, 3_000);
    cfg.workers = vec![
        group(20, Behaviour::Honest),
        group(4, Behaviour::Slow(50)),
        group(4, Behaviour::Flaky(10)),
        group(3, Behaviour::Hanging(20)),
        group(3, Behaviour::Liar(30)),
        group(3, Behaviour::Throttled { every: Millis::from_secs(20), pause: Millis::from_secs(90) }),
        WorkerGroup { same_origin: true, ..WorkerGroup::of(10, Behaviour::Honest) },
    ];
    let r = run(cfg);
    assert_sound(&r);
    assert_eq!(r.wrong_accepted, 0, "{r:#?}");
    assert_eq!(r.verified + r.dead_lettered, 3_000, "{r:#?}");
    assert!(r.stats.timeouts > 0 && r.slashed > 0, "the mix really misbehaved: {r:#?}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn behaviour() -> impl Strategy<Value = Behaviour> {
        prop_oneof![
            Just(Behaviour::Honest),
            (2u32..20).prop_map(Behaviour::Slow),
            (1u32..30).prop_map(Behaviour::Flaky),
            (1u32..40).prop_map(Behaviour::Hanging),
            (1u32..100).prop_map(Behaviour::Decliner),
            (1u32..100).prop_map(Behaviour::Failer),
            (1u32..100).prop_map(Behaviour::Liar),
            (1u32..100).prop_map(Behaviour::Colluder),
            (10u64..60, 30u64..120)
                .prop_map(|(e, p)| Behaviour::Throttled { every: Millis::from_secs(e), pause: Millis::from_secs(p) }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the swarm does: no task is lost, every accepted result
        /// has a quorum of distinct workers on distinct origins, the books
        /// of every epoch balance exactly, and nobody honest is slashed
        /// unless colluders outvoted them.
        #[test]
        fn invariants_hold_for_any_swarm(
            seed in any::<u64>(),
            groups in prop::collection::vec((1usize..6, behaviour(), any::<bool>()), 1..6),
            honest in 3usize..10,
            tasks in 1usize..300,
            redundancy in 1u8..4,
            ringers in 0u32..20,
            churn in prop::option::of((1_000u64..20_000, 0u32..60)),
        ) {
            let mut cfg = SimConfig::honest(seed, honest, tasks);
            cfg.redundancy = redundancy;
            cfg.tasks_per_job = 50;
            cfg.coordinator.credibility.ringer_pct = ringers;
            cfg.coordinator.epoch.every_verified_tasks = Some(40);
            cfg.churn = churn.map(|(t, p)| (Millis(t), p));
            cfg.coordinator.task_ttl = Millis::from_mins(20);
            cfg.max_time = Millis::from_mins(30);
            for (count, behaviour, same_origin) in groups {
                cfg.workers.push(WorkerGroup { mflops: 5_000, same_origin, ..WorkerGroup::of(count, behaviour) });
            }
            let colluders = cfg.workers.iter().any(|g| matches!(g.behaviour, Behaviour::Colluder(_)));
            let liars = colluders || cfg.workers.iter().any(|g| matches!(g.behaviour, Behaviour::Liar(_)));
            let r = run(cfg);
            prop_assert_eq!(r.submitted, tasks);
            prop_assert_eq!(r.lost, 0, "{:#?}", r);
            prop_assert_eq!(r.quorum_violations, 0);
            prop_assert_eq!(r.unbalanced_epochs, 0);
            prop_assert_eq!(r.verified + r.dead_lettered + r.cancelled, tasks);
            if !colluders {
                prop_assert_eq!(r.honest_slashed, 0, "{:#?}", r);
            }
            if !liars {
                prop_assert_eq!(r.wrong_accepted, 0);
            }
        }
    }
}
