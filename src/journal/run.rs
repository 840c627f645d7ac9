//! [`RunJournal`]: one run's journal as the executor writes it.
//!
//! The executor pushes entries as they happen and flushes where the
//! write-ahead rule needs them durable (before a completed step's
//! dependents start, before and during unwinding, at the end). A flush
//! appends everything pushed since the last one in one call, so one
//! commit carries a whole level of the run's graph, and the store's
//! writer batches the flushes of concurrent runs together.
//!
//! A failing store is retried with backoff (10 ms doubling to 1 s) for up
//! to [`RETRY_FOR`]; an error that cannot pass (an unknown run, a corrupt
//! journal) is returned at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::record::{Entry, Record};
use super::store::{Store, StoreError};

/// How long a failing store is retried before a flush gives up.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(120);

/// One run's journal, shared by its coordinator and its undo stack.
pub(crate) struct RunJournal {
    store: Arc<dyn Store>,
    run_id: String,
    /// How many times the run has been taken up (1: its first start).
    epoch: u32,
    pending: Mutex<Pending>,
    /// Held while flushing, so that flushes land in order.
    flushing: tokio::sync::Mutex<()>,
    children: Mutex<Children>,
    /// The refusal that fenced this driver off, once one did.
    fenced: Mutex<Option<StoreError>>,
}

/// What names a step's nested runs: how many each step's attempt has
/// started, and how many times each step was replaced by a step of its
/// name (whose attempts count from 1 again).
#[derive(Default)]
struct Children {
    started: HashMap<(String, u32), u32>,
    replaced: HashMap<String, u32>,
}

struct Pending {
    next_seq: u64,
    records: Vec<Record>,
}

impl std::fmt::Debug for RunJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunJournal")
            .field("run_id", &self.run_id)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl RunJournal {
    /// The journal of run `run_id`, whose next record is `next_seq`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        run_id: String,
        next_seq: u64,
        epoch: u32,
    ) -> RunJournal {
        RunJournal {
            store,
            run_id,
            epoch,
            pending: Mutex::new(Pending {
                next_seq,
                records: Vec::new(),
            }),
            flushing: tokio::sync::Mutex::new(()),
            children: Mutex::default(),
            fenced: Mutex::default(),
        }
    }

    /// How many times the run has been taken up (1: its first start).
    pub(crate) fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The place of the next run nested in attempt `attempt` of `step`,
    /// from 0: the same, in order, every time the attempt runs.
    pub(crate) fn next_child(&self, step: &str, attempt: u32) -> u32 {
        let mut children = self.children();
        let n = children
            .started
            .entry((step.to_string(), attempt))
            .or_default();
        let this = *n;
        *n = n.saturating_add(1);
        this
    }

    /// The name of `step` in its nested runs' ids: `step`, or, once a step
    /// of its name replaced it `g` times, `step~g`, so that the
    /// replacement's attempts (counted from 1 again) do not take up the
    /// runs of the step it replaced.
    pub(crate) fn nested_name(&self, step: &str) -> String {
        match self.children().replaced.get(step) {
            Some(g) => format!("{step}~{g}"),
            None => step.to_string(),
        }
    }

    /// Sets how many times each step was replaced, as its journal says.
    pub(crate) fn with_replaced(self, replaced: HashMap<String, u32>) -> RunJournal {
        self.children().replaced = replaced;
        self
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `entry` to the next flush.
    pub(crate) fn push(&self, entry: Entry) {
        if let Entry::StepDone { step, emitted, .. } = &entry {
            if emitted.iter().any(|e| e.name == *step) {
                *self.children().replaced.entry(step.clone()).or_default() += 1;
            }
        }
        let mut p = self.lock();
        let seq = p.next_seq;
        p.next_seq += 1;
        p.records.push(Record::new(seq, entry));
    }

    /// Pushes `entry` and flushes.
    pub(crate) async fn write(&self, entry: Entry) -> Result<(), StoreError> {
        self.push(entry);
        self.flush().await
    }

    /// Makes everything pushed so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let _order = self.flushing.lock().await;
        let records = std::mem::take(&mut self.lock().records);
        if records.is_empty() {
            return Ok(());
        }
        match with_retry(&self.run_id, || {
            self.store.append(&self.run_id, self.epoch, &records)
        })
        .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    metrics::counter!("reactor_journal_fenced_total").increment(1);
                    *self.fenced.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    tracing::warn!(run_id = %self.run_id, error = %e, "the run was taken up elsewhere: this driver stops");
                }
                // Back in front of anything pushed since: no gap in `seq`.
                let mut p = self.lock();
                let later = std::mem::replace(&mut p.records, records);
                p.records.extend(later);
                Err(e)
            }
        }
    }

    /// The refusal that fenced this driver off (the run was taken up
    /// elsewhere), if one did.
    pub(crate) fn fenced(&self) -> Option<StoreError> {
        self.fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether entries wait for a flush.
    pub(crate) fn has_pending(&self) -> bool {
        !self.lock().records.is_empty()
    }
}

/// Appends `records`, retrying a transient failure with backoff.
pub(crate) async fn append_with_retry(
    store: &dyn Store,
    run_id: &str,
    epoch: u32,
    records: Vec<Record>,
) -> Result<(), StoreError> {
    with_retry(run_id, || store.append(run_id, epoch, &records)).await
}

/// Calls `op` until it succeeds, fails for good, or has failed for
/// [`RETRY_FOR`]: the one retry policy of store writes (and of the reads
/// taking a run up).
pub(crate) async fn with_retry<T, F, Fut>(run_id: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        match op().await {
            Err(e) if e.is_transient() && started.elapsed() < RETRY_FOR => {
                tracing::warn!(run_id, error = %e, "the journal store failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}
