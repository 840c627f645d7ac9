//! `map`: nested steps run once per element of a collection or stream.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::argument::{input, result, ArgNames, Arguments, Origin, Source, Values};
use crate::context::{Context, RunScope, StepRef};
use crate::error::{BoxError, Reason};
use crate::executor::runner::{backoff, run_plain, start_attempt, Attempt};
use crate::executor::{CompletedRun, RunOutcome};
use crate::name::Name;
use crate::planner::{ArgFrom, Plan, PlannedStep};
use crate::reactor::{Inputs, Reactor};
use crate::step::{step, Outcome, Step, StepSpec, UndoOutcome};
use crate::value::Value;

/// The current element of the map named `map`, for its nested steps
/// (sub-paths work as for any source: `element("m").at("id")`).
pub fn element(map: impl Into<Name>) -> Source {
    input(element_input(&map.into()))
}

fn element_input(map: &str) -> String {
    format!("__element__{map}")
}

/// The element input carrying the result of an outer step `step`.
fn outer_input(step: &str) -> String {
    format!("__outer__{step}")
}

/// A source of elements that is not a collection: any iterator or
/// stream, pulled lazily (so it may be larger than memory). It can be
/// mapped over once.
///
/// # Examples
///
/// ```
/// use reactor::kinds::MapSource;
///
/// let numbers = MapSource::from_iterator((0..1_000_000_u64).map(|n| n * 2));
/// let lines = MapSource::from_stream(futures::stream::iter(vec!["a".to_string(), "b".to_string()]));
/// # let _ = (numbers, lines);
/// ```
pub struct MapSource(Mutex<Option<BoxStream<'static, Value>>>);

impl MapSource {
    /// Elements from an iterator.
    pub fn from_iterator<I>(iter: I) -> MapSource
    where
        I: IntoIterator + Send + 'static,
        I::IntoIter: Send + 'static,
        I::Item: Send + Sync + 'static,
    {
        MapSource::from_stream(stream::iter(iter))
    }

    /// Elements from a stream.
    pub fn from_stream<S>(stream: S) -> MapSource
    where
        S: futures::Stream + Send + 'static,
        S::Item: Send + Sync + 'static,
    {
        MapSource(Mutex::new(Some(stream.map(Value::new).boxed())))
    }
}

/// Why a map cannot be made or run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A map needs at least one nested step.
    #[error("map `{map}` has no steps")]
    NoSteps {
        /// The map.
        map: String,
    },
    /// More than one nested step and no `returns`.
    #[error(
        "map `{map}` has several steps: name the one whose result is the element's with `returns`"
    )]
    MissingReturn {
        /// The map.
        map: String,
    },
    /// `returns` names no nested step.
    #[error("map `{map}` returns `{step}`, which is not one of its steps")]
    UnknownReturn {
        /// The map.
        map: String,
        /// The name given.
        step: String,
    },
    /// The source is not something to map over.
    #[error("map `{map}` cannot iterate a `{type_name}`: use a Vec, a JSON array or a MapSource")]
    NotIterable {
        /// The map.
        map: String,
        /// The source's type.
        type_name: &'static str,
    },
    /// A `MapSource` was mapped over twice.
    #[error("map `{map}`: its MapSource was already used")]
    SourceUsed {
        /// The map.
        map: String,
    },
    /// An element failed.
    #[error("map `{map}`: element {index} failed: {reason}")]
    Element {
        /// The map.
        map: String,
        /// The element's position in the source, from 0.
        index: u64,
        /// Why.
        reason: Reason,
    },
}

type Sink = Arc<dyn Fn(Value) -> Result<(), BoxError> + Send + Sync>;

