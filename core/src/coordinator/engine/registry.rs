//! The worker registry: connections, hellos and tokens, admission by a
//! timed benchmark, load bookkeeping for dispatch, departures, refusals
//! and protocol violations. A worker's reputation lives here too, keyed by
//! its id so it survives reconnects.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::auth::verify_hello_proof;
use crate::coordinator::profile::{classify, WorkerClass};
use crate::coordinator::recovery::{encode, ns, AdmittedWorker};
use crate::ids::{AssignmentId, WorkerId};
use crate::shared_inputs::InputCache;
use crate::time::Millis;
use crate::wire::message::{DeviceInfo, ErrorCode, ErrorMessage, Goodbye, Hello, HelloAuth, Welcome};
use crate::wire::{Envelope, Message, PROTOCOL_VERSION};

use super::benchmarking::{Drift, Remeasure};
use super::dispatch::Release;
use super::ready::Caps;
use super::types::{ConnId, Event, OriginKey, Output};
use super::Coordinator;

/// Reputation that survives reconnects (and, persisted in
/// [`WorkerRecord`], restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reputation {
    /// Verified agreements and passed ringers since joining.
    pub(crate) agreed: u64,
    /// Caught lying.
    pub(crate) slashed: bool,
    /// Stake held.
    pub(crate) stake: u128,
}

/// A connected worker's slot in the coordinator's worker table (slots of
/// workers that left are reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct WorkerIdx(pub(super) u32);

/// Guests connected, in all and per network origin (their caps are apart
/// from `max_workers`).
#[derive(Debug, Default)]
pub(super) struct GuestCount {
    pub(super) total: usize,
    pub(super) by_origin: super::Map<OriginKey, usize>,
}

/// A worker id's number in this coordinator: given at its first hello,
/// never reused, the same across reconnects. Per-task lists (who tried a
/// task, whose results are undecided) hold it instead of the id: four
/// bytes, no reference count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct WorkerNum(pub(super) u32);

impl WorkerNum {
    /// Stands for a worker no longer registered.
    pub(super) const NONE: WorkerNum = WorkerNum(u32::MAX);
}

/// What the coordinator remembers of a worker id across reconnects.
#[derive(Clone, Copy, Debug)]
pub(super) struct NumRecord {
    pub(super) num: WorkerNum,
    /// The origin it first connected from.
    pub(super) origin: OriginKey,
    /// It has since connected from another: tasks it tried may carry an
    /// origin other than its current one, which dispatch's per-origin
    /// counts do not see (it walks the task list for this worker instead).
    pub(super) roamed: bool,
}

#[derive(Debug)]
pub(super) enum WorkerState {
    /// Running the benchmark.
    Profiling,
    /// Admitted, offering `caps` to dispatch.
    Active { class: WorkerClass, mflops: u64, caps: Caps },
}

#[derive(Debug)]
pub(super) struct Worker {
    pub(super) id: WorkerId,
    /// Joined without a token (counted against the guests' caps).
    pub(super) guest: bool,
    /// Offers that ended without a result (declined, failed, timed out)
    /// since its last result.
    pub(super) misses_in_row: u32,
    /// Stable number of this worker id (never reused, survives reconnects).
    pub(super) num: WorkerNum,
    /// This worker id connected from more than one origin (see
    /// [`NumRecord::roamed`]).
    pub(super) roamed: bool,
    pub(super) conn: ConnId,
    pub(super) origin: OriginKey,
    pub(super) device: DeviceInfo,
    pub(super) state: WorkerState,
    pub(super) capacity: u32,
    pub(super) in_flight: u32,
    pub(super) last_seen: Millis,
    /// Assignments in flight (inline up to a typical worker depth: the
    /// list is read on every result, and a separate allocation would be
    /// one more cache miss).
    pub(super) live: SmallVec<[AssignmentId; 16]>,
    /// Its delivered speed, watched for drift from its measured one.
    pub(super) drift: Drift,
    /// What it holds in its input cache, as far as offers tell.
    pub(super) cache: InputCache<()>,
}

