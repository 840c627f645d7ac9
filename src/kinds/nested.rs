//! Nested runs a step keeps for the saga: the completed runs of a
//! compose, group, around or recurse step are undone, newest first, when a
//! later step fails, and by the step itself when it fails (or retries)
//! after them. A nested run that halts is undone at once: the step fails.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Reason, RunError};
use crate::executor::{CompletedRun, HaltedRun};
use crate::step::{Outcome, UndoOutcome};
use crate::value::Value;

/// The completed nested runs of one attempt of a step.
#[derive(Default)]
pub(crate) struct Kept(Mutex<Vec<CompletedRun>>);

impl Kept {
    pub(crate) fn new() -> Arc<Kept> {
        Arc::new(Kept::default())
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Vec<CompletedRun>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `run` (if it has anything to undo).
    pub(crate) fn keep(&self, run: CompletedRun) {
        if run.has_undo() {
            self.runs().push(run);
        }
    }

    /// Undoes a nested run that halted (the step fails instead).
    pub(crate) async fn halted(&self, run: HaltedRun) -> Result<(), Error> {
        run.undo().await
    }

    /// Undoes every kept run, newest first; every error, after trying all.
    pub(crate) async fn undo(&self) -> Result<(), Error> {
        let runs = std::mem::take(&mut *self.runs());
        let mut errors = Vec::new();
        let mut run_id = String::new();
        for run in runs.into_iter().rev() {
            run_id = run.state().run_id.clone();
            if let Err(e) = run.undo().await {
                match e {
                    Error::Run(run) => errors.extend(run.errors),
                    other => return Err(other),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Run(RunError { run_id, errors }))
        }
    }

    /// The step's outcome: a value with the kept runs to undo; a failure
    /// or a retry only after undoing them (a failed step is not undone by
    /// the saga, and a retried one runs them again).
    pub(crate) async fn settle(self: Arc<Self>, outcome: Outcome) -> Outcome {
        let empty = self.runs().is_empty();
        match outcome {
            Outcome::Ok(value) if !empty => Outcome::OkWithUndo {
                value,
                undo: Value::new(self),
            },
            Outcome::Error(reason) if !empty => match self.undo().await {
                Ok(()) => Outcome::Error(reason),
                Err(undo) => Outcome::Error(Reason::msg(format!(
                    "{reason}; undoing its nested runs failed too: {undo}"
                ))),
            },
            Outcome::Retry(reason) if !empty => match self.undo().await {
                Ok(()) => Outcome::Retry(reason),
                Err(undo) => Outcome::Error(Reason::new(undo)),
            },
            other => other,
        }
    }
}

/// The undo of a step that kept nested runs (its undo token is the `Kept`).
pub(crate) async fn undo(token: &Value) -> UndoOutcome {
    let Some(kept) = token.downcast_ref::<Arc<Kept>>() else {
        return UndoOutcome::Done;
    };
    match kept.undo().await {
        Ok(()) => UndoOutcome::Done,
        Err(e) => UndoOutcome::Error(Reason::new(e)),
    }
}
