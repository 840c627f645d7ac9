//! The executor: runs a planned reactor, concurrently, as a saga.
//!
//! # The algorithm
//!
//! A run is driven by one coordinator (a tokio task of its own for async
//! runs, the caller's task for `run_async(false)`). Each step has a count of
//! unfinished dependencies; a step whose count reaches zero is *ready*.
//!
//! 1. If the iteration budget (`max_iterations`) is spent or the `timeout`
//!    has passed, **halt**.
//! 2. Start ready steps, oldest first. An async step needs a slot of the
//!    run's [`ConcurrencyPool`](crate::ConcurrencyPool) and a place under
//!    `max_concurrency`; it then runs in its own task (CPU-bound steps on the
//!    blocking pool). A non-async step, or any step of a `run_async(false)`
//!    run, runs in the coordinator, one at a time. When the pool is empty,
//!    nothing of this run is running and the run is nested inside a step
//!    holding a slot of the same pool, the step runs in the coordinator
//!    instead of waiting for itself.
//!
//!    Plain closure steps (`run_sync`, no compensation) are cheaper to run
//!    than to hand to a task, so, holding their slot as any step does:
//!    several ready ones share a task (a *chunk*, run one after another,
//!    at most a fair share of the ready steps per free slot and at most
//!    200 µs before it hands the rest back), and one that is the only step
//!    that could run at all runs in the coordinator. Neither changes how
//!    many steps run at once.
//! 3. If every step is done, **succeed** with the return step's result.
//! 4. Wait, without spinning, for the first of: a step finishing (then
//!    handle every step that has finished), the earliest backoff expiring
//!    (then its step is ready again), the timeout, or a pool slot freed by
//!    another run. Only waking for a finished step spends an iteration.
//!
//! Handling a finished attempt:
//!
//! - **ok**: the result is kept while a pending step or the return still
//!   reads it, and pushed on the undo stack if the step can undo. Its
//!   dependents' counts drop. Emitted steps join the run; a step emitted
//!   under the emitter's own name *replaces* it (its dependents wait for the
//!   replacement, which reads the emitter's value as its own result).
//! - **retry** (from `run`, or from `compensate`): the retry count rises; past
//!   `max_retries` the step fails (with the retry reason, or
//!   `RetriesExceeded`). Otherwise it is ready again, at once or after its
//!   backoff.
//! - **halt**: the step completes with its value and the run halts.
//! - **error**: `compensate` (if the step can) may continue with a value,
//!   retry, accept the failure or fail itself; a failure fails the run.
//!
//! Ending a run: running steps are awaited (up to `halt_timeout`; steps
//! still running then are abandoned and will run again on resume). A failed
//! run then undoes every completed undoable step, one at a time, newest
//! first; each undo may retry up to 5 attempts, and every error, of the
//! failure and of the undos, is reported together. A halted run returns its
//! [`RunState`], which resumes with the same results.

mod coordinator;
mod run;
pub(crate) mod runner;
mod state;
mod tasks;

pub use run::{CompletedRun, HaltedRun, RunOutcome, RunRequest};
pub use runner::StepPanicked;
pub use state::{RunState, UndoRecord};
