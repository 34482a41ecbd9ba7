//! Contributor identities through the real coordinator and real worker
//! sessions, in memory: a key joins under its own worker id and keeps its
//! record across connections; a hello relayed to another coordinator, a
//! key the policy does not take, and a token worker posing as an identity
//! are refused.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::sessions::{hello, pump, pump_signing, Signers};
use support::Store;

use bytes::Bytes;
use shoal_core::coordinator::{
    ConnId, ContributorSort, Coordinator, CoordinatorConfig, IdentityPolicy, Input, JobSpec, OriginKey, TaskSpec,
};
use shoal_core::identity::{Identity, Profile};
use shoal_core::kernels::{KernelSpec, Sha256Params};
use shoal_core::wire::message::HelloAuth;
use shoal_core::worker::{IdentityHello, IdentityKey, SessionState, WorkerSession};
use shoal_core::{Millis, WorkerId};

const HOST: &str = "coord.example:443";

fn config(identities: IdentityPolicy) -> CoordinatorConfig {
    let mut cfg = CoordinatorConfig::default();
    cfg.profile.benchmark_size = 16;
    cfg.profile.benchmark_max_size = 16;
    cfg.profile.min_mflops = 1;
    cfg.identities = identities;
    cfg
}

fn session(seed: u8, audience: &str) -> WorkerSession {
    WorkerSession::with_identity(
        hello("ignored"),
        IdentityHello::held(Identity::from_seed(&[seed; 32]), audience.into()),
    )
}

/// A session whose key is outside it (a browser's WebCrypto key), declaring `profile`.
fn external(seed: u8, profile: Option<Profile>) -> WorkerSession {
    let key = IdentityKey::External { public_key: Identity::from_seed(&[seed; 32]).public_key() };
    WorkerSession::with_identity(hello("ignored"), IdentityHello { key, audience: HOST.into(), profile })
}

fn connect(c: &mut Coordinator, now: Millis, conn: u64) {
    c.handle(now, Input::Connected { conn: ConnId(conn), origin: OriginKey(conn), host: Some(HOST.into()) });
}

#[test]
fn an_identity_keeps_its_record_across_connections() {
    // Tokens are enforced (a secret is set); identities need none.
    let secret = shoal_core::auth::MasterSecret::new(vec![5; 32]).expect("a secret");
    let mut c = Coordinator::new(config(IdentityPolicy::Open), Some(secret), [3; 32]);
    let mut now = Millis(10_000);
    let mut sessions: Vec<WorkerSession> = (0..3).map(|i| session(i + 1, HOST)).collect();
    for i in 0..3 {
        connect(&mut c, now, i);
    }
    pump(&mut c, &mut sessions, &mut now);
    let me = Identity::from_seed(&[1; 32]).worker_id();
    assert!(
        matches!(sessions[0].state(), SessionState::Working { worker_id } if *worker_id == me),
        "{:?}",
        sessions[0].state()
    );
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 });
    let tasks: Vec<TaskSpec> = (0..6u64)
        .map(|i| TaskSpec {
            kernel: kernel.clone(),
            inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
        })
        .collect();
    let job = c.submit_job(now, JobSpec::new(tasks)).expect("accepted");
    pump(&mut c, &mut sessions, &mut now);
    assert!(c.job_progress(job).expect("known").finished());
    let before = c.worker_view(&me).expect("connected").agreed;
    assert!(before > 0, "the identity did verified work");

    // The tab closes; the same key comes back on a new connection.
    c.handle(now, Input::Disconnected { conn: ConnId(0), reason: "tab closed".into() });
    assert!(c.worker_view(&me).is_none());
    sessions.push(session(1, HOST));
    connect(&mut c, now, 3);
    sessions[0] = session(9, HOST); // never connected: stays greeting
    pump(&mut c, &mut sessions, &mut now);
    assert!(matches!(sessions[3].state(), SessionState::Working { worker_id } if *worker_id == me));
    assert_eq!(c.worker_view(&me).expect("back").agreed, before, "its record is the key's, not the connection's");
}