/// A map under construction; [`Map::into_step`] makes the step.
///
/// For each element of the source (a `Vec`, a JSON array, or a
/// [`MapSource`] iterator or stream), the nested steps run as a small
/// reactor whose inputs are the element ([`element`]) and the map's other
/// arguments; the `returns` step's result is the element's output. At most
/// `batch_size` elements are in flight at once and the source is pulled
/// lazily. Outputs are collected in source order (`strict_ordering`, the
/// default) or in completion order; or, with [`Map::sink`], handed to a
/// sink one by one instead of collected, so memory stays bounded by the
/// batch size whatever the size of the data.
///
/// A failing element fails the map (naming the element); elements whose
/// steps can undo are undone, newest first, when the map or a later step
/// fails.
///
/// # Examples
///
/// ```
/// use reactor::kinds::{element, map};
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let doubled = map("double_all", input("numbers"))
///     .steps([step("double")
///         .argument("n", element("double_all"))
///         .argument("by", input("multiplier"))
///         .run_sync(|a, _| Ok(a.get::<i64>("n")? * a.get::<i64>("by")?))])
///     .batch_size(2)
///     .into_step()?
///     .argument("multiplier", reactor::value(2_i64));
/// let reactor = Reactor::builder("r").input("numbers").add(doubled).returns("double_all").build()?;
/// let out = reactor.run(Inputs::new().with("numbers", vec![0_i64, 2, 4, 6, 8, 10])).await?;
/// let values: Vec<i64> = out.get::<Vec<reactor::Value>>()?.iter().map(|v| *v.get::<i64>().unwrap()).collect();
/// assert_eq!(values, [0, 4, 8, 12, 16, 20]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Map {
    name: Name,
    source: Source,
    steps: Vec<StepSpec>,
    returns: Option<Name>,
    batch_size: usize,
    strict_ordering: bool,
    allow_async: bool,
    sink: Option<Sink>,
}

/// Starts a map named `name` over `source`.
pub fn map(name: impl Into<Name>, source: Source) -> Map {
    Map {
        name: name.into(),
        source,
        steps: Vec::new(),
        returns: None,
        batch_size: 100,
        strict_ordering: true,
        allow_async: false,
        sink: None,
    }
}

impl Map {
    /// Adds nested steps.
    pub fn steps(mut self, steps: impl IntoIterator<Item = StepSpec>) -> Map {
        self.steps.extend(steps);
        self
    }

    /// Names the nested step whose result is the element's output
    /// (needed when there is more than one).
    pub fn returns(mut self, step: impl Into<Name>) -> Map {
        self.returns = Some(step.into());
        self
    }

    /// How many elements may be in flight at once (default 100).
    pub fn batch_size(mut self, n: usize) -> Map {
        self.batch_size = n.max(1);
        self
    }

    /// Outputs in source order (the default) or in completion order.
    pub fn strict_ordering(mut self, strict: bool) -> Map {
        self.strict_ordering = strict;
        self
    }

    /// Whether the nested steps may run asynchronously (default: no).
    pub fn allow_async(mut self, allow: bool) -> Map {
        self.allow_async = allow;
        self
    }

    /// Hands each output to `sink` instead of collecting them; the map's
    /// result is then the number of elements.
    pub fn sink<F>(mut self, sink: F) -> Map
    where
        F: Fn(Value) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The map as a step (its source is its argument `source`; add other
    /// arguments to pass them to every element).
    pub fn into_step(self) -> Result<StepSpec, MapError> {
        let map = self.name.to_string();
        if self.steps.is_empty() {
            return Err(MapError::NoSteps { map });
        }
        let returns = match (&self.returns, self.steps.len()) {
            (Some(r), _) => {
                if !self.steps.iter().any(|s| s.name() == r.as_str()) {
                    return Err(MapError::UnknownReturn {
                        map,
                        step: r.to_string(),
                    });
                }
                r.clone()
            }
            (None, 1) => self.steps[0].name_arc().clone(),
            (None, _) => return Err(MapError::MissingReturn { map }),
        };
        // Results of steps outside the map that nested steps read become
        // arguments of the map, passed to each element as inputs.
        let inner: std::collections::BTreeSet<Name> =
            self.steps.iter().map(|s| s.name_arc().clone()).collect();
        let mut outer: Vec<Name> = Vec::new();
        let mut map = self;
        map.steps = std::mem::take(&mut map.steps)
            .into_iter()
            .map(|s| {
                s.rewrite_sources(|source| {
                    if let Origin::Result(n) = &source.origin {
                        if !inner.contains(n) {
                            if !outer.contains(n) {
                                outer.push(n.clone());
                            }
                            source.origin = Origin::Input(outer_input(n).into());
                        }
                    }
                })
            })
            .collect();
        let source = map.source.clone();
        let name = map.name.clone();
        let mut spec = step(name)
            .max_retries(0)
            .argument("source", source)
            .implementation(MapStep {
                map: Arc::new(map),
                returns,
            });
        for n in outer {
            spec = spec.argument(outer_input(&n), result(n));
        }
        Ok(spec)
    }
}

/// The steps' indices in an order where each comes after its dependencies.
fn dependency_order(steps: &[PlannedStep]) -> Vec<usize> {
    let mut waiting: Vec<usize> = steps.iter().map(|s| s.deps.len()).collect();
    let mut ready: Vec<usize> = (0..steps.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &d in &steps[i].dependents {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(d);
            }
        }
    }
    order
}

