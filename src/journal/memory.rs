//! [`MemoryStore`]: journals kept in memory, for tests and for runs that
//! must be addressable by id without surviving the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::record::{now_ms, Record, RunStatus};
use super::store::{fence, Created, Journal, NewRun, RunSummary, Store, StoreError};

/// A [`Store`] in memory: nothing survives the process.
///
/// # Examples
///
/// ```
/// use reactor::journal::{MemoryStore, RunStatus, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::journal::StoreError> {
/// let store = MemoryStore::new();
/// assert!(store.runs(Some(RunStatus::Running)).await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Runs in creation order, with their records by `seq` and the epoch
    /// that owns them.
    runs: Vec<(RunSummary, BTreeMap<u64, Record>, u32)>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        if let Some(key) = &run.idempotency_key {
            if let Some(&i) = inner.by_key.get(key) {
                return Ok(Created::Existing(inner.runs[i].0.id.clone()));
            }
        }
        if inner.by_id.contains_key(&run.id) {
            return Err(StoreError::RunExists(run.id));
        }
        let now = now_ms();
        let summary = RunSummary {
            id: run.id.clone(),
            reactor: run.reactor,
            status: run.first.entry.status().unwrap_or(RunStatus::Running),
            idempotency_key: run.idempotency_key.clone(),
            created_ms: now,
            updated_ms: now,
        };
        let i = inner.runs.len();
        inner
            .runs
            .push((summary, BTreeMap::from([(run.first.seq, run.first)]), 1));
        inner.by_id.insert(run.id, i);
        if let Some(key) = run.idempotency_key {
            inner.by_key.insert(key, i);
        }
        Ok(Created::New)
    }

    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let i = *inner
            .by_id
            .get(run_id)
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
        let (summary, journal, owner) = &mut inner.runs[i];
        let next = journal.keys().next_back().map_or(0, |s| s + 1);
        *owner = fence(run_id, *owner, epoch, records, || Ok(next))?;
        for record in records {
            if journal.contains_key(&record.seq) {
                continue;
            }
            if let Some(status) = record.entry.status() {
                summary.status = status;
            }
            journal.insert(record.seq, record.clone());
        }
        summary.updated_ms = now_ms();
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<Journal, StoreError> {
        let inner = self.lock();
        let i = *inner
            .by_id
            .get(run_id)
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
        let (summary, journal, _) = &inner.runs[i];
        Journal::checked(summary.clone(), journal.values().cloned().collect())
    }

    async fn purge(&self, ended_before_ms: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let purged: std::collections::HashSet<String> = inner
            .runs
            .iter()
            .map(|(s, ..)| s)
            .filter(|s| {
                !s.id.contains('/') && s.status.is_finished() && s.updated_ms < ended_before_ms
            })
            .map(|s| s.id.clone())
            .collect();
        let before = inner.runs.len();
        inner
            .runs
            .retain(|(s, ..)| !purged.contains(s.id.split('/').next().unwrap_or(&s.id)));
        let Inner {
            runs,
            by_id,
            by_key,
        } = &mut *inner;
        by_id.clear();
        by_key.clear();
        for (i, (s, ..)) in runs.iter().enumerate() {
            by_id.insert(s.id.clone(), i);
            if let Some(key) = &s.idempotency_key {
                by_key.insert(key.clone(), i);
            }
        }
        Ok((before - runs.len()) as u64)
    }

    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        Ok(self
            .lock()
            .runs
            .iter()
            .map(|(s, ..)| s)
            .filter(|s| status.is_none_or(|st| s.status == st))
            .cloned()
            .collect())
    }
}
