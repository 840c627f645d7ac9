//! The planner: turns declared steps into a validated dependency graph.
//!
//! Steps become indices; each argument is resolved to an input index, a
//! producer index or a constant. Planning rejects duplicate names, unknown
//! inputs and steps, a missing or unknown return step and cycles (naming
//! the steps of one cycle), all before anything runs. It is linear in the
//! number of steps and arguments. Steps emitted while a run is under way
//! are planned one at a time with [`plan_step`].

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::builder::{Builder, InputDef};
use crate::error::Error;
use crate::middleware::Middleware;
use crate::name::Name;
use crate::step::{Runner, StepImp, StepSpec, SyncRunFn};

/// A planned reactor: immutable, shared by all of its runs.
///
/// Aligned to a cache line so that the data starts past the `Arc`'s
/// counts: the coordinator changes the count for every step it starts,
/// and steps on other threads read the plan, which must not share that line.
#[repr(align(64))]
pub(crate) struct Plan {
    pub(crate) name: Name,
    pub(crate) description: Option<String>,
    pub(crate) inputs: Vec<InputDef>,
    pub(crate) input_index: FxHashMap<Name, usize>,
    pub(crate) steps: Vec<PlannedStep>,
    step_index: StepIndex,
    pub(crate) return_step: usize,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
}

/// A step's edges as step indices of 4 bytes (a plan's steps are counted
/// in `u32`, as a run's keys are), in one list: first the producers it
/// waits for, then the steps that wait for it. Four fit inline, and the
/// whole is 32 bytes, where two lists of four took 48.
#[derive(Clone, Default)]
pub(crate) struct Edges {
    all: SmallVec<[u32; 4]>,
    /// How many of `all` are producers.
    deps: u32,
}

impl Edges {
    /// Edges to these producers (sorted, each once), and no dependents yet.
    fn to(mut deps: SmallVec<[u32; 4]>) -> Edges {
        if deps.len() > 1 {
            deps.sort_unstable();
            deps.dedup();
        }
        Edges {
            deps: deps.len() as u32,
            all: deps,
        }
    }

    /// The producers.
    pub(crate) fn deps(&self) -> &[u32] {
        &self.all[..self.deps as usize]
    }

    /// The steps that wait for this one.
    pub(crate) fn dependents(&self) -> &[u32] {
        &self.all[self.deps as usize..]
    }
}

/// Where a planned argument reads from (an index into the inputs or the
/// steps; 8 bytes, since the executor walks these for every step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgFrom {
    Input(u32),
    Step(u32),
    Constant,
}

/// A step with its arguments resolved to indices, and what the executor
/// reads for every run copied out of the [`StepSpec`], so that running a
/// step touches one compact record.
#[derive(Clone)]
pub(crate) struct PlannedStep {
    pub(crate) spec: StepSpec,
    /// Where each argument reads from, in declaration order (the sources,
    /// with sub-paths and transforms, stay in the spec). The producers
    /// a step reads are those of its `Step` entries ([`PlannedStep::reads`]).
    pub(crate) arg_from: SmallVec<[ArgFrom; 2]>,
    /// A plain closure (`run_sync`, no compensation, no guard or limit),
    /// called directly ([`PlannedStep::plain`]).
    is_plain: bool,
    /// No argument has a sub-path or transform, and no whole-map transform.
    pub(crate) plain_args: bool,
    pub(crate) run_async: bool,
    pub(crate) cpu_bound: bool,
    /// Its `run` awaits (an async closure, a `Step` impl, a ready-made
    /// kind) and is not `cpu_bound`: with default options it does not
    /// take one of the run's core-sized slots.
    pub(crate) awaits: bool,
    /// The unique producers this step waits for (data and `wait_for`),
    /// and the steps that wait for it ([`PlannedStep::deps`] and
    /// [`PlannedStep::dependents`] read them).
    pub(crate) edges: Edges,
    pub(crate) can_undo: bool,
}

impl Plan {
    /// The index of the step named `name`.
    pub(crate) fn step_named(&self, name: &str) -> Option<usize> {
        self.step_index.get(name, |i| self.steps[i].spec.name())
    }
}

/// Step indices by name: a table of 4-byte indices whose names are read
/// from the steps themselves (a map holding the names too would double the
/// memory that building a large reactor has to fault in).
#[derive(Default)]
struct StepIndex(hashbrown::HashTable<u32>);

impl StepIndex {
    fn hash(name: &str) -> u64 {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(name)
    }

    fn with_capacity(n: usize) -> StepIndex {
        StepIndex(hashbrown::HashTable::with_capacity(n))
    }

