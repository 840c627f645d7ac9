//! The undo stack of a run, and undoing one step: the saga's unwinding,
//! written once for a failed run, a fully reversible run undone later, and
//! the nested runs a compose or a map keeps for undo.
//!
//! Each entry carries what undoing its step needs (the step's own
//! implementation, its context, the value it completed with and its
//! arguments), so an entry is undone on its own value by its own step even
//! if a replacement took the step's name later, and a stack can be
//! unwound after the run that built it is gone.

use std::sync::Arc;
use std::time::Instant;

use super::attempt::guarded;
use crate::argument::Arguments;
use crate::context::{Context, RunScope};
use crate::error::{Error, Phase, Reason, RunError, StepError, StepErrorKind};
use crate::event::EventKind;
use crate::journal::Entry;
use crate::step::{StepImp, UndoOutcome};
use crate::value::Value;

/// How many times an undo is attempted before it fails.
pub(crate) const MAX_UNDO_ATTEMPTS: u32 = 5;

/// The value an abandoned step's undo receives: the step was cancelled
/// part-way (after the run's `halt_timeout`), so it may have done some of
/// its work, and its undo is called as if it had completed.
///
/// # Examples
///
/// ```
/// use reactor::{step, Unfinished, Value};
///
/// let s = step("reserve")
///     .run(|_, _| async { Ok(42_u32) })
///     .undo(|value: Value, _args, _ctx| async move {
///         if value.is::<Unfinished>() {
///             // Look the reservation up instead: the step never said which.
///         }
///         Ok(())
///     });
/// # let _ = s;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfinished;

/// A completed (or possibly completed) undoable step.
pub(crate) struct UndoEntry {
    pub(crate) step: StepImp,
    pub(crate) ctx: Context,
    pub(crate) value: Value,
    pub(crate) args: Arguments,
}

/// Completed undoable steps, oldest first.
///
/// The stack of a run nested in a step of another run belongs to that
/// run until it is unwound: dropped with entries left (the step was
/// cancelled before it could keep or undo them), it hands them to that
/// run, which undoes them if it fails.
#[derive(Default)]
pub(crate) struct UndoStack {
    entries: Vec<UndoEntry>,
    nested_in: Option<Arc<RunScope>>,
}

impl UndoStack {
    pub(crate) fn push(&mut self, entry: UndoEntry) {
        self.entries.push(entry);
    }

    /// Puts `entry` at `index` (0: undone last).
    pub(crate) fn insert(&mut self, index: usize, entry: UndoEntry) {
        let index = index.min(self.entries.len());
        self.entries.insert(index, entry);
    }

    /// Makes this the stack of a run nested in `parent`'s.
    pub(crate) fn nest_in(&mut self, parent: Option<Arc<RunScope>>) {
        self.nested_in = parent;
    }

    /// Whoever holds the stack now answers for it alone.
    pub(crate) fn release(&mut self) {
        self.nested_in = None;
    }

    /// Moves `other`'s entries on top of this stack's.
    pub(crate) fn append(&mut self, other: &mut UndoStack) {
        self.entries.append(&mut other.entries);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entries(&self) -> &[UndoEntry] {
        &self.entries
    }

    /// Undoes the whole stack of run `run_id`: every undo is attempted,
    /// and every error is reported together, as the run's.
    pub(crate) async fn undo_run(&mut self, run_id: &str) -> Result<(), Error> {
        let errors = self.unwind().await;
        if errors.is_empty() {
            return Ok(());
        }
        Err(Error::Run(RunError {
            run_id: run_id.to_string(),
            errors,
        }))
    }

    /// Undoes every entry, newest first, one at a time; every error (of
    /// the undos and of middleware) is returned, after all were tried. A
    /// durable run taken up elsewhere (its journal refuses this driver)
    /// stops at once: its new owner undoes the rest.
    pub(crate) async fn unwind(&mut self) -> Vec<StepError> {
        let mut errors = Vec::new();
        while let Some(entry) = self.entries.pop() {
            if !undo(entry, &mut errors).await {
                break;
            }
        }
        errors
    }
}

impl Drop for UndoStack {
    fn drop(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        // A durable run's journal says what it did: whoever ran it undoes
        // it from there, once.
        if self.entries[0].ctx.run.journal.is_some() {
            return;
        }
        if let Some(parent) = self.nested_in.take() {
            let orphan = UndoStack {
                entries: std::mem::take(&mut self.entries),
                nested_in: None,
            };
            parent
                .orphans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(orphan);
        }
    }
}

impl std::fmt::Debug for UndoStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.ctx.step_name()))
            .finish()
    }
}