impl Worker {
    pub(super) fn class(&self) -> Option<WorkerClass> {
        match self.state {
            WorkerState::Active { class, .. } => Some(class),
            WorkerState::Profiling => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) origin: OriginKey,
    /// The challenge this connection's hello must prove its token over.
    pub(super) nonce: [u8; 16],
    /// The host it was made to (what an identity must have signed).
    pub(super) host: Option<String>,
    pub(super) worker: Option<WorkerIdx>,
    pub(super) opened: Millis,
}

impl Coordinator {
    pub(super) fn refuse(&mut self, conn: ConnId, worker: Option<WorkerId>, code: ErrorCode, reason: String) {
        self.send(conn, Message::Error(ErrorMessage { code, assignment: None, message: reason.clone() }), vec![]);
        self.send(conn, Message::Goodbye(Goodbye { reason: reason.clone() }), vec![]);
        self.staged.push_back(Output::Close { conn, reason: reason.clone() });
        self.event(Event::WorkerRefused { worker, reason });
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(w) = c.worker {
                // Its open assignments go back (a refused worker's slot is
                // reused: none may seem to belong to the next worker).
                let live = self.worker(w).map(|x| x.live.clone()).unwrap_or_default();
                for aid in live {
                    let executing = self.assignments.get(&aid).is_some_and(|a| a.acked.is_some());
                    self.release(aid, &Release::Left { executing, why: "its worker was refused" });
                }
                self.remove_worker(w);
            }
        }
    }

    pub(super) fn on_envelope(&mut self, now: Millis, conn: ConnId, env: Envelope) {
        let Some(c) = self.conns.get(&conn) else { return };
        let widx = c.worker;
        if let Some(w) = widx.and_then(|i| self.worker_mut(i)) {
            w.last_seen = now;
        }
        match (env.message, widx) {
            (Message::Hello(h), None) => self.on_hello(now, conn, *h),
            (Message::Hello(_), Some(_)) => self.violation(conn, "second hello"),
            (_, None) => self.violation(conn, "the first message must be a hello"),
            (Message::TaskAck(a), Some(w)) => self.on_ack(now, conn, w, a.assignment),
            (Message::TaskDecline(d), Some(w)) => self.on_decline(conn, w, d.assignment, &d.reason),
            (Message::TaskResult(r), Some(w)) => self.on_result(now, conn, w, &r, env.attachments),
            (Message::BenchmarkCommit(c), Some(w)) => self.on_benchmark_commit(conn, w, c),
            (Message::InputRequest(r), Some(w)) => self.on_input_request(conn, w, r),
            (Message::Error(e), Some(w)) => {
                if let Some(a) = e.assignment {
                    self.on_failure(conn, w, a, &format!("{:?}: {}", e.code, e.message));
                }
            }
            (Message::Progress(_) | Message::Heartbeat(_), Some(_)) => {}
            (Message::Goodbye(g), Some(_)) => self.on_disconnect(conn, &format!("goodbye: {}", g.reason)),
            (
                Message::Welcome(_)
                | Message::TaskOffer(_)
                | Message::Cancel(_)
                | Message::Challenge(_)
                | Message::PayoutNotice(_)
                | Message::BenchmarkOffer(_)
                | Message::BenchmarkChallenge(_)
                | Message::InputData(_),
                Some(_),
            ) => {
                self.violation(conn, "workers do not send welcome, challenges, offers, cancels or payout notices");
            }
        }
    }

    /// Ends a worker's connection for its conduct: it is told why, its
    /// work goes back to the queue, and it leaves with that reason.
    pub(super) fn evict(&mut self, conn: ConnId, why: &str) {
        self.send(conn, Message::Goodbye(Goodbye { reason: why.into() }), vec![]);
        self.staged.push_back(Output::Close { conn, reason: why.into() });
        self.on_disconnect(conn, why);
    }

    pub(super) fn violation(&mut self, conn: ConnId, why: &str) {
        self.send(
            conn,
            Message::Error(ErrorMessage { code: ErrorCode::Malformed, assignment: None, message: why.into() }),
            vec![],
        );
        self.staged.push_back(Output::Close { conn, reason: why.into() });
        if self.conns.get(&conn).is_some_and(|c| c.worker.is_none()) {
            // Before its hello a connection is nobody: it is refused, so
            // the violation is seen and counted like any refusal.
            self.event(Event::WorkerRefused { worker: None, reason: why.into() });
        }
        self.on_disconnect(conn, why);
    }