#[test]
fn relayed_unlisted_and_impostor_hellos_are_refused() {
    let mut now = Millis(10_000);
    // A hello signed for another coordinator (a relay in the middle).
    let mut c = Coordinator::new(config(IdentityPolicy::Open), None, [3; 32]);
    let mut sessions = vec![session(1, "evil.example")];
    connect(&mut c, now, 0);
    let closed = pump(&mut c, &mut sessions, &mut now);
    assert!(closed.iter().any(|(_, why)| why.contains("signed for `evil.example`")), "{closed:?}");

    // Policies: closed refuses every key; an allowlist takes only its own.
    let listed = Identity::from_seed(&[2; 32]).worker_id();
    for (policy, seed, admitted) in [
        (IdentityPolicy::Closed, 2, false),
        (IdentityPolicy::Allowlist(vec![listed.to_string()]), 2, true),
        (IdentityPolicy::Allowlist(vec![listed.to_string()]), 3, false),
    ] {
        let mut c = Coordinator::new(config(policy.clone()), None, [3; 32]);
        let mut sessions = vec![session(seed, HOST)];
        connect(&mut c, now, 0);
        let closed = pump(&mut c, &mut sessions, &mut now);
        let working = matches!(sessions[0].state(), SessionState::Working { .. });
        assert_eq!(working, admitted, "{policy:?} seed {seed}: {closed:?}");
    }

    // A token worker (here: a closed swarm that checks no tokens) may not
    // take an identity's id.
    let mut c = Coordinator::new(config(IdentityPolicy::Open), None, [3; 32]);
    let mut impostor = hello(listed.as_str());
    impostor.auth = HelloAuth::Token(String::new());
    let mut sessions = vec![WorkerSession::new(impostor)];
    connect(&mut c, now, 0);
    let closed = pump(&mut c, &mut sessions, &mut now);
    assert!(closed.iter().any(|(_, why)| why.contains("belong to identities")), "{closed:?}");
}

#[test]
fn a_declared_payout_address_is_the_keys_and_is_paid_to() {
    let mut cfg = config(IdentityPolicy::Open);
    cfg.epoch.every = None;
    cfg.rewards.min_tasks = 1;
    cfg.payout_pattern = "0x[0-9a-f]{8}".into();
    let mut c = Coordinator::new(cfg.clone(), None, [3; 32]);
    let mut store = Store::default();
    let mut now = Millis(10_000);
    let site = Profile { payout: "0x00c0ffee".into(), name: "Ada".into(), team: "Analytical".into() };
    // Two tabs of one site (their keys sign outside the session), one without a profile.
    let mut sessions = vec![external(1, Some(site.clone())), external(2, Some(site.clone())), external(3, None)];
    let signers: Signers = (0..3).map(|i| (i, Identity::from_seed(&[i as u8 + 1; 32]))).collect();
    for i in 0..3 {
        connect(&mut c, now, i);
    }
    pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    assert!(sessions.iter().all(|s| matches!(s.state(), SessionState::Working { .. })), "all joined");
    let tab = Identity::from_seed(&[1; 32]).worker_id();
    assert_eq!(c.profile(&tab), Some(&site));
    let kernel = KernelSpec::Sha256(Sha256Params { count: 4, message_len: 64 });
    let tasks: Vec<TaskSpec> = (0..9u64)
        .map(|i| TaskSpec {
            kernel: kernel.clone(),
            inputs: kernel.seeded_inputs(i).into_iter().map(Bytes::from).collect(),
        })
        .collect();
    let job = c.submit_job(now, JobSpec::new(tasks)).expect("accepted");
    pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    assert!(c.job_progress(job).expect("known").finished());
    c.close_epoch(now);
    let pumped = pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    let settled = c.epochs().last().cloned().expect("settled");
    // Each connected payee is told what it got, its rank and its total.
    let payees = settled.payouts.iter().filter(|p| p.amount + p.bounty > 0).count() as u32;
    assert_eq!(pumped.paid.len(), 3, "{:?}", pumped.paid);
    let mut ranks: Vec<u32> = pumped.paid.iter().map(|(_, n)| n.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=payees).collect::<Vec<_>>());
    for (i, n) in &pumped.paid {
        let me = Identity::from_seed(&[*i as u8 + 1; 32]).worker_id();
        let p = settled.payouts.iter().find(|p| p.worker == me).expect("paid");
        assert_eq!((n.epoch, n.amount, n.bounty, n.total), (settled.epoch, p.amount, p.bounty, p.amount + p.bounty));
    }
    let paid: Vec<&WorkerId> = settled.addresses.iter().map(|a| &a.worker).collect();
    assert!(paid.contains(&&tab), "{:?}", settled.addresses);
    assert!(settled.addresses.iter().all(|a| a.address == site.payout), "only declared addresses");
    let silent = Identity::from_seed(&[3; 32]).worker_id();
    assert!(!paid.contains(&&silent) && settled.payouts.iter().any(|p| p.worker == silent), "paid, no address");

    // The leaderboard of all time and the teams: the two tabs of the site are one team.
    let (total, top) = c.contributors_page(ContributorSort::Earned, 0, 2);
    assert_eq!((total, top.len()), (3, 2), "every identity with a record");
    assert!(top[0].earned >= top[1].earned && top.iter().all(|v| v.earned > 0), "{top:?}");
    let teams = c.teams(10);
    assert_eq!(teams.len(), 1, "{teams:?}");
    assert_eq!((teams[0].name.as_str(), teams[0].members), ("Analytical", 2));
    let silent_paid = c.contributor(&silent).expect("known").earned;
    assert_eq!(teams[0].earned + silent_paid, settled.payouts.iter().map(|p| p.amount + p.bounty).sum::<u128>());

    // A restart on the stored entries keeps the profile and the settled addresses.
    let back = Coordinator::recover(cfg.clone(), None, [4; 32], now, store.snapshot());
    assert_eq!(back.profile(&tab), Some(&site));
    assert_eq!(back.epochs().last().map(|s| (&s.addresses, s.digest)), Some((&settled.addresses, settled.digest)));
    assert_eq!(back.contributor(&tab).expect("known").profile, site);
    assert_eq!(back.teams(10), teams, "totals are rebuilt from the settled epochs");

    // An address the operator's pattern refuses, or one changed under
    // another key's signature, is refused; the record keeps the old one.
    let mut c = back;
    let mut sessions = vec![external(1, Some(Profile { payout: "not-hex".into(), ..Profile::default() }))];
    connect(&mut c, now, 0);
    let closed = pump_signing(&mut c, &mut sessions, &signers, &mut now, None);
    assert!(closed.iter().any(|(_, why)| why.contains("does not match")), "{closed:?}");
    let mut sessions = vec![external(1, Some(Profile { payout: "0xdeadbeef".into(), ..Profile::default() }))];
    let thief: Signers = [(0, Identity::from_seed(&[9; 32]))].into_iter().collect();
    connect(&mut c, now, 0);
    let closed = pump_signing(&mut c, &mut sessions, &thief, &mut now, None);
    assert!(closed.iter().any(|(_, why)| why.contains("signature")), "{closed:?}");
    assert_eq!(c.profile(&tab), Some(&site));
}

