//! Steps emitted at run time, and a run rebuilt from its state: both add
//! or replace step definitions while the run is under way.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{def_of, Coordinator, Key, Node, Status};
use crate::context::StepRef;
use crate::error::{Error, Phase, Reason, StepErrorKind};
use crate::executor::state::RunState;
use crate::executor::undo::UndoEntry;
use crate::planner::{plan_step, PlannedStep};
use crate::step::StepSpec;
use crate::value::Value;

impl Coordinator {
    /// Rebuilds instance `k` from a halted run's `state`. A state that does
    /// not fit the reactor is an error naming the mismatch, found before
    /// anything runs.
    pub(super) fn restore(&mut self, k: usize, state: RunState) -> Result<(), Error> {
        let run_id = self.scope.run_id.to_string();
        let mismatch = |problem: String| Error::StateMismatch {
            run_id: run_id.clone(),
            problem,
        };
        // Give emitted steps their places, then plan them all.
        let mut seen = BTreeSet::new();
        for spec in &state.emitted {
            if !seen.insert(spec.name()) {
                return Err(mismatch(format!(
                    "the emitted step `{}` is listed twice",
                    spec.name()
                )));
            }
            if self.index_of(k, spec.name()).is_none() {
                let i = self.push_node(k);
                self.instances[k]
                    .dynamic_names
                    .insert(spec.name_arc().clone(), i);
            }
        }
        for spec in state.emitted {
            let i = self.index_of(k, spec.name()).expect("placed above");
            let name = spec.name().to_string();
            let planned = self.plan_dynamic(k, spec, i).map_err(|e| {
                mismatch(format!("the emitted step `{name}` cannot be planned: {e}"))
            })?;
            self.instances[k].set_def(i, Some(Arc::new(planned)));
        }
        let known = |c: &Coordinator, name: &str, what: &str| {
            c.index_of(k, name).ok_or_else(|| {
                mismatch(format!(
                    "{what} `{name}` is not a step of the reactor `{}`",
                    c.plan.name
                ))
            })
        };
        for name in &state.completed {
            let i = known(self, name, "the completed step")?;
            let inst = &mut self.instances[k];
            if inst.nodes[i].status == Status::Done {
                return Err(mismatch(format!("the step `{name}` is completed twice")));
            }
            inst.nodes[i].status = Status::Done;
            inst.unfinished -= 1;
            inst.completed.push(Key::new(k, i).step);
        }
        for (name, value) in state.results {
            let i = known(self, &name, "the result of")?;
            self.instances[k].nodes[i].result = Some(value);
        }
        for (name, n) in state.retries {
            let i = known(self, &name, "the retry count of")?;
            self.instances[k].nodes[i].retries = n;
        }
        for rec in state.undo_stack {
            let (spec, step_ref) = match &rec.emitted {
                Some(spec) => (spec.clone(), StepRef::Emitted(spec.clone())),
                None => {
                    let i = self.plan.step_named(&rec.step).ok_or_else(|| {
                        mismatch(format!(
                            "the undo stack holds `{}`, which is not a step of the reactor `{}`",
                            rec.step, self.plan.name
                        ))
                    })?;
                    (self.plan.steps[i].spec.clone(), StepRef::Planned(i))
                }
            };
            let step = spec
                .resolve()
                .map_err(|e| mismatch(format!("the undo stack's `{}`: {e}", rec.step)))?;
            let args = match (&step_ref, rec.arguments.is_empty()) {
                // Arguments left out (a state decoded from JSON, a journal)
                // are rebuilt from the state's inputs and results.
                (StepRef::Planned(i), true) if !spec.def().arguments.is_empty() => {
                    let def = &self.plan.clone().steps[*i];
                    self.resolve_arguments(Key::new(k, *i), def)
                        .map_err(|e| mismatch(format!("the arguments of `{}`: {e}", rec.step)))?
                }
                (StepRef::Emitted(spec), true) if !spec.def().arguments.is_empty() => {
                    // Under the definition it ran with (a replaced step's
                    // may differ from its node's latest).
                    let i = known(self, &rec.step, "the undo stack's")?;
                    let def = Arc::new(self.plan_dynamic(k, spec.clone(), i).map_err(|e| {
                        mismatch(format!(
                            "the emitted step `{}` cannot be planned: {e}",
                            rec.step
                        ))
                    })?);
                    // Arguments are resolved for a node's own definition.
                    let latest = self.instances[k].set_def(i, Some(def.clone()));
                    let args = self.resolve_arguments(Key::new(k, i), &def);
                    self.instances[k].set_def(i, latest);
                    args.map_err(|e| mismatch(format!("the arguments of `{}`: {e}", rec.step)))?
                }
                _ => rec.arguments,
            };
            let ctx = self.undo_context(step_ref, 0);
            self.undo.push(UndoEntry {
                step,
                ctx,
                value: rec.value,
                args,
            });
        }
        let plan = self.plan.clone();
        let ret = plan.return_step;
        let inst = &self.instances[k];
        if inst.nodes[ret].status == Status::Done && inst.nodes[ret].result.is_none() {
            return Err(mismatch(format!(
                "the return step `{}` completed, but the state holds no result for it",
                plan.steps[ret].name()
            )));
        }
        for i in 0..self.instances[k].nodes.len() {
            if self.instances[k].nodes[i].status == Status::Done {
                continue;
            }
            let inst = &self.instances[k];
            let def = def_of(&plan, inst, i);
            let dynamic = i >= plan.steps.len() || inst.def(i).is_some();
            let mut remaining = 0;
            let mut waits = Vec::new();
            for j in def.deps() {
                if inst.nodes[j].status != Status::Done {
                    remaining += 1;
                    if dynamic {
                        waits.push(j);
                    }
                }
            }
            for j in def.reads() {
                let producer = &inst.nodes[j];
                let done = j == i || producer.status == Status::Done;
                if done && producer.result.is_none() {
                    return Err(mismatch(format!(
                        "the step `{}` reads the result of `{}`, which completed, but the state holds no result for it",
                        def.name(),
                        def_of(&plan, inst, j).name()
                    )));
                }
            }
            let reads: smallvec::SmallVec<[usize; 4]> = def.reads().collect();
            drop(def);
            let inst = &mut self.instances[k];
            for j in waits {
                inst.extra_dependents.entry(j).or_default().push(i);
            }
            for j in reads.into_iter().filter(|&j| j != i) {
                inst.nodes[j].readers += 1;
            }
            inst.nodes[i].remaining = remaining;
            if remaining == 0 {
                inst.nodes[i].status = Status::Ready;
                self.push_ready(Key::new(k, i));
            }
        }
        Ok(())
    }

