//! Nested runs a step keeps for the saga: the completed runs of a
//! compose, group, around or recurse step are undone, newest first, when a
//! later step fails, and by the step itself when it fails (or retries)
//! after them. A nested run that halts is undone at once: the step fails.
//!
//! In a durable run the nested runs are durable too: the step's undo
//! token carries their ids ([`NestedRuns`]), which its parent's journal
//! keeps, so that the step is undone from their journals after a crash;
//! and a step that may have started before a crash undoes the runs its
//! attempt left.

use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::error::{Error, Reason, RunError};
use crate::executor::{undo_nested, CompletedRun, HaltedRun, NestedRuns, Undoing, Unfinished};
use crate::reactor::Reactor;
use crate::step::{Outcome, UndoOutcome};
use crate::value::Value;
use crate::value::ValueMap;

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
    /// the saga, and a retried one runs them again). In a `durable` run
    /// the undo token names the runs by id, for the journal.
    pub(crate) async fn settle(self: Arc<Self>, outcome: Outcome, durable: bool) -> Outcome {
        let empty = self.runs().is_empty();
        match outcome {
            Outcome::Ok(value) if !empty && durable => {
                let ids = self
                    .runs()
                    .iter()
                    .map(|r| r.state().run_id.clone())
                    .collect();
                Outcome::OkWithUndo {
                    value,
                    undo: Value::new(NestedRuns {
                        ids,
                        kept: Some(Value::new(self)),
                    }),
                }
            }
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

/// Nested runs journal their inputs: none are given again.
fn no_inputs(_: &str) -> ValueMap {
    ValueMap::new()
}

/// How a step finds its nested runs in the journal, to undo them after a
/// crash, and what it gives them again.
pub(crate) struct Journalled<'a> {
    /// The reactor they run.
    pub(crate) reactor: &'a Reactor,
    /// The places of its attempt's runs (see [`Undoing::Attempt`]);
    /// `None`: from 0, in the order they started.
    pub(crate) places: Option<Vec<String>>,
    /// The inputs each run (by id) is given again: none, unless the step
    /// gives them every time (a map's elements).
    pub(crate) inputs: &'a (dyn Fn(&str) -> ValueMap + Send + Sync),
}

impl<'a> Journalled<'a> {
    /// Runs of `reactor` started in order, journalling their inputs.
    pub(crate) fn of(reactor: &'a Reactor) -> Journalled<'a> {
        Journalled {
            reactor,
            places: None,
            inputs: &no_inputs,
        }
    }
}

/// The runs an undo token keeps in memory, if it does.
fn kept_of(token: &Value) -> Option<&Arc<Kept>> {
    token.downcast_ref::<Arc<Kept>>().or_else(|| {
        token
            .downcast_ref::<NestedRuns>()
            .and_then(|runs| runs.kept.as_ref())
            .and_then(|kept| kept.downcast_ref::<Arc<Kept>>())
    })
}

/// Whether undoing `token` needs the journals of its runs (it was taken
/// up after a crash, and names runs or may have started some): only then
/// need their reactor be rebuilt.
pub(crate) fn needs_journals(token: &Value, ctx: &Context) -> bool {
    ctx.durable()
        && kept_of(token).is_none()
        && (token.is::<NestedRuns>() || token.is::<Unfinished>())
}

/// The undo of nested runs whose reactor could not be rebuilt: an error
/// (they may hold effects), never a silent success.
pub(crate) fn unrebuildable(step: &str, why: impl std::fmt::Display) -> UndoOutcome {
    UndoOutcome::Error(Reason::msg(format!(
        "the nested runs of {step} cannot be undone: rebuilding them failed: {why}"
    )))
}

/// The undo of a step that kept nested runs: its undo token is the
/// `Kept`, or in a durable run their ids (with the `Kept` while it is in
/// memory). A durable step taken up after a crash undoes its runs from
/// their journals, as `journalled` finds them: those its token names, or,
/// for a step that may have started ([`Unfinished`]), those its attempt
/// left.
pub(crate) async fn undo(
    token: &Value,
    ctx: &Context,
    journalled: Option<Journalled<'_>>,
) -> UndoOutcome {
    let done = match (kept_of(token), journalled) {
        (Some(kept), _) => kept.undo().await,
        (None, Some(j)) => {
            let which = match token.downcast_ref::<NestedRuns>() {
                Some(runs) => Some(Undoing::Named(&runs.ids)),
                None if token.is::<Unfinished>() => Some(Undoing::Attempt(j.places)),
                None => None,
            };
            match which {
                Some(which) => undo_nested(ctx, j.reactor, which, j.inputs).await,
                None => Ok(()),
            }
        }
        (None, None) => Ok(()),
    };
    match done {
        Ok(()) => UndoOutcome::Done,
        Err(e) => UndoOutcome::Error(Reason::new(e)),
    }
}