    fn get<'a>(&self, name: &str, names: impl Fn(usize) -> &'a str) -> Option<usize> {
        self.0
            .find(Self::hash(name), |&i| names(i as usize) == name)
            .map(|&i| i as usize)
    }

    /// Adds step `i`; `false` if the name is taken.
    fn insert<'a>(&mut self, i: usize, names: impl Fn(usize) -> &'a str) -> bool {
        let name = names(i);
        let hash = Self::hash(name);
        if self.0.find(hash, |&j| names(j as usize) == name).is_some() {
            return false;
        }
        self.0
            .insert_unique(hash, i as u32, |&j| Self::hash(names(j as usize)));
        true
    }
}

impl PlannedStep {
    pub(crate) fn name(&self) -> &Name {
        self.spec.name_arc()
    }

    /// A stand-in for a step that failed to plan (the plan is discarded).
    fn placeholder(spec: StepSpec) -> PlannedStep {
        PlannedStep {
            arg_from: SmallVec::new(),
            is_plain: false,
            plain_args: true,
            run_async: true,
            cpu_bound: false,
            awaits: false,
            edges: Edges::default(),
            can_undo: false,
            spec,
        }
    }

    /// The producers it waits for.
    pub(crate) fn deps(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.edges.deps().iter().map(|&j| j as usize)
    }

    /// The steps that wait for it.
    pub(crate) fn dependents(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.edges.dependents().iter().map(|&j| j as usize)
    }

    /// How many times it may retry (`None`: no limit).
    pub(crate) fn max_retries(&self) -> Option<u32> {
        self.spec.def().max_retries()
    }

    /// The name of argument `k`.
    pub(crate) fn arg_name(&self, k: usize) -> &Name {
        &self.spec.def().arguments[k].name
    }

    /// The producers whose values this step reads, once per argument
    /// reading one (so a producer read twice is listed twice: a reader
    /// counts and releases its readings alike). A step emitted to
    /// replace itself lists itself.
    pub(crate) fn reads(&self) -> impl Iterator<Item = usize> + '_ {
        self.arg_from.iter().filter_map(|from| match from {
            ArgFrom::Step(j) => Some(*j as usize),
            _ => None,
        })
    }

    /// Its closure, if it is a plain one (`run_sync`, no compensation,
    /// no guard or limit): called directly, with no runner built.
    pub(crate) fn plain(&self) -> Option<&SyncRunFn> {
        if !self.is_plain {
            return None;
        }
        self.spec.def().implementation.sync_run()
    }

    /// The implementation (resolved when planned, so this cannot fail).
    pub(crate) fn imp(&self) -> StepImp {
        self.spec.resolve().expect("planned steps resolve")
    }

    /// How a task calls the step.
    pub(crate) fn runner(&self) -> Runner {
        match self.plain() {
            Some(run) => Runner::Plain(run.clone()),
            None => Runner::Step(self.imp()),
        }
    }
}

/// Resolves one step's arguments. `lookup` maps a step name to its index;
/// `self_index` is the index this step will have. A read of its own name
/// refers to its previous value and adds no edge (a step emitted to replace
/// itself), unless `emitted` is false: in a declared reactor it is a cycle.
pub(crate) fn plan_step(
    spec: StepSpec,
    self_index: usize,
    emitted: bool,
    input_index: &FxHashMap<Name, usize>,
    lookup: &dyn Fn(&str) -> Option<usize>,
) -> Result<PlannedStep, Error> {
    let imp = spec.resolve()?;
    let def = spec.def();
    let mut arg_from = SmallVec::with_capacity(def.arguments.len());
    let mut deps = SmallVec::new();
    let self_read = || Error::Cycle {
        cycle: vec![def.name.to_string(), def.name.to_string()],
        length: 1,
    };
    for arg in &def.arguments {
        let from = match &arg.source.origin {
            crate::argument::Origin::Input(name) => {
                let i = input_index
                    .get(name)
                    .copied()
                    .ok_or_else(|| Error::UnknownInput {
                        step: def.name.to_string(),
                        argument: arg.name.to_string(),
                        input: name.to_string(),
                    })?;
                ArgFrom::Input(i as u32)
            }
            crate::argument::Origin::Result(name) => {
                let i = lookup(name).ok_or_else(|| Error::UnknownStep {
                    step: def.name.to_string(),
                    dependency: name.to_string(),
                })?;
                if i != self_index {
                    deps.push(i as u32);
                } else if !emitted {
                    return Err(self_read());
                }
                ArgFrom::Step(i as u32)
            }
            crate::argument::Origin::Value(_) => ArgFrom::Constant,
        };
        arg_from.push(from);
    }
    for name in &def.extras().wait_for {
        let i = lookup(name).ok_or_else(|| Error::UnknownStep {
            step: def.name.to_string(),
            dependency: name.to_string(),
        })?;
        if i != self_index {
            deps.push(i as u32);
        } else if !emitted {
            return Err(self_read());
        }
    }
    let can_undo = imp.can_undo();
    let sync = def.implementation.sync_run().is_some();
    let is_plain = sync
        && !imp.can_compensate()
        && def.extras().guards.is_empty()
        && def.extras().limits.is_empty();
    let plain_args = def.extras().transform_arguments.is_none()
        && def.arguments.iter().all(|a| a.source.is_plain());
    let (run_async, cpu_bound) = (def.run_async, def.cpu_bound);
    // A limited step awaits its permits.
    let awaits = !cpu_bound && (!def.extras().limits.is_empty() || !sync);
    Ok(PlannedStep {
        arg_from,
        is_plain,
        plain_args,
        run_async,
        cpu_bound,
        awaits,
        spec,
        edges: Edges::to(deps),
        can_undo,
    })
}

