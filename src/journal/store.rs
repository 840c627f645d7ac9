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
//! 5. Fencing: a run is owned by an epoch (1 when created). An append
//!    whose records include [`Entry::Resumed`] claims the run for that
//!    epoch, which must be newer than the owner's and the append's own; any
//!    other append must be made by the owner's epoch. Anything else is
//!    refused with [`StoreError::Fenced`], before anything is stored, in
//!    the append's transaction: of two processes taking up one run, one
//!    wins, and a driver that lost its run can no longer write to it
//!    ([`fence`]).

use async_trait::async_trait;
use tokio::sync::oneshot;

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
    /// The data directory is used by another runtime (another process,
    /// or another runtime of this one).
    #[error("the data directory `{0}` is in use by another runtime")]
    InUse(String),
    /// The run was taken up by a newer epoch (another driver): this
    /// driver may no longer write to it.
    #[error("run `{run_id}` is owned by epoch {owner}: a write of epoch {epoch} was refused")]
    Fenced {
        /// The run.
        run_id: String,
        /// The epoch that wrote.
        epoch: u32,
        /// The epoch that owns the run.
        owner: u32,
    },
}

/// The fencing rule (promise 5), for an append by `epoch` to run `run_id`
/// owned by `owner`: the run's owner after the append, or why it is
/// refused. Every store calls it inside the append's transaction. A claim
/// must also take the run's next place (`next_seq`, asked only for a
/// claim): a claim made from a journal the old driver has written to
/// since would otherwise be taken while its record is skipped as stored.
pub fn fence(
    run_id: &str,
    owner: u32,
    epoch: u32,
    records: &[Record],
    next_seq: impl FnOnce() -> Result<u64, StoreError>,
) -> Result<u32, StoreError> {
    let claim = records.iter().find_map(|r| match r.entry {
        Entry::Resumed { epoch } => Some((epoch, r.seq)),
        _ => None,
    });
    match claim {
        Some((claimed, seq)) if claimed > owner && claimed == epoch && seq == next_seq()? => {
            Ok(claimed)
        }
        None if epoch == owner => Ok(owner),
        _ => Err(StoreError::Fenced {
            run_id: run_id.to_string(),
            epoch,
            owner,
        }),
    }
}

impl StoreError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

/// Records one commit of a store's writer: its records and how long it
/// took (the metrics `reactor_journal_batch_records` and
/// `reactor_journal_commit_seconds`, labelled with the store).
pub(crate) fn commit_measured(store: &'static str, records: usize, took: std::time::Duration) {
    metrics::histogram!("reactor_journal_batch_records", "store" => store).record(records as f64);
    metrics::histogram!("reactor_journal_commit_seconds", "store" => store)
        .record(took.as_secs_f64());
}

/// A write queued for a store's writer (thread or task), with the channel
/// its answer goes back on.
pub(crate) enum Write {
    Create(NewRun, oneshot::Sender<Result<Created, StoreError>>),
    Append(
        String,
        u32,
        Vec<Record>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
}

impl Write {
    /// How many records it writes (at least 1), to size a batch.
    pub(crate) fn records(&self) -> usize {
        match self {
            Write::Create(..) => 1,
            Write::Append(_, _, records, _) => records.len().max(1),
        }
    }

    /// Answers it with `e`, unwritten.
    pub(crate) fn refuse(self, e: StoreError) {
        match self {
            Write::Create(_, ack) => drop(ack.send(Err(e))),
            Write::Append(_, _, _, ack) => drop(ack.send(Err(e))),
        }
    }
}

/// Sends a write to a store's writer (`send` hands it the answer's
/// channel) and waits for its answer; a writer gone is
/// [`StoreError::Closed`].
pub(crate) async fn ask<T>(
    send: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Result<(), StoreError>,
) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    send(tx)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

/// The columns of a run's summary, as both SQL stores select them.
pub(crate) const SUMMARY_SQL: &str =
    "SELECT id, reactor, status, idempotency_key, created_ms, updated_ms FROM reactor_runs";

/// A record as a store keeps it (`seq`, `at_ms`, the entry as JSON),
/// decoded; an unreadable one is [`StoreError::Corrupt`].
pub(crate) fn decode_record(
    run_id: &str,
    seq: i64,
    at_ms: i64,
    body: &str,
) -> Result<Record, StoreError> {
    let entry: Entry = serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        run_id: run_id.to_string(),
        seq: seq as u64,
        problem: format!("unreadable record: {e}"),
    })?;
    Ok(Record {
        seq: seq as u64,
        at_ms: at_ms as u64,
        entry,
    })
}

/// A run's status as a store keeps it (its name); an unknown one is
/// [`StoreError::Corrupt`].
pub(crate) fn decode_status(run_id: &str, status: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(status).ok_or_else(|| StoreError::Corrupt {
        run_id: run_id.to_string(),
        seq: 0,
        problem: format!("unknown status `{status}`"),
    })
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
    /// Submitted for a worker to claim ([`Leases::claim`]) rather than
    /// driven by the process creating it; stores without workers ignore it.
    pub queued: bool,
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
/// store.create_run(NewRun { id: "run-1".into(), reactor: "r".into(), idempotency_key: None, first, queued: false }).await?;
/// store.append("run-1", 1, &[Record::new(1, Entry::Halted)]).await?;
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

    /// Appends records to a run's journal for the run's epoch `epoch`,
    /// atomically and durably; records whose `seq` is already stored are
    /// left as they are. An append of another epoch than the run's owner
    /// (or one claiming it, see [`fence`]) is refused.
    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError>;

    /// A run and its whole journal.
    async fn load(&self, run_id: &str) -> Result<Journal, StoreError>;

    /// The stored runs, of one status or all, oldest first.
    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError>;

    /// Deletes the runs that ended (completed, failed or cancelled) and
    /// were last written before `ended_before_ms` (milliseconds since the
    /// Unix epoch), with their journals and their nested runs (ids
    /// `run/...`, whatever their status); returns how many runs it
    /// deleted. Unfinished runs are never deleted.
    async fn purge(&self, ended_before_ms: u64) -> Result<u64, StoreError>;

    /// The store's leases, if worker processes share its runs
    /// ([`PgStore`](super::PgStore)); `None` (the default) for a store of
    /// one process.
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }
}

/// Runs shared by worker processes through one store: each unfinished
/// top-level run is driven by the worker holding its lease. A worker
/// holds the runs it creates (unless [`NewRun::queued`]), claims and
/// writes to; the store renews its leases while it is open, and a run
/// whose lease expired (its worker died or stalled) can be claimed by
/// another. Holding a lease is not what makes a write safe: the run's
/// epoch is ([`fence`]); a lease only says who should drive the run.
#[async_trait]
pub trait Leases: Send + Sync {
    /// This worker's id: the owner of the runs it holds.
    fn worker(&self) -> &str;

    /// Claims up to `n` top-level runs of the reactors `reactors` that
    /// are running or unwinding and that no worker holds (queued, handed
    /// back, or whose lease expired), oldest first, leaving out `skip`
    /// and runs another worker is claiming; their ids. The caller takes
    /// each up (a new epoch).
    async fn claim(
        &self,
        n: usize,
        reactors: &[String],
        skip: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Hands back those of `runs` this worker holds, so that another
    /// worker can claim them at once. From this call on they are not
    /// renewed, even if it fails: then their leases run out instead.
    async fn release(&self, runs: &[String]) -> Result<(), StoreError>;
}