    fn push_node(&mut self, k: usize) -> usize {
        let inst = &mut self.instances[k];
        inst.nodes.push(Node::pending());
        inst.unfinished += 1;
        inst.nodes.len() - 1
    }

    fn plan_dynamic(&self, k: usize, spec: StepSpec, index: usize) -> Result<PlannedStep, Error> {
        let lookup = |n: &str| self.index_of(k, n);
        plan_step(spec, index, true, &self.plan.input_index, &lookup)
    }

    /// Adds the steps that step `key` emitted; returns whether one of them
    /// replaces it (a failure to plan them fails the step).
    pub(super) fn add_emitted_by(
        &mut self,
        key: Key,
        value: &Value,
        emitted: Vec<StepSpec>,
    ) -> bool {
        let (k, i) = (key.inst as usize, key.i());
        let name = self.name_of(key);
        let (replacement, others): (Vec<StepSpec>, Vec<StepSpec>) =
            emitted.into_iter().partition(|s| *s.name() == *name);
        let attempt = self.instances[k].nodes[i].retries + 1;
        if !others.is_empty() {
            if let Err(e) = self.add_emitted(k, others) {
                self.fail(key, Phase::Plan, attempt, e);
                return false;
            }
        }
        let Some(spec) = replacement.into_iter().last() else {
            return false;
        };
        // The replacement takes this step's place: dependents wait for it
        // and it can read this value as its own result.
        let node = &mut self.instances[k].nodes[i];
        node.result = Some(value.clone());
        node.retries = 0;
        match self.plan_dynamic(k, spec, i) {
            Ok(planned) => {
                self.instances[k].set_def(i, Some(Arc::new(planned)));
                self.wire_dynamic(k, i);
                true
            }
            Err(e) => {
                self.fail(
                    key,
                    Phase::Plan,
                    attempt,
                    StepErrorKind::Plan(Reason::new(e)),
                );
                false
            }
        }
    }

    /// Adds steps emitted under new names to instance `k`.
    fn add_emitted(&mut self, k: usize, specs: Vec<StepSpec>) -> Result<(), StepErrorKind> {
        let mut placed = Vec::with_capacity(specs.len());
        for spec in &specs {
            if self.index_of(k, spec.name()).is_some() {
                return Err(StepErrorKind::Plan(Reason::new(Error::Duplicate {
                    what: "steps",
                    name: spec.name().to_string(),
                    count: 2,
                })));
            }
            let i = self.push_node(k);
            self.instances[k]
                .dynamic_names
                .insert(spec.name_arc().clone(), i);
            placed.push(i);
        }
        for (spec, &i) in specs.into_iter().zip(&placed) {
            let planned = self
                .plan_dynamic(k, spec, i)
                .map_err(|e| StepErrorKind::Plan(Reason::new(e)))?;
            self.instances[k].set_def(i, Some(Arc::new(planned)));
        }
        for &i in &placed {
            self.wire_dynamic(k, i);
        }
        Ok(())
    }

    /// Counts a dynamic step's unfinished dependencies and registers it as
    /// a reader of the results it needs.
    fn wire_dynamic(&mut self, k: usize, i: usize) {
        let inst = &mut self.instances[k];
        let def = inst.def(i).cloned().expect("dynamic steps have a def");
        let mut remaining = 0;
        for j in def.deps() {
            if inst.nodes[j].status != Status::Done {
                remaining += 1;
                inst.extra_dependents.entry(j).or_default().push(i);
            }
        }
        for j in def.reads() {
            if j != i {
                inst.nodes[j].readers += 1;
            }
        }
        let node = &mut inst.nodes[i];
        node.remaining = remaining;
        if remaining == 0 {
            node.status = Status::Ready;
            self.push_ready(Key::new(k, i));
        } else {
            node.status = Status::Waiting;
        }
    }
}
