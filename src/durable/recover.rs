//! A run rebuilt from its journal: the journal folded into what it says
//! ([`Folded`]), then into the [`RunState`] and [`Recovered`] the executor
//! takes up.
//!
//! The rules (the design's "recovery rules"):
//! 1. A `StepDone` step is done; its result is decoded with its step's
//!    codec.
//! 2. A step with its dependencies done and no `StepDone` may have
//!    started: it runs again (at least once).
//! 3. An unwinding run undoes, newest first, every step of its
//!    `Unwinding` list without an `Undone`; it runs nothing else.
//! 4. Retry counts come from `StepRetry`: a crash costs at most one
//!    extra attempt.
//! 5. The definition's hash must match; otherwise the error names the
//!    first change.

use std::collections::{BTreeMap, HashSet};

use super::definition::{first_change, Definition};
use crate::error::Error;
use crate::executor::{Recovered, RunState, UndoRecord, Unfinished};
use crate::journal::{Entry, Journal, RunEnd, StepFailure, UndoItem};
use crate::value::{Value, ValueMap};

/// What a run's journal says.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    pub(crate) reactor: String,
    pub(crate) def_hash: String,
    pub(crate) definition: Vec<String>,
    pub(crate) inputs: BTreeMap<String, serde_json::Value>,
    /// Completed steps, in completion order, with their encoded results.
    pub(crate) done: Vec<(String, serde_json::Value)>,
    pub(crate) retries: BTreeMap<String, u32>,
    pub(crate) unwinding: Option<(Vec<StepFailure>, Vec<UndoItem>)>,
    pub(crate) undone: HashSet<String>,
    /// Steps a guard skipped: never undone.
    pub(crate) skipped: HashSet<String>,
    /// Undos that failed before the run was taken up.
    pub(crate) undo_errors: Vec<StepFailure>,
    pub(crate) halted: bool,
    pub(crate) ended: Option<RunEnd>,
    /// The last epoch the run was taken up in.
    pub(crate) epoch: u32,
    /// The `seq` of the run's next record.
    pub(crate) next_seq: u64,
}

impl Folded {
    /// Folds a (checked) journal.
    pub(crate) fn of(journal: &Journal) -> Folded {
        let mut f = Folded {
            epoch: 1,
            next_seq: journal.records.len() as u64,
            ..Folded::default()
        };
        for record in &journal.records {
            match &record.entry {
                Entry::RunStarted {
                    reactor,
                    def_hash,
                    definition,
                    inputs,
                    ..
                } => {
                    f.reactor.clone_from(reactor);
                    f.def_hash.clone_from(def_hash);
                    f.definition.clone_from(definition);
                    f.inputs.clone_from(inputs);
                }
                Entry::StepDone {
                    step,
                    value,
                    skipped,
                    ..
                } => {
                    if *skipped {
                        f.skipped.insert(step.clone());
                    }
                    f.retries.remove(step);
                    f.done.push((step.clone(), value.clone()));
                }
                Entry::StepRetry { step, retries } => {
                    f.retries.insert(step.clone(), *retries);
                }
                Entry::Unwinding { errors, undo } => {
                    f.unwinding = Some((errors.clone(), undo.clone()));
                }
                Entry::Undone { step, error } => {
                    f.undone.insert(step.clone());
                    if let Some(message) = error {
                        f.undo_errors.push(StepFailure {
                            step: step.clone(),
                            phase: "undo".to_string(),
                            attempt: 0,
                            message: message.clone(),
                        });
                    }
                }
                Entry::Halted => f.halted = true,
                Entry::Resumed { epoch } => {
                    f.halted = false;
                    f.epoch = f.epoch.max(*epoch);
                }

                Entry::RunEnded { end } => f.ended = Some(end.clone()),
            }
        }
        f
    }

    /// The state and recovery of run `run_id` under `def` (the reactor as
    /// registered now), with `context` as the run's context.
    pub(crate) fn rebuild(
        &self,
        run_id: &str,
        def: &Definition,
        migrated: bool,
        can_undo: impl Fn(&str) -> bool,
        context: ValueMap,
    ) -> Result<(RunState, Recovered), Error> {
        if self.def_hash != def.hash && !migrated {
            return Err(Error::DefinitionChanged {
                run_id: run_id.to_string(),
                reactor: self.reactor.clone(),
                changed: format!(
                    "{} (if its runs can go on under the new one, register \
                     `Runtime::migrate(\"{}\", \"{}\")`)",
                    first_change(&self.definition, &def.lines),
                    self.reactor,
                    self.def_hash
                ),
            });
        }
        let mismatch = |problem: String| Error::StateMismatch {
            run_id: run_id.to_string(),
            problem: format!("the journal holds {problem}"),
        };
        let mut inputs = ValueMap::new();
        for (name, json) in &self.inputs {
            let codec = def.input(name).map_err(mismatch)?;
            inputs.insert(name.clone(), codec.decode(json.clone())?);
        }
        let mut results = ValueMap::new();
        let mut completed = Vec::new();
        for (name, json) in &self.done {
            let codec = def.output(name).map_err(mismatch)?;
            results.insert(name.clone(), codec.decode(json.clone())?);
            completed.push(name.clone());
        }
        let undo: Vec<(String, Value)> = match &self.unwinding {
            // Newest first in the journal; the stack wants oldest first.
            Some((_, items)) => items
                .iter()
                .rev()
                .filter(|item| !self.undone.contains(&item.step))
                .map(|item| {
                    let value = match results.get(&item.step) {
                        Some(v) if !item.abandoned => v.clone(),
                        _ => Value::new(Unfinished),
                    };
                    (item.step.clone(), value)
                })
                .collect(),
            None => self
                .done
                .iter()
                .filter(|(name, _)| can_undo(name) && !self.skipped.contains(name))
                .map(|(name, _)| (name.clone(), results[name].clone()))
                .collect(),
        };
        let undo_stack = undo
            .into_iter()
            .map(|(step, value)| UndoRecord::without_arguments(step, value))
            .collect();
        let state = RunState {
            run_id: run_id.to_string(),
            inputs,
            context,
            completed,
            results,
            undo_stack,
            retries: self.retries.clone(),
            ..RunState::default()
        };
        let recovered = Recovered {
            // The failed undos' errors stay the run's.
            unwinding: self
                .unwinding
                .as_ref()
                .map(|(errors, _)| [errors.clone(), self.undo_errors.clone()].concat()),
            cancel: false,
        };
        Ok((state, recovered))
    }
}