    /// The id a hello may join under: a guest's assigned one, an
    /// identity's (its key's), or its own once its proof over this
    /// connection's challenge checks out.
    fn authenticate(&mut self, conn: ConnId, h: &Hello) -> Result<WorkerId, String> {
        if !matches!(h.auth, HelloAuth::Identity { .. }) && crate::identity::is_identity_id(&h.worker_id) {
            return Err(format!("worker ids starting `{}` belong to identities", crate::identity::IDENTITY_ID_PREFIX));
        }
        match (&h.auth, &self.secret) {
            (HelloAuth::Guest, _) if self.cfg.allow_guests => Ok(WorkerId::guest(self.ids.next())),
            (HelloAuth::Guest, _) => Err("guests are not allowed".into()),
            (HelloAuth::Identity { public_key, audience, signature, profile }, _) => {
                self.identity_allowed(&h.worker_id)?;
                let c = self.conns.get(&conn).ok_or("unknown connection")?;
                let reached = c.host.as_deref().ok_or("the connection named no host, so no identity can join on it")?;
                let signature = crate::wire::message::signature_whole(signature);
                let (nonce, profile) = (&c.nonce, profile.as_ref());
                crate::identity::verify_hello(
                    public_key,
                    &signature,
                    nonce,
                    (audience, reached),
                    profile,
                    &h.worker_id,
                )
                .map_err(|e| e.to_string())?;
                if let Some(p) = profile {
                    self.contributors.check(p)?;
                }
                // Only a proven key is listed as waiting for approval.
                if self.cfg.identities == crate::coordinator::config::IdentityPolicy::Approval {
                    self.contributors.check_approved(&h.worker_id)?;
                }
                Ok(h.worker_id.clone())
            }
            (HelloAuth::Proof(proof), Some(secret)) => {
                let nonce = self.conns.get(&conn).map(|c| c.nonce).ok_or("unknown connection")?;
                verify_hello_proof(secret, &h.worker_id, &nonce, h.max_concurrent, proof).map_err(|e| e.to_string())?;
                Ok(h.worker_id.clone())
            }
            // A token in the clear could be replayed by whoever saw it.
            (HelloAuth::Token(_), Some(_)) => {
                Err("a token is proven over the connection's challenge, never sent".into())
            }
            (HelloAuth::Token(_) | HelloAuth::Proof(_), None) => Ok(h.worker_id.clone()),
        }
    }

    /// Whether identities may join, and this one
    /// (`coordinator.identities`).
    fn identity_allowed(&self, id: &WorkerId) -> Result<(), String> {
        use crate::coordinator::config::IdentityPolicy;
        match &self.cfg.identities {
            IdentityPolicy::Open | IdentityPolicy::Approval => Ok(()),
            IdentityPolicy::Closed => Err("this coordinator takes no contributor identities".into()),
            IdentityPolicy::Allowlist(ids) if ids.iter().any(|a| a == id.as_str()) => Ok(()),
            IdentityPolicy::Allowlist(_) => Err(format!("identity {id} is not on this coordinator's allowlist")),
        }
    }

