//! The executor: runs a planned reactor, concurrently, as a saga.
//!
//! # The algorithm
//!
//! A run is driven by one coordinator: in the task that awaits the run,
//! or, for an async run nested in a step, a tokio task of its own (and for
//! every few levels of nested `run_async(false)` runs, so that nesting is
//! not bounded by a stack). Each step has a count of
//! unfinished dependencies; a step whose count reaches zero is *ready*.
//!
//! 1. If the iteration budget (`max_iterations`) is spent or the `timeout`
//!    has passed, **halt**.
//! 2. In a durable run, make the journal durable (one flush: the steps
//!    completed since the last one, and retries); only then do their
//!    dependents become ready (`coordinator`'s `journal`).
//! 3. Start ready steps, oldest first (for a map, first admit elements of
//!    its source, up to its batch size).
//! 4. If every step is done, **succeed** with the return step's result.
//! 5. Wait, without spinning, for the first of: an attempt finishing (then
//!    handle every attempt that has finished), the earliest backoff
//!    expiring (then its step is ready again), the timeout, a pool slot
//!    freed, or a map element arriving. Only a finished attempt spends an
//!    iteration.
//!
//! # Where an attempt runs
//!
//! One attempt of a step (`attempt`) is the same wherever it runs; the
//! coordinator only chooses where (`coordinator`'s `launch`):
//!
//! - **a task of its own**, holding a slot of the run's pool and a place
//!   under `max_concurrency` (CPU-bound steps on the blocking pool); in a
//!   run given no pool and no limit, an awaiting step (async closure,
//!   `Step` impl, ready-made kind) holds neither (up to 10,000 of them in
//!   flight), so only CPU work is held to the cores. An awaiting attempt
//!   starts in the coordinator, which runs it up to its first await and
//!   only then hands it to its task (one that answers without awaiting
//!   needs no task at all), while this run's first polls cost less than a
//!   hand-off (2 µs on average, each timed) and end their attempts (after
//!   8 in a row that await, they start in their tasks); a batch of such
//!   attempts ends per loop turn, as a chunk does;
//! - **a chunk**: several ready plain closure steps (`run_sync`, no guard,
//!   no compensation) run one after another holding one slot, at most
//!   200 µs before the rest go back to the ready queue: in a task of their
//!   own (a fair share of the ready steps per free slot), or in the
//!   coordinator once the run's chunks have shown its plain steps cost less
//!   than handing them to another task;
//! - **the coordinator**: a non-async step, or any step of a
//!   `run_async(false)` run, one at a time (raced against the run's
//!   deadline, like any running step); and a plain step that is the only
//!   step that could run at all (holding its slot, so the limit holds);
//! - **a map element**: a map runs its elements as instances of its nested
//!   steps in a coordinator of its own, so every rule below holds there too;
//! - **a nested run**: a `compose`, `recurse` or `group` runs its steps as a
//!   run of its own inside the step's attempt; in a durable run that run is
//!   durable too, journalled under an id derived from its step's
//!   (`nested_journal`), so every rule, the journal's included, holds
//!   there as well.
//!
//! A step holding a slot lends it to runs nested in it (`crate::pool`).
//!
//! # What an attempt comes to
//!
//! - **done**: the result is kept while a pending step or the return still
//!   reads it, and pushed on the undo stack (with the step's own
//!   definition) if the step can undo. Its dependents' counts drop (in
//!   a durable run, once the journal holds its result).
//!   Emitted steps join the run; a step emitted under the emitter's own
//!   name *replaces* it (its dependents wait for the replacement, which
//!   reads the emitter's value as its own result). A guard's skip is done
//!   with the guard's outcome, never undone.
//! - **retry** (from `run`, a guard, or `compensate`): a retry event, then
//!   the retry count rises; past `max_retries` the step fails (with the
//!   retry reason, or `RetriesExceeded`). Otherwise it is ready again, at
//!   once or after its backoff.
//! - **halt**: the step completes with its value and the run halts.
//! - **error**: `compensate` (if the step can) may continue with a value,
//!   retry, accept the failure or fail itself; a failure fails the run.
//!
//! A panic in user code is an error of the step (or, for middleware, of
//! the run); it never escapes the run.
//!
//! # The end of a run
//!
//! Every exit (success, failure, halt, timeout, iteration limit) goes
//! through one routine (`coordinator`'s `finish`): running attempts are
//! awaited up to `halt_timeout`; those still running are cancelled, and
//! the run waits until they, and the tasks of runs nested in them, have
//! stopped. A halted run sets them back to run again on resume; a failed
//! run reports them and treats an undoable one as possibly completed.
//! A durable run journals its end first (its completion, its halt, or
//! the steps it will undo), and each undo as it is done; a durable run
//! whose journal cannot be written stops without undoing, leaving that to
//! whoever takes it up from the journal.
//! A failed run then undoes every completed undoable step, one at a time,
//! newest first; each undo may retry up to 5 attempts, and every error, of
//! the failure and of the undos, is reported together. A halted run
//! returns its [`RunState`], which resumes with the same results.
//!
//! A step that blocks its thread (rather than awaiting) cannot be cut
//! short by a timeout or a cancellation: mark such steps
//! [`cpu_bound`](crate::StepSpec::cpu_bound), which runs them on tokio's
//! blocking pool where they block no other step.

pub(crate) mod attempt;
mod coordinator;
mod elements;
mod nested_journal;
pub(crate) mod nesting;
mod outputs;
mod places;
mod run;
mod state;
mod tasks;
mod undo;

pub use attempt::StepPanicked;
pub(crate) use elements::{run_elements, Elements, ElementsFailed};
pub(crate) use nested_journal::{undo_nested, NestedJournals, NestedRuns, Opened, Undoing};
pub use nesting::MAX_NESTING;
pub(crate) use outputs::{Outputs, Sink};
pub(crate) use run::{check_inputs, Durable};
pub use run::{CompletedRun, HaltedRun, RunOutcome, RunRequest};
pub(crate) use state::Recovered;
pub use state::{RunState, UndoRecord};
pub(crate) use undo::UndoStack;
pub use undo::Unfinished;
