//! The records of a durable run's journal: a state log (what happened to
//! the run and its steps), not a log of code to replay.
//!
//! | Entry | Written | Holds |
//! |---|---|---|
//! | [`Entry::RunStarted`] | with the run, before any step starts | reactor, definition, inputs, idempotency key |
//! | [`Entry::StepDone`] | before the step's dependents start | the step's encoded result, the steps it emitted |
//! | [`Entry::StepRetry`] | with the next batch | the step's retry count |
//! | [`Entry::Unwinding`] | before the first undo | the errors, and the steps to undo |
//! | [`Entry::Undone`] | after each undo | the step, and its error if it failed |
//! | [`Entry::Halted`] / [`Entry::Resumed`] | at a halt, at each (re)start after the first | the run's epoch |
//! | [`Entry::RunEnded`] | last | how the run ended |
//!
//! No record says a step *started*: a step starts only once everything it
//! depends on is durable (the run's start, its dependencies' `StepDone`),
//! so a step that may have started is one whose dependencies are done and
//! which has no `StepDone` of its own. Recovery runs such a step again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One record of a run's journal: its place in the journal and what it
/// says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its place: a run's records are numbered 0, 1, 2, ... with no gap.
    pub seq: u64,
    /// When it was made, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What it says.
    pub entry: Entry,
}

impl Record {
    /// A record made now.
    pub fn new(seq: u64, entry: Entry) -> Record {
        Record {
            seq,
            at_ms: now_ms(),
            entry,
        }
    }
}

/// The milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The run started.
    RunStarted {
        /// The reactor's name.
        reactor: String,
        /// The hash of the reactor's definition.
        def_hash: String,
        /// The definition, one line per input and step, to name what
        /// changed when the hash differs.
        definition: Vec<String>,
        /// The inputs, encoded.
        inputs: BTreeMap<String, serde_json::Value>,
        /// The key that deduplicates submissions, if any.
        idempotency_key: Option<String>,
    },
    /// A step completed.
    StepDone {
        /// The step.
        step: String,
        /// Its attempt (1 for the first).
        attempt: u32,
        /// Its result, encoded.
        value: serde_json::Value,
        /// A guard skipped it: there is nothing to undo.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        skipped: bool,
        /// The steps it emitted, as their registry rebuilds them; one named
        /// as the step itself replaces it (its record is then not the
        /// step's completion, only its result).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        emitted: Vec<EmittedStep>,
        /// The nested runs it keeps for its undo (a `compose`, a
        /// `recurse`), by id: undone from their own journals.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nested: Vec<String>,
    },
    /// A step will be tried again.
    StepRetry {
        /// The step.
        step: String,
        /// Its retries so far.
        retries: u32,
    },
    /// The run failed: its saga unwinds.
    Unwinding {
        /// The errors that failed it.
        errors: Vec<StepFailure>,
        /// The steps to undo, newest first.
        undo: Vec<UndoItem>,
    },
    /// One step of an unwinding run was undone (or its undo failed).
    Undone {
        /// The step.
        step: String,
        /// The undo's error, if it failed.
        error: Option<String>,
    },
    /// The run halted; it waits for a resume.
    Halted,
    /// The run was taken up again (after a halt or a crash).
    Resumed {
        /// How many times the run has been taken up, its first start
        /// being epoch 1.
        epoch: u32,
    },
    /// The run ended.
    RunEnded {
        /// How.
        end: RunEnd,
    },
}

/// A step's failure, as journalled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step.
    pub step: String,
    /// The phase it failed in (`run`, `undo`, ...).
    pub phase: String,
    /// The attempt (from 1).
    pub attempt: u32,
    /// What happened.
    pub message: String,
}

impl From<&crate::error::StepError> for StepFailure {
    fn from(e: &crate::error::StepError) -> StepFailure {
        StepFailure {
            step: e.step.clone(),
            phase: e.phase.to_string(),
            attempt: e.attempt,
            message: e.kind.to_string(),
        }
    }
}

impl From<StepFailure> for crate::error::StepError {
    fn from(f: StepFailure) -> crate::error::StepError {
        use crate::error::Phase;
        let phase = [
            Phase::Arguments,
            Phase::Run,
            Phase::Compensate,
            Phase::Undo,
            Phase::Plan,
            Phase::Middleware,
        ]
        .into_iter()
        .find(|p| p.to_string() == f.phase)
        .unwrap_or(Phase::Run);
        crate::error::StepError {
            step: f.step,
            phase,
            attempt: f.attempt,
            kind: crate::error::StepErrorKind::Failed(crate::error::Reason::msg(f.message)),
        }
    }
}

/// A step emitted at run time, as journalled: rebuilt after a crash by
/// the [`StepRegistry`](crate::durable::StepRegistry) kind it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmittedStep {
    /// The step's name.
    pub name: String,
    /// The registered kind that makes it.
    pub kind: String,
    /// The kind's parameters.
    pub params: serde_json::Value,
}

/// A step an unwinding run undoes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UndoItem {
    /// The step.
    pub step: String,
    /// The step was cancelled part-way: its undo receives
    /// [`Unfinished`](crate::Unfinished) instead of a result.
    pub abandoned: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunEnd {
    /// It completed with this (encoded) value.
    Completed {
        /// The return step's result.
        value: serde_json::Value,
    },
    /// It failed; its saga unwound.
    Failed {
        /// The errors, of the failure and of the undos.
        errors: Vec<StepFailure>,
    },
    /// It was cancelled; what it had done was undone.
    Cancelled,
}

/// Where a run stands, as its journal says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not ended: running, or interrupted by a crash.
    Running,
    /// Failed and undoing its steps (or interrupted while it did).
    Unwinding,
    /// Halted: waits for an explicit resume.
    Halted,
    /// Completed.
    Completed,
    /// Failed; its saga unwound.
    Failed,
    /// Cancelled; what it had done was undone.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The status as stored (`"running"`, `"halted"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Unwinding => "unwinding",
            RunStatus::Halted => "halted",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `s`.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Unwinding,
            RunStatus::Halted,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl Entry {
    /// The status a run takes on when this entry is appended, if it
    /// changes it: the one rule every store applies.
    pub fn status(&self) -> Option<RunStatus> {
        match self {
            Entry::RunStarted { .. } | Entry::Resumed { .. } => Some(RunStatus::Running),
            Entry::Unwinding { .. } => Some(RunStatus::Unwinding),
            Entry::Halted => Some(RunStatus::Halted),
            Entry::RunEnded { end } => Some(match end {
                RunEnd::Completed { .. } => RunStatus::Completed,
                RunEnd::Failed { .. } => RunStatus::Failed,
                RunEnd::Cancelled => RunStatus::Cancelled,
            }),
            Entry::StepDone { .. } | Entry::StepRetry { .. } | Entry::Undone { .. } => None,
        }
    }

    /// The entry's kind, as stored beside it.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::RunStarted { .. } => "run_started",
            Entry::StepDone { .. } => "step_done",
            Entry::StepRetry { .. } => "step_retry",
            Entry::Unwinding { .. } => "unwinding",
            Entry::Undone { .. } => "undone",
            Entry::Halted => "halted",
            Entry::Resumed { .. } => "resumed",
            Entry::RunEnded { .. } => "run_ended",
        }
    }
}
