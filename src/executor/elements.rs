//! Running a map's elements: each element an instance of the map's nested
//! steps, all in one coordinator nested in the map step's run, sharing its
//! run id, context, pool (and the map step's own slot), limit and
//! middleware.

use std::sync::Arc;

use super::coordinator::{Coordinator, Feed, Finish, Settings};
use super::run::{Placement, Started};
use super::state::RunState;
use super::undo::UndoStack;
use crate::context::{Context, RunScope};
use crate::error::{Error, RunError};
use crate::executor::nesting::Tracker;
use crate::planner::Plan;
use crate::value::Value;

pub(crate) use super::coordinator::Elements;

/// Why a map's elements failed.
pub(crate) enum ElementsFailed {
    /// An element failed (the first one, when known); every completed
    /// undoable step of every element was undone.
    Run(RunError, Option<u64>),
    /// A halt inside an element; the elements' completed undoable steps
    /// were undone (with these errors, if any failed).
    Halted(Option<RunError>),
    /// The elements could not start.
    Start(Error),
}

/// Runs `plan` once per element: `inputs` are the element plan's inputs
/// (the element's own is filled per element). The result is the outputs
/// (or how many went to the sink) and the undo stack of every element.
pub(crate) async fn run_elements(
    ctx: &Context,
    plan: Arc<Plan>,
    inputs: Vec<Value>,
    elements: Elements,
    run_async: bool,
) -> Result<(Value, UndoStack), ElementsFailed> {
    let outer = &ctx.run;
    let placed = Placement::new(&outer.pool, run_async).map_err(ElementsFailed::Start)?;
    let scope = placed.scope(RunScope {
        plan: plan.clone(),
        run_id: outer.run_id.clone(),
        values: outer.values.clone(),
        pool: outer.pool.clone(),
        lender: None,
        async_run: run_async,
        max_concurrency: outer.max_concurrency,
        awaiting_unbounded: outer.awaiting_unbounded,
        halt_timeout: outer.halt_timeout,
        events: outer.events.clone(),
        span: outer.span.clone(),
        tracker: Tracker::new(None),
        depth: 0,
        stacked: 0,
        orphans: Default::default(),
        journal: None,
        nested: None,
    });
    let settings = Settings {
        run_async,
        max_concurrency: outer.max_concurrency,
        awaiting_unbounded: outer.awaiting_unbounded,
        // Elements are held by their map's batch size.
        adaptive: false,
        timeout: None,
        max_iterations: None,
        halt_timeout: outer.halt_timeout,
        resumed: false,
        keep_state: false,
        recovered: None,
        cancel: None,
        steps: None,
    };
    let span = tracing::Span::current();
    let coordinator = Coordinator::new(
        plan,
        scope,
        settings,
        inputs,
        RunState::default(),
        Some(Feed::new(elements)),
        span.clone(),
    )
    .map_err(ElementsFailed::Start)?;
    let started = Started {
        coordinator,
        span,
        placed,
    };
    match started.drive().await {
        Finish::Completed { value, undo, .. } => Ok((value, undo)),
        Finish::Halted {
            state, mut undo, ..
        } => {
            let errors = undo.unwind().await;
            Err(ElementsFailed::Halted((!errors.is_empty()).then(|| {
                RunError {
                    run_id: state.run_id,
                    errors,
                }
            })))
        }
        Finish::Failed(error, index) => Err(ElementsFailed::Run(error, index)),
    }
}
