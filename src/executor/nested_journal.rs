//! Runs nested in a durable run's steps (a `compose`, a `recurse`, a
//! user's own run [`within`](crate::RunRequest::within) a step) are
//! durable runs of their own, journalled beside their parent's. The
//! executor asks for their journals through [`NestedJournals`]; the
//! durable runtime answers ([`crate::durable`]).
//!
//! A nested run's id is its parent's, its step, the step's attempt and
//! its place among the runs that attempt started: `parent/step.attempt.n`
//! (`step~g` once a step of its name replaced it `g` times).
//! A step run again after a crash starts its nested runs again under the
//! same ids, and so takes up their journals: their completed steps do not
//! run again, and one that ended returns as it ended.
//!
//! A step that kept completed nested runs for the saga journals their ids
//! ([`NestedRuns`]): taken up after a crash, its undo undoes them from
//! their journals, each of their steps not already undone, once.

use std::sync::Arc;

use async_trait::async_trait;

use super::run::{Durable, RunOutcome, RunRequest};
use super::state::RunState;
use crate::context::Context;
use crate::error::{Error, Phase, Reason, RunError, StepError, StepErrorKind};
use crate::reactor::Reactor;
use crate::value::{Value, ValueMap};

/// Where a durable run's nested runs get their journals.
#[async_trait]
pub(crate) trait NestedJournals: Send + Sync {
    /// The journal of nested run `id` of `reactor`: a new one (started
    /// with `inputs`), or the one it left, taken up where it stands. With
    /// `undo`, a run is opened only to be undone: one that is unfinished
    /// unwinds; one that failed or was cancelled undid itself
    /// ([`Opened::Ended`]); one never started is [`Opened::Absent`].
    async fn open(
        &self,
        id: &str,
        reactor: &Reactor,
        inputs: &ValueMap,
        undo: bool,
    ) -> Result<Opened, Error>;

    /// Whether nested run `id` was ever started.
    async fn exists(&self, id: &str) -> Result<bool, Error>;
}

/// A nested run's journal, opened.
pub(crate) enum Opened {
    /// A new run.
    New(Durable),
    /// A run journalled before: it goes on from this state.
    TakenUp(Durable, Box<RunState>),
    /// Its step began to undo it before a crash: undo it to the end
    /// from this state; it does not run again.
    Reverted(Durable, Box<RunState>),
    /// It failed or was cancelled, and undid itself: nothing to undo.
    Ended,
    /// No such run.
    Absent,
}

/// The undo token of a step of a durable run that kept completed nested
/// runs: their ids, and the runs themselves while they are in memory.
pub(crate) struct NestedRuns {
    pub(crate) ids: Vec<String>,
    /// What the step keeps in memory to undo them (absent in a run taken
    /// up from its journal).
    pub(crate) kept: Option<Value>,
}

/// The id of the nested run at `place` (the `n`th run started, or the
/// place its step names) of attempt `attempt` of `step`.
pub(crate) fn nested_id(
    parent: &str,
    step: &str,
    attempt: u32,
    place: &dyn std::fmt::Display,
) -> String {
    format!("{parent}/{step}.{attempt}.{place}")
}

/// Which nested runs of a step [`undo_nested`] undoes.
pub(crate) enum Undoing<'a> {
    /// Those its undo token names.
    Named(&'a [String]),
    /// Those the attempt of the undo's context started (the step may have
    /// started before a crash): at these places of it, or, with `None`,
    /// from 0 up to the first never started.
    Attempt(Option<Vec<String>>),
}

/// The nested run `id` of `request`, journalled: new, or taken up. A
/// run its step had begun to undo before a crash (the step failed or
/// halted) is undone to the end, and does not run again: the step fails
/// as it did.
pub(crate) async fn journal_nested(
    nested: &Arc<dyn NestedJournals>,
    id: String,
    mut request: RunRequest,
) -> Result<RunRequest, Error> {
    let reactor = request.reactor.clone();
    match nested.open(&id, &reactor, &request.inputs, false).await? {
        Opened::New(durable) => {
            request.run_id = Some(id);
            Ok(request.journalled(durable))
        }
        Opened::TakenUp(durable, state) => {
            request.resume = Some(*state);
            Ok(request.journalled(durable))
        }
        Opened::Reverted(durable, state) => {
            request.resume = Some(*state);
            request.fully_reversible = true;
            let errors = undo_to_the_end(request.journalled(durable)).await?;
            let mut message = "its step undid it before a crash: it does not run again".to_string();
            for e in errors {
                message.push_str(&format!("; {e}"));
            }
            Err(Error::State {
                run_id: id,
                message,
            })
        }
        Opened::Ended | Opened::Absent => Err(Error::State {
            run_id: id,
            message: "its journal could not be opened".to_string(),
        }),
    }
}

