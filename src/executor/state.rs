//! [`RunState`]: a halted or finished run as plain data, apart from the
//! reactor's definition and from any live task.
//!
//! A halted run can be rebuilt from its state and its reactor: resuming it
//! needs nothing else. A state that does not fit the reactor (a step it
//! does not have, a step completed twice, a result a pending step needs
//! and the state lacks) is refused before anything runs.

use std::collections::BTreeMap;

use crate::argument::Arguments;
use crate::step::StepSpec;
use crate::value::{Value, ValueMap};

/// A completed, undoable step on the undo stack.
#[derive(Clone, Debug)]
pub struct UndoRecord {
    /// The step's name.
    pub step: String,
    /// The definition it ran with, when it was emitted at run time (`None`:
    /// the reactor's own step of that name). A step replaced by a step of
    /// the same name is undone by its own definition, not the replacement's.
    pub emitted: Option<StepSpec>,
    /// The value it completed with (or what its step kept for undo, see
    /// [`Outcome::OkWithUndo`](crate::Outcome::OkWithUndo)).
    pub value: Value,
    /// The arguments it ran with. Left empty for a step of the reactor
    /// that has arguments, they are rebuilt from the state's inputs and
    /// results when the run resumes (as [`RunState::from_json`] does).
    pub arguments: Arguments,
}

impl UndoRecord {
    /// The record of a step of the reactor, its arguments left out: they
    /// are rebuilt from the state's inputs and results when the run
    /// resumes (a state from a journal or from JSON).
    pub(crate) fn without_arguments(step: String, value: Value) -> UndoRecord {
        UndoRecord {
            arguments: Arguments::from_pairs::<&str>(&step, []),
            step,
            emitted: None,
            value,
        }
    }
}

/// The state of a halted or finished run.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    /// The run's id, kept when the run resumes.
    pub run_id: String,
    /// The inputs as supplied (transforms are applied again on resume).
    pub inputs: ValueMap,
    /// The run's context values.
    pub context: ValueMap,
    /// The steps that completed, in completion order.
    pub completed: Vec<String>,
    /// The results still needed by a pending step or the return.
    pub results: ValueMap,
    /// The completed undoable steps, oldest first.
    pub undo_stack: Vec<UndoRecord>,
    /// Steps emitted while running (new steps and replacements), by name.
    pub emitted: Vec<StepSpec>,
    /// Retries made so far, by step.
    pub retries: BTreeMap<String, u32>,
    /// Steps that were still running when the run halted and were
    /// cancelled after its `halt_timeout`: they run again on resume (and
    /// may have done part of their work before).
    pub abandoned: Vec<String>,
}

impl RunState {
    /// Whether `step` completed.
    pub fn is_completed(&self, step: &str) -> bool {
        self.completed.iter().any(|s| s == step)
    }
}

/// What a durable run's journal says beyond its [`RunState`], when the run
/// is taken up again after a crash.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The run was unwinding, failed by these errors: it goes on undoing
    /// its steps (those in `undo`), and runs nothing.
    pub(crate) unwinding: Option<Vec<crate::journal::StepFailure>>,
    /// The run is cancelled: it undoes its steps (those in `undo`), runs
    /// nothing, and ends cancelled.
    pub(crate) cancel: bool,
    /// The run had completed: it completes again at once (for its undo
    /// stack), writing nothing.
    pub(crate) completed: bool,
}