/// The scope of an element's steps when the map calls them itself: the
/// element plan's, sharing the map's run id, context values, pool and
/// listeners.
fn element_scope(ctx: &Context, plan: &Arc<Plan>, async_run: bool) -> Arc<RunScope> {
    Arc::new(RunScope {
        plan: plan.clone(),
        run_id: ctx.run.run_id.clone(),
        values: ctx.run.values.clone(),
        slots: ctx.run.slots.clone(),
        pool: ctx.run.pool.clone(),
        async_run,
        events: ctx.run.events.clone(),
    })
}

/// The value of argument `a` of a step the map calls itself: an element
/// plan input, the result of an earlier step of the element, or a constant.
fn plain_argument(
    st: &PlannedStep,
    a: usize,
    from: &ArgFrom,
    inputs: &[Value],
    results: &[Option<Value>],
) -> Value {
    match from {
        ArgFrom::Input(i) => inputs[*i as usize].clone(),
        ArgFrom::Step(j) => results[*j as usize]
            .clone()
            .expect("steps run in dependency order"),
        ArgFrom::Constant => match &st.spec.def().arguments[a].source.origin {
            Origin::Value(v) => v.clone(),
            _ => unreachable!("constant arguments hold a value"),
        },
    }
}

/// An element step's attempt as its value, or the reason the element failed.
fn attempt_value(attempt: Attempt) -> Result<Value, Reason> {
    match attempt {
        Attempt::Completed { value, .. } | Attempt::Skipped(value) => Ok(value),
        Attempt::Failed { kind, .. } => Err(Reason::new(*kind)),
        Attempt::Retry { reason, .. } => {
            Err(reason.unwrap_or_else(|| Reason::msg("asked to retry inside a map")))
        }
        Attempt::Halted(_) => Err(Reason::msg("halted inside a map")),
    }
}

struct MapStep {
    map: Arc<Map>,
    returns: Name,
}

/// The element runs a map kept for undo.
struct ElementRuns(Mutex<Vec<CompletedRun>>);

