//! One run of the plan: the whole run of a reactor, or one element of a
//! map. It owns the graph state (each step's status, unfinished
//! dependencies, readers and result); the coordinator owns the scheduling
//! shared by its instances.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{def_of, Coordinator, Key, Node, Status};
use crate::argument::Arguments;
use crate::name::Name;
use crate::planner::PlannedStep;
use crate::value::Value;

pub(super) struct Instance {
    /// Whether the instance is in use (a finished element's is kept to be
    /// reused).
    pub(super) live: bool,
    /// The map element it runs (unit for a reactor's run).
    pub(super) element: Value,
    /// The element's position in the map's source.
    pub(super) index: u64,
    pub(super) nodes: Vec<Node>,
    /// The definitions emitted at run time, by node (see `Node::emitted`).
    defs: FxHashMap<usize, Arc<PlannedStep>>,
    pub(super) dynamic_names: FxHashMap<Name, usize>,
    /// Arguments kept for steps to run again (a retry reuses them, and so
    /// does a step a chunk left unrun).
    pub(super) retry_args: FxHashMap<usize, Arguments>,
    pub(super) extra_dependents: FxHashMap<usize, Vec<usize>>,
    /// Completed steps in completion order (kept for the run's state).
    pub(super) completed: Vec<u32>,
    pub(super) unfinished: usize,
}

impl Instance {
    /// Node `i`'s definition, if it was emitted at run time.
    pub(super) fn def(&self, i: usize) -> Option<&Arc<PlannedStep>> {
        if self.nodes[i].emitted {
            self.defs.get(&i)
        } else {
            None
        }
    }

    /// Sets (or with `None` clears) node `i`'s emitted definition; the
    /// one it had.
    pub(super) fn set_def(
        &mut self,
        i: usize,
        def: Option<Arc<PlannedStep>>,
    ) -> Option<Arc<PlannedStep>> {
        self.nodes[i].emitted = def.is_some();
        match def {
            Some(def) => self.defs.insert(i, def),
            None => self.defs.remove(&i),
        }
    }

    /// One reader of `j` no longer needs its result.
    pub(super) fn release_read(&mut self, j: usize) {
        let node = &mut self.nodes[j];
        node.readers = node.readers.saturating_sub(1);
        if node.readers == 0 && !node.keep && node.status == Status::Done {
            node.result = None;
        }
    }
}

impl Coordinator {
    /// A new (or reused) instance for `element`, its steps not yet wired.
    pub(super) fn new_instance(&mut self, element: Value, index: u64) -> usize {
        let n = self.plan.steps.len();
        let k = match self.free.pop() {
            Some(k) => {
                let inst = &mut self.instances[k as usize];
                inst.nodes.truncate(n);
                for node in &mut inst.nodes {
                    *node = Node::pending();
                }
                inst.defs.clear();
                inst.dynamic_names.clear();
                inst.retry_args.clear();
                inst.extra_dependents.clear();
                inst.completed.clear();
                k as usize
            }
            None => {
                self.instances.push(Instance {
                    live: true,
                    element: Value::unit(),
                    index: 0,
                    nodes: (0..n).map(|_| Node::pending()).collect(),
                    defs: FxHashMap::default(),
                    dynamic_names: FxHashMap::default(),
                    retry_args: FxHashMap::default(),
                    extra_dependents: FxHashMap::default(),
                    completed: Vec::new(),
                    unfinished: 0,
                });
                self.instances.len() - 1
            }
        };
        let inst = &mut self.instances[k];
        inst.live = true;
        inst.element = element;
        inst.index = index;
        inst.unfinished = n;
        inst.nodes[self.plan.return_step].keep = true;
        k
    }

    /// Counts the dependencies of a fresh instance's steps; those with none
    /// are ready.
    pub(super) fn wire_fresh(&mut self, k: usize) {
        let plan = self.plan.clone();
        for (i, s) in plan.steps.iter().enumerate() {
            let inst = &mut self.instances[k];
            inst.nodes[i].remaining = s.edges.deps().len() as u32;
            for j in s.reads() {
                inst.nodes[j].readers += 1;
            }
            if s.edges.deps().is_empty() {
                inst.nodes[i].status = Status::Ready;
                self.push_ready(Key::new(k, i));
            }
        }
    }

    /// The index of the step named `name` in instance `k`.
    pub(super) fn index_of(&self, k: usize, name: &str) -> Option<usize> {
        self.plan
            .step_named(name)
            .or_else(|| self.instances[k].dynamic_names.get(name).copied())
    }

    /// The name of a step.
    pub(super) fn name_of(&self, key: Key) -> Name {
        def_of(&self.plan, &self.instances[key.inst as usize], key.i())
            .name()
            .clone()
    }

    /// A dependency of step `d` of instance `k` is done.
    pub(super) fn dependency_done(&mut self, k: usize, d: usize) {
        let node = &mut self.instances[k].nodes[d];
        node.remaining -= 1;
        if node.remaining == 0 && node.status == Status::Waiting {
            node.status = Status::Ready;
            self.push_ready(Key::new(k, d));
        }
    }
}
