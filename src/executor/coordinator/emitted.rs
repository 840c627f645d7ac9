//! Steps emitted at run time, and a run rebuilt from its state: both add
//! or replace step definitions while the run is under way.

use std::sync::Arc;

use super::{def_of, Coordinator, Node, Status, UndoEntry};
use crate::error::{Error, Phase, Reason, StepErrorKind};
use crate::executor::state::UndoRecord;
use crate::planner::{plan_step, PlannedStep};
use crate::step::StepSpec;
use crate::value::{Value, ValueMap};

impl Coordinator {
    pub(super) fn restore(
        &mut self,
        completed: Vec<String>,
        mut results: ValueMap,
        undo_stack: Vec<UndoRecord>,
        emitted: Vec<StepSpec>,
        retries: std::collections::BTreeMap<String, u32>,
    ) -> Result<(), Error> {
        // Give emitted steps their places, then plan them all.
        for spec in &emitted {
            if self.index_of(spec.name()).is_none() {
                let i = self.push_node();
                self.dynamic_names.insert(spec.name_arc().clone(), i);
            }
        }
        for spec in emitted {
            let i = self.index_of(spec.name()).expect("placed above");
            let planned = self.plan_dynamic(spec, i)?;
            self.nodes[i].def = Some(Arc::new(planned));
        }
        for name in &completed {
            if let Some(i) = self.index_of(name) {
                self.nodes[i].status = Status::Done;
                self.unfinished -= 1;
                self.completed.push(i);
            }
        }
        for (name, value) in std::mem::take(&mut results) {
            if let Some(i) = self.index_of(&name) {
                self.nodes[i].result = Some(value);
            }
        }
        for (name, n) in retries {
            if let Some(i) = self.index_of(&name) {
                self.nodes[i].retries = n;
            }
        }
        for rec in undo_stack {
            if let Some(index) = self.index_of(&rec.step) {
                self.undo.push(UndoEntry {
                    index,
                    value: rec.value,
                    args: rec.arguments,
                });
            }
        }
        let plan = self.plan.clone();
        for i in 0..self.nodes.len() {
            if self.nodes[i].status == Status::Done {
                continue;
            }
            let def = def_of(&plan, &self.nodes, i);
            let mut remaining = 0;
            for &j in &def.deps {
                if self.nodes[j].status != Status::Done {
                    remaining += 1;
                    if i >= plan.steps.len() || self.nodes[i].def.is_some() {
                        self.extra_dependents.entry(j).or_default().push(i);
                    }
                }
            }
            let reads = def.reads.clone();
            drop(def);
            for j in reads.into_iter().filter(|&j| j != i) {
                self.nodes[j].readers += 1;
            }
            self.nodes[i].remaining = remaining;
            if remaining == 0 {
                self.nodes[i].status = Status::Ready;
                self.ready.push_back(i);
            }
        }
        Ok(())
    }

    pub(super) fn push_node(&mut self) -> usize {
        self.nodes.push(Node::pending());
        self.unfinished += 1;
        self.nodes.len() - 1
    }

    pub(super) fn plan_dynamic(&self, spec: StepSpec, index: usize) -> Result<PlannedStep, Error> {
        let lookup = |n: &str| self.index_of(n);
        plan_step(
            spec,
            index,
            true,
            &self.plan.input_index,
            &lookup,
            &mut Default::default(),
        )
    }

    /// Adds the steps that step `i` emitted; returns whether one of them
    /// replaces step `i` (a failure to plan them fails step `i`).
    pub(super) fn add_emitted_by(
        &mut self,
        i: usize,
        value: &Value,
        emitted: Vec<StepSpec>,
    ) -> bool {
        let name = def_of(&self.plan, &self.nodes, i).name().clone();
        let (replacement, others): (Vec<StepSpec>, Vec<StepSpec>) =
            emitted.into_iter().partition(|s| *s.name() == *name);
        let attempt = self.nodes[i].retries + 1;
        if !others.is_empty() {
            if let Err(e) = self.add_emitted(others) {
                self.fail(i, Phase::Plan, attempt, e);
                return false;
            }
        }
        let Some(spec) = replacement.into_iter().last() else {
            return false;
        };
        // The replacement takes this step's place: dependents wait for it
        // and it can read this value as its own result.
        self.nodes[i].result = Some(value.clone());
        self.nodes[i].retries = 0;
        match self.plan_dynamic(spec, i) {
            Ok(planned) => {
                self.nodes[i].def = Some(Arc::new(planned));
                self.wire_dynamic(i);
                true
            }
            Err(e) => {
                self.fail(i, Phase::Plan, attempt, StepErrorKind::Plan(Reason::new(e)));
                false
            }
        }
    }

    /// Adds steps emitted under new names.
    pub(super) fn add_emitted(&mut self, specs: Vec<StepSpec>) -> Result<(), StepErrorKind> {
        let mut placed = Vec::with_capacity(specs.len());
        for spec in &specs {
            if self.index_of(spec.name()).is_some() {
                return Err(StepErrorKind::Plan(Reason::new(Error::Duplicate {
                    what: "steps",
                    name: spec.name().to_string(),
                    count: 2,
                })));
            }
            let i = self.push_node();
            self.dynamic_names.insert(spec.name_arc().clone(), i);
            placed.push(i);
        }
        for (spec, &i) in specs.into_iter().zip(&placed) {
            let planned = self
                .plan_dynamic(spec, i)
                .map_err(|e| StepErrorKind::Plan(Reason::new(e)))?;
            self.nodes[i].def = Some(Arc::new(planned));
        }
        for &i in &placed {
            self.wire_dynamic(i);
        }
        Ok(())
    }

    /// Counts a dynamic step's unfinished dependencies and registers it as
    /// a reader of the results it needs.
    pub(super) fn wire_dynamic(&mut self, i: usize) {
        let def = self.nodes[i].def.clone().expect("dynamic steps have a def");
        let mut remaining = 0;
        for &j in &def.deps {
            if self.nodes[j].status != Status::Done {
                remaining += 1;
                self.extra_dependents.entry(j).or_default().push(i);
            }
        }
        for &j in &def.reads {
            if j != i {
                self.nodes[j].readers += 1;
            }
        }
        let node = &mut self.nodes[i];
        node.remaining = remaining;
        if remaining == 0 {
            node.status = Status::Ready;
            self.ready.push_back(i);
        } else {
            node.status = Status::Waiting;
        }
    }
}
