//! The committer's side of the pipeline: each group of batches made
//! durable in one transaction, then what the core decided performed in
//! order (frames to workers, closes, events, replies).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shoal_core::coordinator::ledger::StateDiff;
use shoal_core::coordinator::{ConnId, Event, Output};
use shoal_core::wire::message::Goodbye;
use shoal_core::wire::{Envelope, Message};
use shoal_core::Millis;

use super::retention::Batch;
use super::{Command, Committer, Outbound, TimedEvent};
use crate::store::{Commit, StoreError};

/// Envelopes of one batch, grouped by connection in first-seen order.
#[derive(Default)]
struct Outbox {
    order: Vec<ConnId>,
    by_conn: HashMap<ConnId, Vec<Envelope>>,
}

impl Outbox {
    fn push(&mut self, conn: ConnId, envelope: Envelope) {
        self.by_conn
            .entry(conn)
            .or_insert_with(|| {
                self.order.push(conn);
                Vec::new()
            })
            .push(envelope);
    }

    fn take(&mut self, conn: ConnId) -> Option<Vec<Envelope>> {
        self.by_conn.remove(&conn)
    }

    fn drain(&mut self) -> impl Iterator<Item = (ConnId, Vec<Envelope>)> + '_ {
        let by_conn = &mut self.by_conn;
        self.order.drain(..).filter_map(move |c| by_conn.remove(&c).map(|e| (c, e)))
    }
}

impl Committer {
    pub(super) fn run(mut self) -> Result<(), StoreError> {
        while let Ok(first) = self.rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = self.rx.try_recv() {
                group.push(more);
            }
            let diffs: Vec<StateDiff> = group.iter_mut().flat_map(|f| std::mem::take(&mut f.diffs)).collect();
            let records = Batch::merge(group.iter_mut().map(|f| std::mem::take(&mut f.records)));
            let clock = group.iter().map(|f| f.clock).max().unwrap_or_default();
            if !diffs.is_empty() || !records.is_empty() {
                let started = std::time::Instant::now();
                let Batch { jobs, deleted: deleted_jobs, ended_rows } = records;
                let commit = Commit { diffs: &diffs, clock, jobs, retain: self.retain, deleted_jobs, ended_rows };
                self.store.commit(&commit)?;
                metrics::histogram!("shoal_commit_seconds").record(started.elapsed().as_secs_f64());
                self.gauges.commits.fetch_add(1, Ordering::Relaxed);
            }
            // Durable: now act, batch by batch, in order.
            for d in diffs {
                let _ = self.diffs.send(Arc::new(d));
            }
            let mut stop = false;
            for f in group {
                self.perform(f.registrations, f.actions, f.clock);
                for r in f.replies {
                    r();
                }
                self.durable.store(f.batch, Ordering::Release);
                stop |= f.stop;
            }
            if stop {
                self.goodbye_all();
                return Ok(());
            }
        }
        Ok(())
    }

    fn perform(
        &mut self,
        registrations: Vec<(ConnId, Option<tokio::sync::mpsc::Sender<Outbound>>)>,
        actions: Vec<Output>,
        now: Millis,
    ) {
        for (conn, tx) in registrations {
            match tx {
                Some(tx) => {
                    self.conns.insert(conn, tx);
                }
                None => {
                    self.conns.remove(&conn);
                }
            }
        }
        let mut outbox = Outbox::default();
        for a in actions {
            match a {
                Output::Send { conn, envelope } => outbox.push(conn, envelope),
                Output::Close { conn, reason } => {
                    if let Some(envelopes) = outbox.take(conn) {
                        self.deliver(conn, envelopes);
                    }
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.try_send(Outbound::Close(reason));
                    }
                }
                Output::Event(event) => {
                    crate::metrics::record_event(&event);
                    log_event(&event);
                    if matches!(event, Event::EpochSettled(_)) {
                        let _ = self.settlements.send(TimedEvent { at: now, event: event.clone() });
                    }
                    let _ = self.events.send(TimedEvent { at: now, event });
                }
                Output::Persist(_) | Output::Answer { .. } => {}
            }
        }
        for (conn, envelopes) in outbox.drain() {
            self.deliver(conn, envelopes);
        }
    }

    /// Hands a connection what a batch produced for it.
    fn deliver(&mut self, conn: ConnId, envelopes: Vec<Envelope>) {
        let Some(tx) = self.conns.get(&conn) else { return };
        if let Err(e) = tx.try_send(Outbound::Envelopes(envelopes)) {
            // Full: the worker does not keep up; closed: it is gone.
            // Either way the core hears it left, and re-queues its work.
            if matches!(e, tokio::sync::mpsc::error::TrySendError::Full(_)) {
                tracing::warn!(%conn, "worker too slow to read its queue; disconnecting");
                metrics::counter!("shoal_ws_disconnects_total", "reason" => "slow").increment(1);
            }
            self.conns.remove(&conn);
            let reason = if matches!(e, tokio::sync::mpsc::error::TrySendError::Full(_)) {
                "too slow to read its queue"
            } else {
                "connection gone"
            };
            let _ = self.engine.send(Command::Disconnected { conn, reason: reason.into() });
        }
    }

    /// Last words to every worker at shutdown; their connections close.
    fn goodbye_all(&mut self) {
        for (conn, tx) in self.conns.drain() {
            let bye = Envelope::bare(Message::Goodbye(Goodbye { reason: "coordinator shutting down".into() }));
            let _ = tx.try_send(Outbound::Envelopes(vec![bye]));
            let _ = tx.try_send(Outbound::Close("coordinator shutting down".into()));
            tracing::debug!(%conn, "closed at shutdown");
        }
    }
}

/// Operators see joins, refusals, departures, slashes and epochs in the log.
fn log_event(event: &Event) {
    match event {
        Event::WorkerAdmitted { worker, class, mflops } => {
            tracing::info!(%worker, backend = ?class.backend, tier = class.tier as u8, mflops, "worker admitted");
        }
        Event::WorkerRefused { worker, reason } => {
            tracing::info!(worker = ?worker.as_ref().map(ToString::to_string), %reason, "worker refused");
        }
        Event::WorkerLeft { worker, reason } => tracing::info!(%worker, %reason, "worker left"),
        Event::WorkerSlashed { worker, reason, .. } => tracing::warn!(%worker, %reason, "worker slashed"),
        Event::EpochSettled(s) => tracing::info!(epoch = s.epoch, digest = %s.digest, "epoch settled"),
        _ => {}
    }
}