    pub(super) fn on_hello(&mut self, now: Millis, conn: ConnId, h: Hello) {
        if h.protocol_version != PROTOCOL_VERSION {
            let why = format!("protocol version {} is not {PROTOCOL_VERSION}", h.protocol_version);
            return self.refuse(conn, Some(h.worker_id), ErrorCode::ProtocolVersion, why);
        }
        let id = match self.authenticate(conn, &h) {
            Ok(id) => id,
            Err(why) => return self.refuse(conn, Some(h.worker_id), ErrorCode::Unauthorized, why),
        };
        if self.reputation.get(&id).is_some_and(|r| r.slashed) {
            return self.refuse(conn, Some(id), ErrorCode::Refused, "slashed for returning wrong results".into());
        }
        if let Some(&old) = self.by_id.get(&id) {
            // A reconnect replaces the old connection.
            let old_conn = self.worker_mut(old).map(|w| w.conn);
            if let Some(oc) = old_conn {
                self.staged.push_back(Output::Close { conn: oc, reason: "replaced by a new connection".into() });
                self.on_disconnect(oc, "replaced by a new connection");
            }
        }
        let Some(origin) = self.conns.get(&conn).map(|c| c.origin) else { return };
        if let HelloAuth::Identity { profile: Some(p), .. } = &h.auth {
            self.declare_profile(&id, p.clone());
        }
        let guest = matches!(h.auth, HelloAuth::Guest);
        if guest {
            // Guests have caps of their own, in all and per network, so
            // strangers never take the room of workers with a token.
            if self.guests.total >= self.cfg.max_guests {
                let why = format!("guests at capacity ({} guests)", self.cfg.max_guests);
                return self.refuse(conn, Some(id), ErrorCode::Busy, why);
            }
            if self.guests.by_origin.get(&origin).is_some_and(|&n| n >= self.cfg.max_guests_per_origin) {
                let why = format!("{} guests from this network already", self.cfg.max_guests_per_origin);
                return self.refuse(conn, Some(id), ErrorCode::Busy, why);
            }
        } else if !self.by_id.contains_key(&id)
            && self.by_id.len().saturating_sub(self.guests.total) >= self.cfg.max_workers
        {
            let why = format!("at capacity ({} workers)", self.cfg.max_workers);
            return self.refuse(conn, Some(id), ErrorCode::Busy, why);
        }
        let (num, roamed) = self.number(&id, origin);
        if guest {
            self.guests.total += 1;
            *self.guests.by_origin.entry(origin).or_default() += 1;
        }
        let mut worker = Worker {
            id: id.clone(),
            guest,
            misses_in_row: 0,
            num,
            roamed,
            conn,
            origin,
            device: h.device,
            state: WorkerState::Profiling,
            capacity: u32::from(h.max_concurrent.clamp(1, self.cfg.worker_queue.max(1))),
            in_flight: 0,
            last_seen: now,
            live: SmallVec::new(),
            drift: Drift::default(),
            cache: InputCache::new(h.cache_bytes.min(self.cfg.max_worker_cache_bytes)),
        };
        for held in &h.held {
            worker.cache.insert(held.digest, held.len, ());
        }
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.workers[i.0 as usize] = Some(worker);
                i
            }
            None => {
                self.workers.push(Some(worker));
                WorkerIdx((self.workers.len() - 1) as u32)
            }
        };
        self.by_id.insert(id.clone(), idx);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.worker = Some(idx);
        }
        self.reputation.entry(id.clone()).or_default();
        self.send(
            conn,
            Message::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                worker_id: id,
                heartbeat_interval_ms: self.cfg.heartbeat_interval.0 as u32,
                max_frame_payload: self.cfg.max_frame_payload,
            }),
            vec![],
        );
        // The benchmark: generated by the worker from a fresh seed, timed here.
        self.start_benchmark(now, idx, self.cfg.profile.benchmark_size, 0);
    }

    /// The number of a worker id (a new one at its first hello) and whether
    /// it ever connected from another origin than now.
    fn number(&mut self, id: &WorkerId, origin: OriginKey) -> (WorkerNum, bool) {
        let next = self.next_worker_num;
        let known = self.worker_nums.entry(id.clone()).or_insert(NumRecord { num: next, origin, roamed: false });
        known.roamed |= known.origin != origin;
        if known.num == next {
            self.next_worker_num.0 += 1;
        }
        (known.num, known.roamed)
    }

    pub(super) fn worker_mut(&mut self, idx: WorkerIdx) -> Option<&mut Worker> {
        self.workers.get_mut(idx.0 as usize).and_then(Option::as_mut)
    }

    pub(super) fn worker(&self, idx: WorkerIdx) -> Option<&Worker> {
        self.workers.get(idx.0 as usize).and_then(Option::as_ref)
    }

    /// Re-indexes a worker in the idle set after its load changed.
    pub(super) fn set_load(&mut self, idx: WorkerIdx, in_flight: u32) {
        let Some(w) = self.worker_mut(idx) else { return };
        // A worker missing offers gets one at a time until it delivers.
        let (old, cap) = (w.in_flight, if w.misses_in_row > 0 { 1 } else { w.capacity });
        w.in_flight = in_flight;
        // A worker due a measurement takes no new work; once its running
        // work is done its benchmark starts (at the end of the round).
        let measuring = w.drift.remeasure != Remeasure::Idle;
        if w.drift.remeasure == Remeasure::Due && in_flight == 0 {
            w.drift.remeasure = Remeasure::Running;
            self.remeasure_ready.push(idx);
        }
        let Some(w) = self.worker(idx) else { return };
        let WorkerState::Active { caps, .. } = w.state else { return };
        self.idle.remove(caps, old, idx);
        if in_flight < cap && !measuring {
            self.idle.insert(caps, in_flight, idx);
        }
    }

    pub(super) fn remove_worker(&mut self, idx: WorkerIdx) {
        let Some(w) = self.workers.get_mut(idx.0 as usize).and_then(Option::take) else { return };
        if w.guest {
            self.guests.total = self.guests.total.saturating_sub(1);
            if let Some(n) = self.guests.by_origin.get_mut(&w.origin) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.guests.by_origin.remove(&w.origin);
                }
            }
        }
        if let WorkerState::Active { caps, .. } = w.state {
            self.idle.remove(caps, w.in_flight, idx);
            if let Some(n) = self.active_caps.get_mut(&caps) {
                *n -= 1;
                if *n == 0 {
                    self.active_caps.remove(&caps);
                }
            }
        }
        self.by_id.remove(&w.id);
        self.free_slots.push(idx);
    }

    pub(super) fn on_disconnect(&mut self, conn: ConnId, why: &str) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(idx) = c.worker else { return };
        let Some(w) = self.worker(idx) else { return };
        let (id, live, num) = (w.id.clone(), w.live.clone(), w.num);
        for aid in live {
            let executing = self.assignments.get(&aid).is_some_and(|a| a.acked.is_some());
            self.stats.requeued_on_leave += 1;
            let reason = format!("{id} left ({why})");
            self.release(aid, &Release::Left { executing, why: &reason });
        }
        self.remove_worker(idx);
        self.forget_guest(&id, num);
        self.event(Event::WorkerLeft { worker: id, reason: why.into() });
    }

    /// A guest never comes back under the same id, so once it left with no
    /// undecided result its bookkeeping goes (otherwise tabs connecting and
    /// leaving would grow the coordinator's memory without bound). Its
    /// epoch earnings stay until the epoch closes.
    pub(super) fn forget_guest(&mut self, id: &WorkerId, num: WorkerNum) {
        if !id.as_str().starts_with("guest-") || self.undecided.get(&num).is_some_and(|l| !l.is_empty()) {
            return;
        }
        self.undecided.remove(&num);
        self.worker_nums.remove(id);
        if self.reputation.get(id).is_some_and(|r| !r.slashed) {
            self.reputation.remove(id);
        }
    }

    /// Admits worker `w` at its measured speed, or (measured again)
    /// classifies it anew; refuses it when the speed or its memory is
    /// below the policy's minimum.
    pub(super) fn admit(&mut self, now: Millis, conn: ConnId, w: WorkerIdx, measured: u64) {
        let Some(worker) = self.worker(w) else { return };
        let (id, alloc, backend) = (worker.id.clone(), worker.device.max_buffer_bytes, worker.device.backend);
        let was = match worker.state {
            WorkerState::Active { caps, .. } => Some(caps),
            WorkerState::Profiling => None,
        };
        match classify(&self.cfg.profile, measured, alloc) {
            Ok(p) => {
                // Measured again: its old capabilities no longer count
                // (on a refusal, removing the worker uncounts them).
                if let Some(n) = was.and_then(|caps| self.active_caps.get_mut(&caps)) {
                    *n -= 1;
                }
                self.active_caps.retain(|_, n| *n > 0);
                let class = WorkerClass { backend, tier: p.tier };
                let Some(caps) = self.worker(w).map(|x| Caps::of(class, &x.device)) else { return };
                let quiet_until = now + self.cfg.profile.drift_quiet;
                if let Some(worker) = self.worker_mut(w) {
                    worker.state = WorkerState::Active { class, mflops: p.mflops, caps };
                    worker.drift.remeasure = Remeasure::Idle;
                    worker.drift.quiet_until = quiet_until;
                }
                *self.active_caps.entry(caps).or_insert(0) += 1;
                let load = self.worker(w).map_or(0, |x| x.in_flight);
                self.set_load(w, load);
                let rec = encode(&AdmittedWorker { class, mflops: p.mflops, admitted: now });
                self.ledger.put(ns::WORKER, id.as_str().as_bytes().to_vec(), rec);
                self.event(Event::WorkerAdmitted { worker: id, class, mflops: p.mflops });
            }
            Err(refusal) => self.refuse(conn, Some(id), ErrorCode::Refused, refusal.to_string()),
        }
    }
}
