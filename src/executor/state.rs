//! [`RunState`]: a halted or finished run as plain data, apart from the
//! reactor's definition and from any live task.
//!
//! A run can be rebuilt from its state and its reactor: resuming a halted
//! run, or undoing a finished one, needs nothing else.

use std::collections::BTreeMap;

use crate::argument::Arguments;
use crate::step::StepSpec;
use crate::value::{Value, ValueMap};

/// A completed, undoable step on the undo stack.
#[derive(Clone, Debug)]
pub struct UndoRecord {
    /// The step's name.
    pub step: String,
    /// The value it completed with (or what its step kept for undo, see
    /// [`Outcome::OkWithUndo`](crate::Outcome::OkWithUndo)).
    pub value: Value,
    /// The arguments it ran with.
    pub arguments: Arguments,
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
}

impl RunState {
    /// Whether `step` completed.
    pub fn is_completed(&self, step: &str) -> bool {
        self.completed.iter().any(|s| s == step)
    }
}