/// Undoes one step, then writes its `Undone` to a durable run's journal;
/// `false` if the journal refused this driver (the run was taken up
/// elsewhere).
async fn undo(entry: UndoEntry, errors: &mut Vec<StepError>) -> bool {
    let journal = entry.ctx.run.journal.clone();
    let step = entry.ctx.step_name().to_string();
    let before = errors.len();
    undo_once(entry, errors).await;
    if let Some(journal) = journal {
        let error = errors[before..]
            .iter()
            .find(|e| e.phase == Phase::Undo)
            .map(|e| e.kind.to_string());
        if let Err(e) = journal
            .write(Entry::Undone {
                step: step.clone(),
                error,
            })
            .await
        {
            let fenced = matches!(e, crate::journal::StoreError::Fenced { .. });
            errors.push(StepError {
                step,
                phase: Phase::Undo,
                attempt: 0,
                kind: StepErrorKind::Failed(Reason::msg(format!("the journal failed: {e}"))),
            });
            return !fenced;
        }
    }
    true
}

/// Undoes one step, trying at most [`MAX_UNDO_ATTEMPTS`] times; its
/// errors (and middleware panics) go to `errors`.
async fn undo_once(entry: UndoEntry, errors: &mut Vec<StepError>) {
    let UndoEntry {
        step,
        mut ctx,
        value,
        args,
    } = entry;
    ctx.undoing = true;
    let failure = |attempt, kind| StepError {
        step: ctx.step_name().to_string(),
        phase: Phase::Undo,
        attempt,
        kind,
    };
    for attempt in 1..=MAX_UNDO_ATTEMPTS {
        emit(&ctx, errors, attempt, || EventKind::UndoStart { attempt });
        let started = ctx.events.then(Instant::now);
        let outcome = guarded(|| step.undo(value.clone(), args.clone(), ctx.clone()))
            .await
            .unwrap_or_else(|panic| {
                UndoOutcome::Error(Reason::msg(format!("undo panicked: {panic}")))
            });
        let duration = started.map_or(std::time::Duration::ZERO, |s| s.elapsed());
        match outcome {
            UndoOutcome::Done => {
                emit(&ctx, errors, attempt, || EventKind::UndoComplete {
                    attempt,
                    duration,
                });
                return;
            }
            UndoOutcome::Retry(reason) => {
                emit(&ctx, errors, attempt, || EventKind::UndoRetry {
                    attempt,
                    duration,
                    reason: reason.as_ref(),
                });
            }
            UndoOutcome::Error(reason) => {
                let error = failure(attempt, StepErrorKind::Undo(reason));
                emit(&ctx, errors, attempt, || EventKind::UndoError {
                    attempt,
                    error: &error,
                });
                errors.push(error);
                return;
            }
        }
    }
    let error = failure(
        MAX_UNDO_ATTEMPTS,
        StepErrorKind::UndoRetriesExceeded {
            attempts: MAX_UNDO_ATTEMPTS,
        },
    );
    emit(&ctx, errors, MAX_UNDO_ATTEMPTS, || EventKind::UndoError {
        attempt: MAX_UNDO_ATTEMPTS,
        error: &error,
    });
    errors.push(error);
}

/// Emits an undo event; a middleware panic is an error of the undo.
fn emit<'k>(
    ctx: &Context,
    errors: &mut Vec<StepError>,
    attempt: u32,
    kind: impl FnOnce() -> EventKind<'k>,
) {
    if !ctx.events {
        return;
    }
    if let Err(panic) = ctx.emit(kind) {
        errors.push(panic.error(ctx.step_name(), attempt));
    }
}
