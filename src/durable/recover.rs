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
//! 6. Emitted steps are rebuilt from their emitter's `StepDone` through
//!    the [`StepRegistry`], in journal order: a step emitted under its
//!    emitter's name replaces it (the emitter's record is its result, not
//!    its completion), and each completion is decoded with the codec of
//!    the step's definition at that point. A step name's `Undone` records
//!    count off its entries of the `Unwinding` list in order, so a step
//!    undone under two definitions (replaced) is undone once under each.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::definition::{first_change, Definition};
use super::registry::StepRegistry;
use crate::error::Error;
use crate::executor::{NestedRuns, Recovered, RunState, UndoRecord, Unfinished};
use crate::journal::run::append_with_retry;
use crate::journal::{
    EmittedStep, Entry, Journal, Record, RunEnd, RunJournal, StepFailure, Store, StoreError,
    UndoItem,
};
use crate::kinds::{rebuild_switched, SWITCH_KIND};
use crate::planner::Plan;
use crate::step::StepSpec;
use crate::value::{Value, ValueMap};

/// An undo stack's record of `step` (its arguments rebuilt on restore),
/// under its emitted definition `spec`, if it was emitted.
fn record(step: String, value: Value, spec: Option<StepSpec>) -> UndoRecord {
    UndoRecord {
        emitted: spec,
        ..UndoRecord::without_arguments(step, value)
    }
}

/// What a run's journal says.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    pub(crate) reactor: String,
    pub(crate) def_hash: String,
    pub(crate) definition: Vec<String>,
    pub(crate) inputs: BTreeMap<String, serde_json::Value>,
    /// `StepDone` records, in journal order.
    pub(crate) done: Vec<Done>,
    pub(crate) retries: BTreeMap<String, u32>,
    pub(crate) unwinding: Option<(Vec<StepFailure>, Vec<UndoItem>)>,
    /// How many `Undone` records each step has.
    pub(crate) undone: HashMap<String, usize>,
    /// Undos that failed before the run was taken up.
    pub(crate) undo_errors: Vec<StepFailure>,
    pub(crate) halted: bool,
    pub(crate) ended: Option<RunEnd>,
    /// The last epoch the run was taken up in.
    pub(crate) epoch: u32,
    /// The `seq` of the run's next record.
    pub(crate) next_seq: u64,
}

/// A `StepDone` record.
#[derive(Debug)]
pub(crate) struct Done {
    step: String,
    value: serde_json::Value,
    /// A guard skipped it: never undone.
    skipped: bool,
    emitted: Vec<EmittedStep>,
    /// The nested runs it kept for its undo.
    nested: Vec<String>,
}

impl Done {
    /// It emitted a step of its own name, which replaced it.
    fn replaced(&self) -> bool {
        self.emitted.iter().any(|e| e.name == self.step)
    }
}

/// How an ended run ended, as a result: a completed run's encoded
/// value, or the error of a failed or cancelled one.
pub(crate) fn end_outcome(run_id: &str, end: RunEnd) -> Result<serde_json::Value, Error> {
    match end {
        RunEnd::Completed { value } => Ok(value),
        RunEnd::Failed { errors } => Err(Error::Run(crate::error::RunError {
            run_id: run_id.to_string(),
            errors: errors
                .into_iter()
                .map(crate::error::StepError::from)
                .collect(),
        })),
        RunEnd::Cancelled => Err(Error::State {
            run_id: run_id.to_string(),
            message: "it was cancelled".to_string(),
        }),
    }
}

impl Folded {
    /// Claims run `run_id` for the next epoch (its `Resumed` record, at
    /// the run's next place: the store's fence refuses it if another
    /// driver wrote or claimed since this journal was loaded), and returns
    /// its journal from there.
    pub(crate) async fn claim(
        &self,
        store: &Arc<dyn Store>,
        run_id: &str,
    ) -> Result<RunJournal, StoreError> {
        let epoch = self.epoch.saturating_add(1);
        let resumed = vec![Record::new(self.next_seq, Entry::Resumed { epoch })];
        append_with_retry(&**store, run_id, epoch, resumed).await?;
        tracing::info!(run_id, epoch, reactor = %self.reactor, "taking up a durable run");
        Ok(
            RunJournal::new(store.clone(), run_id.to_string(), self.next_seq + 1, epoch)
                .with_replaced(self.replaced()),
        )
    }

