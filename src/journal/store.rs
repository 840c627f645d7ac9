//! The [`Store`] trait: where journals are kept, and what every store
//! promises.
//!
//! A store keeps runs (a row each: id, reactor, status, idempotency key)
//! and their journals. Its promises, checked against every store by one
//! conformance suite (`tests/journal_store.rs`):
//!
//! 1. [`Store::create_run`] writes the run and its first record
//!    atomically; a second run with a used idempotency key writes nothing
//!    and returns the first run's id.
//! 2. [`Store::append`] is atomic per call and durable when it returns
//!    `Ok`; appending a record whose `seq` is already stored changes
//!    nothing (a retried append is harmless).
//! 3. The run's status follows [`Entry::status`] of what is appended, in
//!    the same transaction.
//! 4. [`Store::load`] returns the records in `seq` order, and reports a
//!    journal with a gap or a record it cannot read as
//!    [`StoreError::Corrupt`], never a panic.

use async_trait::async_trait;

use super::record::{Entry, Record, RunStatus};

/// An error of a store.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or written (may pass: retried).
    #[error("the journal store failed: {0}")]
    Backend(String),
    /// A run of this id is already stored.
    #[error("a run `{0}` is already in the journal store")]
    RunExists(String),
    /// No run of this id is stored.
    #[error("no run `{0}` in the journal store")]
    UnknownRun(String),
    /// A run's journal cannot be read.
    #[error("the journal of run `{run_id}` is corrupt at record {seq}: {problem}")]
    Corrupt {
        /// The run.
        run_id: String,
        /// The first record that cannot be read (or is missing).
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// The store was closed.
    #[error("the journal store is closed")]
    Closed,
}

impl StoreError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

/// A run about to be stored, with its first record.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The run's id.
    pub id: String,
    /// The reactor's name.
    pub reactor: String,
    /// Deduplicates submissions: a second run with the same key is not
    /// created.
    pub idempotency_key: Option<String>,
    /// The run's first record (`seq` 0, [`Entry::RunStarted`]).
    pub first: Record,
}

/// What [`Store::create_run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// The run was stored.
    New,
    /// A run with the same idempotency key exists: this is its id.
    Existing(String),
}

/// A stored run, without its journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// Its reactor's name.
    pub reactor: String,
    /// Where it stands.
    pub status: RunStatus,
    /// Its idempotency key, if it was given one.
    pub idempotency_key: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it was last written.
    pub updated_ms: u64,
}

/// A run and its records, in `seq` order.
#[derive(Clone, Debug)]
pub struct Journal {
    /// The run.
    pub run: RunSummary,
    /// Its records, numbered from 0 with no gap.
    pub records: Vec<Record>,
}

impl Journal {
    /// Checks that the records are numbered 0, 1, 2, ... and begin with
    /// the run's start: the check every store's `load` makes.
    pub fn checked(run: RunSummary, records: Vec<Record>) -> Result<Journal, StoreError> {
        for (i, r) in records.iter().enumerate() {
            if r.seq != i as u64 {
                return Err(StoreError::Corrupt {
                    run_id: run.id.clone(),
                    seq: i as u64,
                    problem: format!("record {i} is missing (found record {} there)", r.seq),
                });
            }
        }
        if !matches!(
            records.first().map(|r| &r.entry),
            Some(Entry::RunStarted { .. })
        ) {
            return Err(StoreError::Corrupt {
                run_id: run.id.clone(),
                seq: 0,
                problem: "the journal does not begin with the run's start".to_string(),
            });
        }
        Ok(Journal { run, records })
    }
}

/// Where durable runs keep their journals.
///
/// Object-safe: a runtime holds an `Arc<dyn Store>`. Implementations:
/// [`MemoryStore`](crate::journal::MemoryStore) and
/// [`SqliteStore`](crate::journal::SqliteStore).
///
/// # Examples
///
/// ```
/// use reactor::journal::{Entry, MemoryStore, NewRun, Record, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::journal::StoreError> {
/// let store = MemoryStore::new();
/// let first = Record::new(0, Entry::RunStarted {
///     reactor: "r".into(), def_hash: "h".into(), definition: vec![],
///     inputs: Default::default(), idempotency_key: None,
/// });
/// store.create_run(NewRun { id: "run-1".into(), reactor: "r".into(), idempotency_key: None, first }).await?;
/// store.append("run-1", &[Record::new(1, Entry::Halted)]).await?;
/// let journal = store.load("run-1").await?;
/// assert_eq!(journal.records.len(), 2);
/// assert_eq!(journal.run.status, reactor::journal::RunStatus::Halted);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new run and its first record, atomically; with an
    /// idempotency key already used, stores nothing and returns the
    /// existing run's id.
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError>;

    /// Appends records to a run's journal, atomically and durably; records
    /// whose `seq` is already stored are left as they are.
    async fn append(&self, run_id: &str, records: &[Record]) -> Result<(), StoreError>;

    /// A run and its whole journal.
    async fn load(&self, run_id: &str) -> Result<Journal, StoreError>;

    /// The stored runs, of one status or all, oldest first.
    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError>;
}