/// Drives a nested run taken up to be undone: one that had completed
/// completes again at once and is undone; one that had not unwinds. The
/// errors of its undos.
async fn undo_to_the_end(request: RunRequest) -> Result<Vec<StepError>, Error> {
    match Box::pin(request.outcome()).await {
        Ok(RunOutcome::Completed(done)) => match done.undo().await {
            Ok(()) => Ok(Vec::new()),
            Err(Error::Run(run)) => Ok(run.errors),
            Err(e) => Err(e),
        },
        Ok(RunOutcome::Halted(halted)) => match halted.undo().await {
            Ok(()) => Ok(Vec::new()),
            Err(Error::Run(run)) => Ok(run.errors),
            Err(e) => Err(e),
        },
        // Only its undos' errors count (the rest say why it unwound).
        Err(Error::Run(run)) => Ok(run
            .errors
            .into_iter()
            .filter(|e| e.phase == Phase::Undo)
            .collect()),
        Err(e) => Err(e),
    }
}

/// Undoes nested runs of `reactor` from their journals, newest first:
/// those `which` names. Each is given `inputs(id)` again (a map's
/// element runs, whose inputs are not journalled). Every undo is
/// attempted, whatever the others did; all errors are reported together.
pub(crate) async fn undo_nested(
    ctx: &Context,
    reactor: &Reactor,
    which: Undoing<'_>,
    inputs: &(dyn Fn(&str) -> ValueMap + Send + Sync),
) -> Result<(), Error> {
    let Some(nested) = ctx.run.nested.clone() else {
        return Ok(());
    };
    let mut errors = Vec::new();
    let failed = |id: &str, e: Error| StepError {
        step: id.to_string(),
        phase: Phase::Undo,
        attempt: 0,
        kind: StepErrorKind::Failed(Reason::new(e)),
    };
    let attempt = ctx.current_try() + 1;
    let step = match &ctx.run.journal {
        Some(journal) => journal.nested_name(ctx.step_name()),
        None => ctx.step_name().to_string(),
    };
    let id_at = |place: &dyn std::fmt::Display| nested_id(&ctx.run.run_id, &step, attempt, place);
    let ids: Vec<String> = match which {
        Undoing::Named(ids) => ids.to_vec(),
        // The runs its attempt started at the places its step names.
        Undoing::Attempt(Some(places)) => {
            let mut found = Vec::new();
            for place in places {
                let id = id_at(&place);
                match nested.exists(&id).await {
                    Ok(true) => found.push(id),
                    Ok(false) => {}
                    Err(e) => errors.push(failed(&id, e)),
                }
            }
            found
        }
        // The runs its attempt started, up to the first never started.
        Undoing::Attempt(None) => {
            let mut found = Vec::new();
            for n in 0_u32.. {
                let id = id_at(&n);
                match nested.exists(&id).await {
                    Ok(true) => found.push(id),
                    Ok(false) => break,
                    Err(e) => {
                        errors.push(failed(&id, e));
                        break;
                    }
                }
            }
            found
        }
    };
    for id in ids.iter().rev() {
        let (durable, state) = match nested.open(id, reactor, &ValueMap::new(), true).await {
            Ok(Opened::TakenUp(durable, state) | Opened::Reverted(durable, state)) => {
                (durable, state)
            }
            Ok(_) => continue,
            Err(e) => {
                errors.push(failed(id, e));
                continue;
            }
        };
        let request = RunRequest::new(reactor.clone(), inputs(id), Some(*state))
            .within(ctx)
            .fully_reversible()
            .journalled(durable);
        match undo_to_the_end(request).await {
            Ok(e) => errors.extend(e),
            Err(e) => errors.push(failed(id, e)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Run(RunError {
            run_id: ctx.run.run_id.to_string(),
            errors,
        }))
    }
}