/// From this many steps on, planning uses all cores.
const PARALLEL_PLAN_MIN: usize = 50_000;

/// What planning one step after another carries along.
#[derive(Default)]
struct PlanState {
    /// The step after the last one an argument was found to read.
    next: usize,
}

/// Plans a whole reactor.
pub(crate) fn plan(builder: Builder) -> Result<Plan, Error> {
    let name: Name = builder.name.unwrap_or_else(|| "reactor".into());
    let mut input_index = FxHashMap::default();
    input_index.reserve(builder.inputs.len());
    for (i, input) in builder.inputs.iter().enumerate() {
        if input_index.insert(input.name.clone(), i).is_some() {
            return Err(Error::Duplicate {
                what: "inputs",
                name: input.name.to_string(),
                count: builder
                    .inputs
                    .iter()
                    .filter(|x| x.name == input.name)
                    .count(),
            });
        }
    }
    if builder.steps.is_empty() {
        return Err(Error::NoSteps {
            reactor: name.to_string(),
        });
    }
    let mut step_index = StepIndex::with_capacity(builder.steps.len());
    let declared = |i: usize| builder.steps[i].name();
    for (i, s) in builder.steps.iter().enumerate() {
        if !step_index.insert(i, declared) {
            return Err(Error::Duplicate {
                what: "steps",
                name: s.name().to_string(),
                count: builder
                    .steps
                    .iter()
                    .filter(|x| x.name() == s.name())
                    .count(),
            });
        }
    }
    let return_name = builder.return_step.ok_or_else(|| Error::MissingReturn {
        reactor: name.to_string(),
    })?;
    let return_step =
        step_index
            .get(&return_name, declared)
            .ok_or_else(|| Error::UnknownReturn {
                step: return_name.to_string(),
            })?;

    let mut steps = Vec::with_capacity(builder.steps.len());
    let plan_one = |state: &mut PlanState, (i, spec): (usize, &StepSpec)| {
        // Reactors often read steps in the order they declared them (a
        // fan-in over a fan-out): try the step after the last one found
        // before hashing.
        let next = std::cell::Cell::new(state.next);
        let lookup = |n: &str| {
            let guess = next.get();
            let found = if guess < builder.steps.len() && declared(guess) == n {
                Some(guess)
            } else {
                step_index.get(n, declared)
            };
            if let Some(i) = found {
                next.set(i + 1);
            }
            found
        };
        let planned = plan_step(spec.clone(), i, false, &input_index, &lookup);
        state.next = next.get();
        planned
    };
    if builder.steps.len() < PARALLEL_PLAN_MIN {
        let mut state = PlanState::default();
        for item in builder.steps.iter().enumerate() {
            steps.push(plan_one(&mut state, item)?);
        }
    } else {
        // Large reactors are planned on all cores, straight into `steps`.
        // A failed step leaves a placeholder; the first failure by index is
        // reported, as a sequential pass would.
        use rayon::prelude::*;
        let failure: std::sync::Mutex<Option<(usize, Error)>> = std::sync::Mutex::new(None);
        builder
            .steps
            .par_iter()
            .enumerate()
            .map_init(PlanState::default, |state, item| {
                let (i, spec) = item;
                plan_one(state, item).unwrap_or_else(|e| {
                    let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        *first = Some((i, e));
                    }
                    PlannedStep::placeholder(spec.clone())
                })
            })
            .collect_into_vec(&mut steps);
        if let Some((_, e)) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    link_dependents(&mut steps);
    check_acyclic(&steps)?;
    Ok(Plan {
        name,
        description: builder.description,
        inputs: builder.inputs,
        input_index,
        steps,
        step_index,
        return_step,
        middleware: builder.middleware,
    })
}

fn link_dependents(steps: &mut [PlannedStep]) {
    let mut counts = vec![0u32; steps.len()];
    for s in steps.iter() {
        for d in s.deps() {
            counts[d] += 1;
        }
    }
    for (s, &c) in steps.iter_mut().zip(&counts) {
        s.edges.all.reserve_exact(c as usize);
    }
    drop(counts);
    for i in 0..steps.len() {
        for k in 0..steps[i].edges.deps as usize {
            let d = steps[i].edges.all[k] as usize;
            steps[d].edges.all.push(i as u32);
        }
    }
}