impl ElementRuns {
    /// Undoes the kept runs, newest first, and forgets them; the first
    /// error, if any, after trying them all.
    async fn undo_newest_first(&self) -> Result<(), crate::Error> {
        let runs = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first_error = None;
        for run in runs.into_iter().rev() {
            if let Err(e) = run.undo().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl MapStep {
    /// The reactor run for each element: inputs are the element and the
    /// map's other arguments.
    fn element_reactor(&self, args: &Arguments) -> Result<Reactor, crate::Error> {
        let mut b = Reactor::builder(format!("{}/element", self.map.name));
        b.input(element_input(&self.map.name));
        for (name, _) in args.iter().filter(|(n, _)| *n != "source") {
            b.input(name);
        }
        for s in &self.map.steps {
            b.add(s.clone());
        }
        b.returns(self.returns.clone()).build()
    }

    fn elements(&self, source: &Value) -> Result<BoxStream<'static, Value>, MapError> {
        let map = self.map.name.to_string();
        if let Some(s) = source.downcast_ref::<MapSource>() {
            let taken = s.0.lock().unwrap_or_else(|p| p.into_inner()).take();
            return taken.ok_or(MapError::SourceUsed { map });
        }
        if let Some(list) = source.downcast_ref::<Vec<Value>>() {
            let list = list.clone();
            return Ok(stream::iter(list).boxed());
        }
        if let Some(serde_json::Value::Array(items)) = source.downcast_ref::<serde_json::Value>() {
            let items = items.clone();
            return Ok(stream::iter(items.into_iter().map(Value::json)).boxed());
        }
        macro_rules! typed_vec {
            ($($t:ty),*) => {$(
                if source.is::<Vec<$t>>() {
                    let shared = source.clone();
                    let len = shared.get::<Vec<$t>>().map(Vec::len).unwrap_or(0);
                    return Ok(stream::iter((0..len).map(move |i| {
                        Value::new(shared.get::<Vec<$t>>().expect("checked above")[i].clone())
                    }))
                    .boxed());
                }
            )*};
        }
        typed_vec!(
            i64,
            i32,
            u64,
            u32,
            usize,
            f64,
            f32,
            bool,
            String,
            serde_json::Value
        );
        Err(MapError::NotIterable {
            map,
            type_name: source.type_name(),
        })
    }

    fn fail(&self, index: u64, reason: Reason) -> Outcome {
        Outcome::Error(Reason::new(MapError::Element {
            map: self.map.name.to_string(),
            index,
            reason,
        }))
    }
}

#[async_trait]
impl Step for MapStep {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let source = args
            .value("source")
            .expect("a map reads its source")
            .clone();
        let elements = match self.elements(&source) {
            Ok(e) => e,
            Err(e) => return Outcome::Error(Reason::new(e)),
        };
        let reactor = match self.element_reactor(&args) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(Reason::new(e)),
        };
        let extras: Vec<(String, Value)> = args
            .iter()
            .filter(|(n, _)| *n != "source")
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let plan = reactor.plan().clone();
        let undoable = plan.steps.iter().any(|s| s.can_undo);
        let mut outputs: Vec<Value> = Vec::new();
        let mut count: u64 = 0;
        let undo_runs = ElementRuns(Mutex::new(Vec::new()));
        let mut emit = |value: Value| -> Result<(), Reason> {
            count += 1;
            match &self.map.sink {
                Some(sink) => sink(value).map_err(Reason::from),
                None => {
                    outputs.push(value);
                    Ok(())
                }
            }
        };

        let only = &plan.steps[0];
        // A single step with plain arguments: call it for each element right
        // here, with no reactor run around it (a plain closure in turn, an
        // awaiting step with up to `batch_size` elements in flight).
        let direct = plan.steps.len() == 1
            && only.plain_args
            && !undoable
            && only.arg_from.iter().all(|f| !matches!(f, ArgFrom::Step(_)));
        if direct {
            let scope = element_scope(&ctx, &plan, self.map.allow_async && ctx.is_async());
            let ctx = Context {
                run: scope,
                step: StepRef::Planned(0),
                current_try: 0,
                retries_remaining: only.max_retries,
                events: ctx.events,
            };
            let mut inputs: Vec<Value> = Vec::with_capacity(plan.inputs.len());
            inputs.push(Value::unit());
            inputs.extend(extras.iter().map(|(_, v)| v.clone()));
            let args_for = |element: Value| {
                let values = Values::collect(
                    only.arg_from.len(),
                    only.arg_from
                        .iter()
                        .enumerate()
                        .map(|(a, from)| match from {
                            ArgFrom::Input(0) => element.clone(),
                            // No step results: checked above.
                            _ => plain_argument(only, a, from, &inputs, &[]),
                        }),
                );
                Arguments::from_parts(ArgNames::Planned(plan.clone(), 0), values)
            };
            let mut attempts = match &only.plain {
                Some(run) => {
                    let run = run.clone();
                    let ctx = ctx.clone();
                    elements
                        .enumerate()
                        .map(move |(i, element)| {
                            (i as u64, run_plain(&run, &args_for(element), &ctx))
                        })
                        .boxed()
                }
                None => {
                    let runner = only.runner();
                    let imp = only.imp();
                    let max_retries = only.max_retries;
                    let attempts = elements.enumerate().map(move |(i, element)| {
                        let (runner, imp, args) = (runner.clone(), imp.clone(), args_for(element));
                        let mut ctx = ctx.clone();
                        async move {
                            loop {
                                let attempt = match start_attempt(&runner, &args, &ctx, None) {
                                    Ok(attempt) => attempt,
                                    Err(slow) => slow.await,
                                };
                                // Retries as a step's: counted, after the
                                // step's backoff.
                                let Attempt::Retry { reason, .. } = &attempt else {
                                    return (i as u64, attempt);
                                };
                                if max_retries.is_some_and(|m| ctx.current_try >= m) {
                                    return (i as u64, attempt);
                                }
                                let wait = backoff(&*imp, reason.as_ref(), &args, &ctx);
                                if let crate::step::Backoff::After(d) = wait {
                                    tokio::time::sleep(d).await;
                                }
                                ctx.current_try += 1;
                                ctx.retries_remaining =
                                    max_retries.map(|m| m.saturating_sub(ctx.current_try));
                            }
                        }
                    });
                    if self.map.strict_ordering {
                        attempts.buffered(self.map.batch_size).boxed()
                    } else {
                        attempts.buffer_unordered(self.map.batch_size).boxed()
                    }
                }
            };
            while let Some((index, attempt)) = attempts.next().await {
                if let Err(reason) = attempt_value(attempt).and_then(&mut emit) {
                    return self.fail(index, reason);
                }
            }
        } else if plan
            .steps
            .iter()
            .all(|st| st.plain.is_some() && st.plain_args)
            && !undoable
        {
            // Plain closures only: run the element's steps one after another,
            // in dependency order, with no reactor run around them.
            let n = plan.steps.len();
            let scope = element_scope(&ctx, &plan, false);
            let contexts: Vec<Context> = (0..n)
                .map(|k| Context {
                    run: scope.clone(),
                    step: StepRef::Planned(k),
                    current_try: 0,
                    retries_remaining: plan.steps[k].max_retries,
                    events: ctx.events,
                })
                .collect();
            let order = dependency_order(&plan.steps);
            let mut inputs: Vec<Value> = Vec::with_capacity(plan.inputs.len());
            inputs.push(Value::unit());
            inputs.extend(extras.iter().map(|(_, v)| v.clone()));
            let mut results: Vec<Option<Value>> = vec![None; n];
            let mut elements = elements;
            let mut index: u64 = 0;
            while let Some(element) = elements.next().await {
                inputs[0] = element;
                for &k in &order {
                    let st = &plan.steps[k];
                    let values = Values::collect(
                        st.arg_from.len(),
                        st.arg_from
                            .iter()
                            .enumerate()
                            .map(|(a, from)| plain_argument(st, a, from, &inputs, &results)),
                    );
                    let args =
                        Arguments::from_parts(ArgNames::Planned(plan.clone(), k as u32), values);
                    let run = st.plain.as_ref().expect("checked above");
                    match attempt_value(run_plain(run, &args, &contexts[k])) {
                        Ok(value) => results[k] = Some(value),
                        Err(reason) => return self.fail(index, reason),
                    }
                }
                let value = results[plan.return_step]
                    .take()
                    .expect("the return step ran");
                results.iter_mut().for_each(|r| *r = None);
                if let Err(e) = emit(value) {
                    return self.fail(index, e);
                }
                index += 1;
            }
        } else {
            let run_async = self.map.allow_async && ctx.is_async();
            let run_element = |(index, element): (usize, Value)| {
                let mut inputs = Inputs::new();
                inputs.insert(element_input(&self.map.name), element);
                for (n, v) in &extras {
                    inputs.insert(n.clone(), v.clone());
                }
                // Elements are part of the map's run: they carry its id
                // (which also spares a fresh id per element).
                let mut request = reactor
                    .run(inputs)
                    .pool(ctx.pool().clone())
                    .run_id(ctx.run_id())
                    .run_async(run_async);
                if undoable {
                    request = request.fully_reversible();
                }
                // Boxed: a run's future is large, and the window moves it about.
                let run = Box::pin(request.outcome());
                async move { (index as u64, run.await) }
            };
            let results = elements.enumerate().map(run_element);
            let mut results = if self.map.strict_ordering {
                results.buffered(self.map.batch_size).boxed()
            } else {
                results.buffer_unordered(self.map.batch_size).boxed()
            };
            let mut failure = None;
            while let Some((index, outcome)) = results.next().await {
                let reason = match outcome {
                    Ok(RunOutcome::Completed(done)) => {
                        let value = done.value().clone();
                        if undoable {
                            undo_runs
                                .0
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(done);
                        }
                        match emit(value) {
                            Ok(()) => continue,
                            Err(e) => e,
                        }
                    }
                    Ok(RunOutcome::Halted(_)) => Reason::msg("halted inside a map"),
                    Err(e) => Reason::new(e),
                };
                failure = Some((index, reason));
                break;
            }
            drop(results);
            if let Some((index, reason)) = failure {
                // Undo the elements that completed; the element's failure
                // is the one to report.
                let _ = undo_runs.undo_newest_first().await;
                return self.fail(index, reason);
            }
        }
        let value = match &self.map.sink {
            Some(_) => Value::new(count),
            None => Value::new(outputs),
        };
        if undoable {
            Outcome::OkWithUndo {
                value,
                undo: Value::new(undo_runs),
            }
        } else {
            Outcome::Ok(value)
        }
    }

    fn can_undo(&self) -> bool {
        true
    }

    async fn undo(&self, value: Value, _args: Arguments, _ctx: Context) -> UndoOutcome {
        let Some(runs) = value.downcast_ref::<ElementRuns>() else {
            return UndoOutcome::Done;
        };
        match runs.undo_newest_first().await {
            Ok(()) => UndoOutcome::Done,
            Err(e) => UndoOutcome::Error(Reason::new(e)),
        }
    }
}