#[test]
fn an_identity_waits_for_the_operators_approval() {
    use shoal_core::coordinator::{Answer, Command};
    let cfg = config(IdentityPolicy::Approval);
    let mut c = Coordinator::new(cfg.clone(), None, [3; 32]);
    let mut store = Store::default();
    let mut now = Millis(10_000);
    let me = Identity::from_seed(&[1; 32]).worker_id();
    let signers = Signers::new();
    let mut sessions = vec![session(1, HOST)];
    connect(&mut c, now, 0);
    let closed = pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    assert!(closed.iter().any(|(_, why)| why.contains("awaits the operator's approval")), "{closed:?}");
    assert_eq!(c.pending_identities(), vec![me.clone()]);
    // A key that cannot sign is never listed.
    let mut forged = vec![session(2, "evil.example")];
    connect(&mut c, now, 0);
    pump_signing(&mut c, &mut forged, &signers, &mut now, Some(&mut store));
    assert_eq!(c.pending_identities(), vec![me.clone()]);

    let approve = |c: &mut Coordinator, store: &mut Store, now: Millis, approve: bool| {
        let command = Command::ApproveIdentity { worker: me.clone(), approve };
        c.handle(now, Input::Command { ticket: shoal_core::coordinator::Ticket(1), command });
        let out: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
        store.absorb(&out);
        out.into_iter().find_map(|o| match o {
            shoal_core::coordinator::Output::Answer { answer: Answer::IdentityApproval(changed), .. } => Some(changed),
            _ => None,
        })
    };
    assert_eq!(approve(&mut c, &mut store, now, true), Some(true));
    assert!(c.pending_identities().is_empty() && c.is_approved(&me));
    let back = Coordinator::recover(cfg.clone(), None, [4; 32], now, store.snapshot());
    assert!(back.is_approved(&me), "an approval is kept across restarts");
    let mut sessions = vec![session(1, HOST)];
    connect(&mut c, now, 0);
    pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    assert!(matches!(sessions[0].state(), SessionState::Working { .. }), "approved: admitted");

    // Withdrawn: disconnected at once, refused after.
    assert_eq!(approve(&mut c, &mut store, now, false), Some(true));
    assert!(c.worker_view(&me).is_none(), "withdrawn: disconnected");
    assert_eq!(approve(&mut c, &mut store, now, false), Some(false), "already withdrawn");
    let mut sessions = vec![session(1, HOST)];
    connect(&mut c, now, 0);
    let closed = pump_signing(&mut c, &mut sessions, &signers, &mut now, Some(&mut store));
    assert!(closed.iter().any(|(_, why)| why.contains("awaits")), "{closed:?}");
}