    /// How many times each step was replaced by a step of its name.
    pub(crate) fn replaced(&self) -> HashMap<String, u32> {
        let mut replaced = HashMap::new();
        for done in self.done.iter().filter(|d| d.replaced()) {
            *replaced.entry(done.step.clone()).or_default() += 1;
        }
        replaced
    }

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
                    emitted,
                    nested,
                    ..
                } => {
                    f.retries.remove(step);
                    f.done.push(Done {
                        step: step.clone(),
                        value: value.clone(),
                        skipped: *skipped,
                        emitted: emitted.clone(),
                        nested: nested.clone(),
                    });
                }
                Entry::StepRetry { step, retries } => {
                    f.retries.insert(step.clone(), *retries);
                }
                Entry::Unwinding { errors, undo } => {
                    f.unwinding = Some((errors.clone(), undo.clone()));
                }
                Entry::Undone { step, error } => {
                    *f.undone.entry(step.clone()).or_default() += 1;
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
    /// registered now, its emitted steps rebuilt by `steps`), with
    /// `context` as the run's context.
    pub(crate) fn rebuild(
        &self,
        run_id: &str,
        def: &Definition,
        migrated: bool,
        plan: &Plan,
        steps: &StepRegistry,
        context: ValueMap,
    ) -> Result<(RunState, Recovered), Error> {
        let can_undo = |name: &str| {
            plan.step_named(name)
                .is_some_and(|i| plan.steps[i].can_undo)
        };
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
        // Each step's definition as the journal goes: the reactor's, until
        // a step of its name is emitted.
        let mut emitted: Vec<StepSpec> = Vec::new();
        let current = |emitted: &[StepSpec], name: &str| -> Option<StepSpec> {
            emitted.iter().find(|s| s.name() == name).cloned()
        };
        let mut results = ValueMap::new();
        let mut completed = Vec::new();
        // Undoable completions, oldest first: name, value, definition.
        let mut undoable: Vec<(String, Value, Option<StepSpec>)> = Vec::new();
        for done in &self.done {
            let spec = current(&emitted, &done.step);
            let (codec, undoes) = match &spec {
                Some(spec) => (
                    spec.output_codec().ok_or_else(|| {
                        mismatch(format!(
                            "the emitted step `{}` with no result type",
                            done.step
                        ))
                    })?,
                    spec.resolve()
                        .map_err(|e| mismatch(e.to_string()))?
                        .can_undo(),
                ),
                None => (
                    def.output(&done.step).map_err(mismatch)?,
                    can_undo(&done.step),
                ),
            };
            let value = codec.decode(done.value.clone())?;
            if undoes && !done.skipped {
                // A step that kept nested runs undoes them by id.
                let kept = match done.nested.is_empty() {
                    true => value.clone(),
                    false => Value::new(NestedRuns {
                        ids: done.nested.clone(),
                        kept: None,
                    }),
                };
                undoable.push((done.step.clone(), kept, spec));
            }
            results.insert(done.step.clone(), value);
            if !done.replaced() {
                completed.push(done.step.clone());
            }
            for e in &done.emitted {
                let spec = match e.kind.as_str() {
                    SWITCH_KIND => {
                        // The switch as it stood: emitted itself (in a
                        // branch of another), or the reactor's.
                        let emitted_switch = current(&emitted, &done.step);
                        let switch = emitted_switch
                            .as_ref()
                            .or_else(|| plan.step_named(&done.step).map(|i| &plan.steps[i].spec));
                        let branch = e.params.as_u64().and_then(|k| usize::try_from(k).ok());
                        let outside = |n: &str| results.get(n).cloned();
                        switch
                            .zip(branch)
                            .and_then(|(s, k)| rebuild_switched(s, k, &e.name, &outside))
                            .ok_or_else(|| {
                                format!(
                                    "no branch {} of a switch `{}` emits it",
                                    e.params, done.step
                                )
                            })
                    }
                    _ => steps.rebuild(&e.name, &e.kind, e.params.clone()),
                }
                .map_err(|why| mismatch(format!("the emitted step `{}`: {why}", e.name)))?;
                match emitted.iter_mut().find(|s| s.name() == e.name) {
                    Some(old) => *old = spec,
                    None => emitted.push(spec),
                }
            }
        }
        let undo_stack = match &self.unwinding {
            // Newest first in the journal; the stack wants oldest first.
            Some((_, items)) => {
                let mut undone = self.undone.clone();
                let mut stack = Vec::new();
                for item in items {
                    // This item's completion: the newest of its name left.
                    let found = (!item.abandoned)
                        .then(|| undoable.iter().rposition(|(n, ..)| *n == item.step))
                        .flatten()
                        .map(|at| undoable.remove(at));
                    let (value, spec) = match found {
                        Some((_, value, spec)) => (value, spec),
                        None => (Value::new(Unfinished), current(&emitted, &item.step)),
                    };
                    match undone.get_mut(&item.step) {
                        Some(n) if *n > 0 => *n -= 1,
                        _ => stack.push(record(item.step.clone(), value, spec)),
                    }
                }
                stack.reverse();
                stack
            }
            // Undos journalled outside an unwinding (a completed nested
            // run undone by its parent) undid the newest of their name.
            None => {
                let mut undone = self.undone.clone();
                let mut stack: Vec<UndoRecord> = undoable
                    .into_iter()
                    .rev()
                    .filter(|(step, ..)| match undone.get_mut(step) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            false
                        }
                        _ => true,
                    })
                    .map(|(step, value, spec)| record(step, value, spec))
                    .collect();
                stack.reverse();
                stack
            }
        };
        let state = RunState {
            run_id: run_id.to_string(),
            inputs,
            context,
            completed,
            results,
            undo_stack,
            emitted,
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
            completed: false,
        };
        Ok((state, recovered))
    }
}