/// Kahn's algorithm; on failure, walks the leftover graph to name one cycle.
fn check_acyclic(steps: &[PlannedStep]) -> Result<(), Error> {
    let mut indegree: Vec<u32> = steps.iter().map(|s| s.edges.deps).collect();
    let mut queue: Vec<u32> = (0..steps.len() as u32)
        .filter(|&i| indegree[i as usize] == 0)
        .collect();
    let mut seen = 0;
    while let Some(i) = queue.pop() {
        seen += 1;
        for d in steps[i as usize].dependents() {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                queue.push(d as u32);
            }
        }
    }
    if seen == steps.len() {
        return Ok(());
    }
    // Every leftover step waits for another leftover step: follow those
    // edges until a step repeats.
    let start = (0..steps.len())
        .find(|&i| indegree[i] > 0)
        .expect("some step is left over");
    let mut position = vec![usize::MAX; steps.len()];
    let mut path = Vec::new();
    let mut current = start;
    while position[current] == usize::MAX {
        position[current] = path.len();
        path.push(current);
        current = steps[current]
            .deps()
            .find(|&d| indegree[d] > 0)
            .expect("a leftover step waits for a leftover step");
    }
    let members = &path[position[current]..];
    let length = members.len();
    let mut cycle: Vec<String> = members
        .iter()
        .rev()
        .take(crate::error::CYCLE_SHOWN)
        .map(|&i| steps[i].name().to_string())
        .collect();
    if length <= crate::error::CYCLE_SHOWN {
        cycle.push(cycle[0].clone());
    }
    Err(Error::Cycle { cycle, length })
}

#[cfg(all(test, target_pointer_width = "64", target_endian = "little"))]
mod tests {
    use std::mem::size_of;

    /// What a step costs at a million steps is mostly these records
    /// (`cargo bench --bench workloads -- rss`): a field added to one of
    /// them should be a decision, not an accident.
    #[test]
    fn a_step_s_records_stay_small() {
        assert_eq!(size_of::<crate::Name>(), 16);
        assert_eq!(size_of::<crate::argument::ArgumentSpec>(), 48);
        // With the `Arc`'s counts, 136 bytes: a 144-byte heap chunk.
        assert!(size_of::<crate::step::StepDef>() <= 120);
        assert!(size_of::<super::PlannedStep>() <= 72);
        assert_eq!(size_of::<super::Edges>(), 32);
    }

    /// A step with more edges than fit inline (five producers, three
    /// dependents, one of them reading it twice and waiting for it too)
    /// keeps them apart: its producers once each, in order, then its
    /// dependents, and every other step sees it as one edge. Names longer
    /// than a name's inline bytes work as short ones do.
    #[test]
    fn a_step_with_many_edges_keeps_producers_and_dependents_apart() {
        use crate::{result, step, Reactor};
        let long = |i: usize| format!("a_producer_named_at_length_{i}");
        let mut b = Reactor::builder("edges");
        for i in 0..5 {
            b.add(step(long(i)).run_sync(move |_, _| Ok(i as i64)));
        }
        let mut hub = step("hub");
        for i in (0..5).rev() {
            hub = hub.argument(format!("p{i}"), result(long(i)));
        }
        hub = hub.argument("again", result(long(0))).wait_for(long(1));
        b.add(hub.run_sync(|_, _| Ok(0_i64)));
        for j in 0..3 {
            let mut s = step(format!("c{j}")).argument("h", result("hub"));
            if j == 0 {
                s = s.argument("h2", result("hub")).wait_for("hub");
            }
            b.add(s.run_sync(|_, _| Ok(0_i64)));
        }
        b.returns("c0");
        let plan = super::plan(b).expect("plans");
        let index = |name: &str| plan.step_named(name).expect("a step");
        let hub = &plan.steps[index("hub")];
        let producers: Vec<usize> = (0..5).map(|i| index(&long(i))).collect();
        assert_eq!(hub.deps().collect::<Vec<_>>(), producers);
        let consumers: Vec<usize> = (0..3).map(|j| index(&format!("c{j}"))).collect();
        assert_eq!(hub.dependents().collect::<Vec<_>>(), consumers);
        for (i, &p) in producers.iter().enumerate() {
            assert_eq!(plan.steps[p].deps().count(), 0);
            assert_eq!(
                plan.steps[p].dependents().collect::<Vec<_>>(),
                vec![index("hub")],
                "producer {i}"
            );
        }
        for &c in &consumers {
            assert_eq!(plan.steps[c].deps().collect::<Vec<_>>(), vec![index("hub")]);
        }
    }
}
