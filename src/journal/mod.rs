//! Journals of durable runs: the records ([`Record`], [`Entry`]), the
//! [`Store`] trait they are kept behind, and its two stores:
//! [`MemoryStore`] and [`SqliteStore`] (the embedded default).
//!
//! The executor writes a run's journal through `RunJournal` (crate
//! internal): it numbers the records, batches them, and retries a failing
//! store with backoff. The durable [`Runtime`](crate::durable::Runtime)
//! starts, recovers and resumes runs from their journals.

mod memory;
mod pg_held;
mod pg_limits;
mod postgres;
pub(crate) mod record;
pub(crate) mod run;
mod sqlite;
mod store;

pub use memory::MemoryStore;
pub use postgres::{PgOptions, PgStore};
pub use record::{EmittedStep, Entry, Record, RunEnd, RunStatus, StepFailure, UndoItem};
pub(crate) use run::RunJournal;
pub use sqlite::{SqliteStore, Synchronous};
pub use store::{fence, Created, Journal, Leases, NewRun, RunSummary, Store, StoreError};
