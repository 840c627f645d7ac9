//! [`StepSpec`]: a step's definition (name, arguments, implementation, options).

use std::future::Future;
use std::sync::Arc;

use smallvec::SmallVec;

use super::closure::{self, FnStep, IntoOutcome, IntoUndoOutcome};
use super::{Backoff, Compensation, Outcome, Step};
use crate::argument::{ArgumentSpec, Arguments, Source};
use crate::context::Context;
use crate::error::{BoxError, Error, Reason};
use crate::name::Name;
use crate::value::{Value, ValueMap};

pub(crate) type ArgumentsTransformFn =
    Arc<dyn Fn(Arguments) -> Result<Arguments, BoxError> + Send + Sync>;

/// How a step is implemented.
#[derive(Clone)]
pub(crate) enum Implementation {
    None,
    Custom(Arc<dyn Step>),
    Fn(FnStep),
}

impl Implementation {
    /// Its closure, if it is a plain one (`run_sync`): one that never
    /// awaits.
    pub(crate) fn sync_run(&self) -> Option<&closure::SyncRunFn> {
        match self {
            Implementation::Fn(FnStep {
                run: Some(closure::RunFn::Sync(run)),
                ..
            }) => Some(run),
            _ => None,
        }
    }
}

/// A resolved implementation, cheap to clone: closures are reached through
/// their spec (no allocation of their own), other steps are shared.
#[derive(Clone)]
pub(crate) enum StepImp {
    Closures(StepSpec),
    Custom(Arc<dyn Step>),
}

impl std::ops::Deref for StepImp {
    type Target = dyn Step;
    fn deref(&self) -> &(dyn Step + 'static) {
        self.get()
    }
}

impl StepImp {
    /// The step.
    pub(crate) fn get(&self) -> &(dyn Step + 'static) {
        match self {
            StepImp::Closures(spec) => match &spec.def.implementation {
                Implementation::Fn(f) => f,
                _ => unreachable!("closure implementations are checked when resolved"),
            },
            StepImp::Custom(step) => &**step,
        }
    }
}

/// The fields of a step definition.
#[derive(Clone)]
pub(crate) struct StepDef {
    pub(crate) name: Name,
    pub(crate) arguments: SmallVec<[ArgumentSpec; 1]>,
    pub(crate) implementation: Implementation,
    pub(crate) run_async: bool,
    pub(crate) cpu_bound: bool,
    /// How many retries it may make, unless `unlimited_retries` (two
    /// fields, not an `Option`, so that the definition fits in 120 bytes).
    max_retries: u32,
    unlimited_retries: bool,
    /// What few steps have, kept out of line so most steps stay small.
    pub(crate) extras: Option<Box<StepExtras>>,
}

/// A guard: decides, before a step runs, whether it runs.
pub(crate) type GuardFn = Arc<dyn Fn(&Arguments, &Context) -> Guard + Send + Sync>;

/// What a guard decides.
///
/// # Examples
///
/// ```
/// use reactor::{step, Guard, Outcome};
///
/// // A cache in front of an expensive step.
/// let s = step("heavy")
///     .guard(|_args, _ctx| Guard::Skip(Outcome::ok("cached")))
///     .run_sync(|_, _| Ok("computed"));
/// # let _ = s;
/// ```
pub enum Guard {
    /// Run the step.
    Continue,
    /// Do not run the step: use this outcome as if `run` had returned it
    /// (a value, added steps, a retry, a halt). An `Outcome::Error` fails
    /// the step without compensation; a skipped step is never undone.
    Skip(Outcome),
}

/// The rarely used parts of a step definition.
#[derive(Clone, Default)]
pub(crate) struct StepExtras {
    /// Evaluated in declaration order; the first that does not continue wins.
    pub(crate) guards: Vec<GuardFn>,
    pub(crate) wait_for: Vec<Name>,
    pub(crate) context: ValueMap,
    pub(crate) transform_arguments: Option<ArgumentsTransformFn>,
    pub(crate) description: Option<String>,
    pub(crate) conflict: Option<&'static str>,
    /// What kind of step this is, and what it nests (for diagrams).
    pub(crate) shape: Option<Arc<Shape>>,
    /// How the step's result crosses a durable run's journal.
    pub(crate) output: Option<crate::codec::Codec>,
    /// How a durable run rebuilds the step when it was emitted.
    pub(crate) descriptor: Option<Arc<Descriptor>>,
    /// Permits its `run` takes first (see [`crate::limit`]).
    pub(crate) limits: Vec<crate::limit::Limit>,
}

/// What a durable run journals of an emitted step, to rebuild it through
/// its [`StepRegistry`](crate::durable::StepRegistry): the kind it was
/// registered under and its parameters, encoded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Descriptor {
    pub(crate) kind: String,
    /// The parameters, or why they could not be encoded.
    pub(crate) params: Result<serde_json::Value, String>,
}

/// The steps a switch emits for a branch (see [`Shape::Switch`]).
pub(crate) type SwitchEmit =
    Arc<dyn Fn(usize, &dyn Fn(&str) -> Option<Value>) -> Vec<StepSpec> + Send + Sync>;

/// A ready-made step's kind and what it nests, as its kind's constructor
/// describes it (the nested steps a diagram draws inside it).
pub(crate) enum Shape {
    /// A step of no nesting kind (`template`, `collect`, ...).
    Leaf(&'static str),
    /// A map: its nested steps, once per element.
    Map {
        steps: Vec<StepSpec>,
        returns: Name,
        /// The input through which nested steps read the element.
        element: Name,
        /// At most this many elements in flight (shown by `describe`).
        #[cfg_attr(not(feature = "cli"), allow(dead_code))]
        batch_size: usize,
        /// Outputs in source order (shown by `describe`).
        #[cfg_attr(not(feature = "cli"), allow(dead_code))]
        strict_ordering: bool,
        /// Outputs go to a sink: the map's result is their number.
        sink: bool,
    },
    /// Another reactor, run once (`compose`) or again and again (`recurse`).
    Reactor {
        kind: &'static str,
        plan: Arc<crate::planner::Plan>,
    },
    /// A switch: its branches (a label, the steps, the returned step).
    Switch {
        branches: Vec<(String, Vec<StepSpec>, Option<Name>)>,
        /// The steps it emits for branch `k` (in `branches`' order), the
        /// results of outside steps its branches read looked up in the
        /// given function: how a durable run rebuilds them.
        emit: SwitchEmit,
    },
    /// Nested steps run as one (`group`, `around`).
    Nested {
        kind: &'static str,
        steps: Vec<StepSpec>,
        /// Its result is the map of its nested steps' results (a group
        /// without `after_all`).
        gathered: bool,
    },
}

impl Shape {
    /// Calls `visit` with every step nested in this shape, at any depth
    /// (a composed or recursed reactor's steps included).
    pub(crate) fn for_each_nested(&self, visit: &mut dyn FnMut(&StepSpec)) {
        let mut each = |s: &StepSpec| {
            visit(s);
            if let Some(inner) = s.def().extras().shape.as_deref() {
                inner.for_each_nested(visit);
            }
        };
        match self {
            Shape::Leaf(_) => {}
            Shape::Map { steps, .. } | Shape::Nested { steps, .. } => steps.iter().for_each(each),
            Shape::Reactor { plan, .. } => plan.steps.iter().for_each(|p| each(&p.spec)),
            Shape::Switch { branches, .. } => {
                for (_, steps, _) in branches {
                    steps.iter().for_each(&mut each);
                }
            }
        }
    }

    /// The kind's name, as diagrams and descriptions show it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Shape::Leaf(kind) => kind,
            Shape::Map { .. } => "map",
            Shape::Reactor { kind, .. } | Shape::Nested { kind, .. } => kind,
            Shape::Switch { .. } => "switch",
        }
    }
}

static NO_EXTRAS: std::sync::OnceLock<StepExtras> = std::sync::OnceLock::new();

impl StepDef {
    /// How many retries the step may make (`None`: no limit).
    pub(crate) fn max_retries(&self) -> Option<u32> {
        (!self.unlimited_retries).then_some(self.max_retries)
    }

    /// The extras, or empty ones.
    pub(crate) fn extras(&self) -> &StepExtras {
        match &self.extras {
            Some(e) => e,
            None => NO_EXTRAS.get_or_init(StepExtras::default),
        }
    }

    fn extras_mut(&mut self) -> &mut StepExtras {
        self.extras.get_or_insert_with(Default::default)
    }
}

/// The default `max_retries` of a step.
pub const DEFAULT_MAX_RETRIES: u32 = 100;

/// Starts the definition of a step named `name`.
///
/// # Examples
///
/// ```
/// use reactor::{input, result, step};
///
/// let s = step("greet")
///     .argument("name", input("name"))
///     .wait_for("warm_up")
///     .max_retries(3)
///     .run(|args, _ctx| async move {
///         let name = args.get::<String>("name")?;
///         Ok(format!("Hello, {name}!"))
///     });
/// assert_eq!(s.name(), "greet");
/// ```
pub fn step(name: impl Into<Name>) -> StepSpec {
    StepSpec {
        def: Arc::new(StepDef {
            name: name.into(),
            arguments: SmallVec::new(),
            implementation: Implementation::None,
            run_async: true,
            cpu_bound: false,
            max_retries: DEFAULT_MAX_RETRIES,
            unlimited_retries: false,
            extras: None,
        }),
    }
}

/// A step's definition: name, arguments, implementation and options.
///
/// Cheap to clone; emitted by running steps to add work to a run.
#[derive(Clone)]
pub struct StepSpec {
    def: Arc<StepDef>,
}

impl std::fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepSpec")
            .field("name", &self.def.name)
            .field("arguments", &self.def.arguments)
            .field("wait_for", &self.def.extras().wait_for)
            .finish_non_exhaustive()
    }
}

impl StepSpec {
    /// A step implemented by `implementation`.
    pub fn new(name: impl Into<Name>, implementation: impl Step) -> StepSpec {
        step(name).implementation(implementation)
    }

    pub(crate) fn def(&self) -> &StepDef {
        &self.def
    }

    fn edit(&mut self) -> &mut StepDef {
        Arc::make_mut(&mut self.def)
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub(crate) fn name_arc(&self) -> &Name {
        &self.def.name
    }

    /// The step's description, if any.
    pub fn description_text(&self) -> Option<&str> {
        self.def.extras().description.as_deref()
    }

    /// Adds an argument.
    pub fn argument(mut self, name: impl Into<Name>, source: Source) -> StepSpec {
        self.edit().arguments.push(ArgumentSpec {
            name: name.into(),
            source,
        });
        self
    }

    /// Orders this step after `step` without passing its value.
    pub fn wait_for(mut self, step: impl Into<Name>) -> StepSpec {
        self.edit().extras_mut().wait_for.push(step.into());
        self
    }

    /// Implements the step with a [`Step`] value.
    pub fn implementation(self, implementation: impl Step) -> StepSpec {
        self.implementation_arc(Arc::new(implementation))
    }

    /// Implements the step with a shared [`Step`].
    pub fn implementation_arc(mut self, implementation: Arc<dyn Step>) -> StepSpec {
        let def = self.edit();
        if let Implementation::Fn(_) = def.implementation {
            def.extras_mut().conflict.get_or_insert("run");
        }
        def.implementation = Implementation::Custom(implementation);
        self
    }

    fn closures(&mut self, callback: &'static str) -> &mut FnStep {
        let def = self.edit();
        if let Implementation::Custom(_) = def.implementation {
            def.extras_mut().conflict.get_or_insert(callback);
            def.implementation = Implementation::Fn(FnStep::default());
        }
        if let Implementation::None = def.implementation {
            def.implementation = Implementation::Fn(FnStep::default());
        }
        match &mut def.implementation {
            Implementation::Fn(f) => f,
            _ => unreachable!("set to Fn above"),
        }
    }

    /// Runs the step with an async closure of its arguments and context.
    pub fn run<F, Fut, R>(mut self, f: F) -> StepSpec
    where
        F: Fn(Arguments, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoOutcome,
    {
        self.closures("run").run = Some(closure::run_fn(f));
        self
    }

    /// Runs the step with a plain (non-async) closure, called without a
    /// future: the cheapest kind of step.
    pub fn run_sync<F, R>(mut self, f: F) -> StepSpec
    where
        F: Fn(&Arguments, &Context) -> R + Send + Sync + 'static,
        R: IntoOutcome,
    {
        self.closures("run").run = Some(closure::run_sync_fn(f));
        self
    }

    /// Compensates a failed run.
    pub fn compensate<F, Fut>(mut self, f: F) -> StepSpec
    where
        F: Fn(Reason, Arguments, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Compensation> + Send + 'static,
    {
        self.closures("compensate").more_mut().compensate = Some(closure::compensate_fn(f));
        self
    }

    /// Undoes a successful run when the saga unwinds.
    pub fn undo<F, Fut, R>(mut self, f: F) -> StepSpec
    where
        F: Fn(Value, Arguments, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoUndoOutcome,
    {
        self.closures("undo").more_mut().undo = Some(closure::undo_fn(f));
        self
    }

    /// Decides how long to wait before each retry.
    pub fn backoff<F>(mut self, f: F) -> StepSpec
    where
        F: Fn(Option<&Reason>, &Arguments, &Context) -> Backoff + Send + Sync + 'static,
    {
        self.closures("backoff").more_mut().backoff = Some(Arc::new(f));
        self
    }

    /// Whether the step runs beside the others (the default) or, when
    /// `false`, in the run's coordinator, one at a time.
    ///
    /// An async step's attempt starts in the coordinator (for a run
    /// awaited outside any step, the task awaiting it) and runs there up
    /// to its first await; what follows runs in a task of its own. A step
    /// that answers without awaiting thus needs no task, while the run's
    /// first polls prove cheap (see the executor's docs). Code that blocks
    /// its thread belongs in a [`cpu_bound`](StepSpec::cpu_bound) step.
    pub fn run_async(mut self, run_async: bool) -> StepSpec {
        self.edit().run_async = run_async;
        self
    }

    /// Marks the step CPU-bound: it runs on tokio's blocking pool, where it
    /// cannot starve I/O-bound steps, still under the run's concurrency
    /// limit. Like any step it is cancelled (when its run is dropped, or
    /// abandons it after its halt timeout) at its next await; code that
    /// blocks its thread cannot be cut short.
    pub fn cpu_bound(mut self) -> StepSpec {
        self.edit().cpu_bound = true;
        self
    }

    /// Runs the step under `limit` too: each attempt takes a permit of
    /// it (after the step's guards, before its `run`) and holds it until
    /// `run` returns. A step's limits are taken in the order of their
    /// names (one order for every step, so that two steps taking the same
    /// limits cannot each hold one the other waits for); see
    /// [`Limit`](crate::Limit).
    ///
    /// ```
    /// use reactor::{step, Limit};
    ///
    /// let two_at_once = Limit::per_key("per_customer", 2, |args| {
    ///     Ok(args.get::<String>("customer")?.clone())
    /// });
    /// let s = step("charge").limit(two_at_once).run_sync(|_, _| Ok(()));
    /// # let _ = s;
    /// ```
    pub fn limit(mut self, limit: crate::limit::Limit) -> StepSpec {
        self.edit().extras_mut().limits.push(limit);
        self
    }

    /// How many retries the step may make (default 100).
    pub fn max_retries(mut self, n: u32) -> StepSpec {
        let def = self.edit();
        def.max_retries = n;
        def.unlimited_retries = false;
        self
    }

    /// Lets the step retry without limit.
    pub fn unlimited_retries(mut self) -> StepSpec {
        self.edit().unlimited_retries = true;
        self
    }

    /// Adds a step-specific context value (the run's context wins on conflict).
    pub fn context(
        mut self,
        key: impl Into<String>,
        value: impl Send + Sync + 'static,
    ) -> StepSpec {
        self.edit()
            .extras_mut()
            .context
            .insert(key.into(), Value::new(value));
        self
    }

    /// Replaces the whole argument map before the step runs.
    pub fn transform_arguments<F>(mut self, f: F) -> StepSpec
    where
        F: Fn(Arguments) -> Result<Arguments, BoxError> + Send + Sync + 'static,
    {
        self.edit().extras_mut().transform_arguments = Some(Arc::new(f));
        self
    }

    /// Guards the step: `f` runs before the step (after its arguments are
    /// resolved) and may skip it with a result of its own. Guards run in the
    /// order they were added; the first that does not continue decides. A
    /// skipped step is never undone; its dependents run with its result.
    pub fn guard<F>(mut self, f: F) -> StepSpec
    where
        F: Fn(&Arguments, &Context) -> Guard + Send + Sync + 'static,
    {
        self.edit().extras_mut().guards.push(Arc::new(f));
        self
    }

    /// Runs the step only if `predicate` holds; otherwise the step is
    /// skipped with the unit value `()` as its result (the original's `where`).
    pub fn run_if<F>(self, predicate: F) -> StepSpec
    where
        F: Fn(&Arguments, &Context) -> bool + Send + Sync + 'static,
    {
        self.guard(move |args, ctx| {
            if predicate(args, ctx) {
                Guard::Continue
            } else {
                Guard::Skip(Outcome::Ok(Value::unit()))
            }
        })
    }

    /// This step without the `wait_for` names that are not in `inner`, and
    /// those names (a container waits for them on its steps' behalf).
    pub(crate) fn without_waits_outside(
        mut self,
        inner: &std::collections::BTreeSet<Name>,
    ) -> (StepSpec, Vec<Name>) {
        let outside: Vec<Name> = self
            .def
            .extras()
            .wait_for
            .iter()
            .filter(|n| !inner.contains(*n))
            .cloned()
            .collect();
        if !outside.is_empty() {
            self.edit()
                .extras_mut()
                .wait_for
                .retain(|n| inner.contains(n));
        }
        (self, outside)
    }

    /// Rewrites the sources of the step's arguments.
    pub(crate) fn rewrite_sources(mut self, mut f: impl FnMut(&mut Source)) -> StepSpec {
        for arg in self.edit().arguments.iter_mut() {
            f(&mut arg.source);
        }
        self
    }

    /// Describes what kind of step this is (set by the step kinds).
    pub(crate) fn shaped(mut self, shape: Shape) -> StepSpec {
        self.edit().extras_mut().shape = Some(Arc::new(shape));
        self
    }

    /// Declares the type of the step's result, so that a durable run can
    /// journal it (see [`durable`](crate::durable)); a result of another
    /// type then fails the step, naming both types.
    ///
    /// ```
    /// use reactor::step;
    ///
    /// let s = step("charge").output::<u64>().run_sync(|_, _| Ok(1200_u64));
    /// # let _ = s;
    /// ```
    pub fn output<T>(mut self) -> StepSpec
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.edit().extras_mut().output = Some(crate::codec::Codec::of::<T>());
        self
    }

    /// Marks the step as made by the step kind `kind` of a
    /// [`StepRegistry`](crate::durable::StepRegistry) from `params`, so that
    /// a durable run can journal it when a step emits it
    /// ([`Outcome::OkWithSteps`](crate::Outcome::OkWithSteps)) and rebuild
    /// it after a crash. A kind's factory marks the steps it makes itself;
    /// mark one by hand only to emit it without calling the factory.
    ///
    /// ```
    /// use reactor::{step, value};
    ///
    /// let s = step("notify_7")
    ///     .argument("id", value(7_u64))
    ///     .output::<u64>()
    ///     .described("notify", 7_u64)
    ///     .run_sync(|a, _| Ok(*a.get::<u64>("id")?));
    /// # let _ = s;
    /// ```
    pub fn described(mut self, kind: impl Into<String>, params: impl serde::Serialize) -> StepSpec {
        let params = serde_json::to_value(params).map_err(|e| e.to_string());
        self.edit().extras_mut().descriptor = Some(Arc::new(Descriptor {
            kind: kind.into(),
            params,
        }));
        self
    }

    /// How the step's result crosses a journal: as declared with
    /// [`StepSpec::output`]; for a step running another reactor
    /// (`compose`, `recurse`), as that reactor's result does; for a map,
    /// as a list of its returned step's results (or their number, with a
    /// sink).
    pub(crate) fn output_codec(&self) -> Option<crate::codec::Codec> {
        let extras = self.def().extras();
        extras
            .output
            .clone()
            .or_else(|| match extras.shape.as_deref() {
                Some(Shape::Reactor { plan, .. }) => {
                    plan.steps[plan.return_step].spec.output_codec()
                }
                Some(Shape::Map { sink: true, .. }) => Some(crate::codec::Codec::of::<u64>()),
                Some(Shape::Map { steps, returns, .. }) => steps
                    .iter()
                    .find(|s| s.name() == returns.as_str())
                    .and_then(StepSpec::output_codec)
                    .and_then(|c| c.list()),
                Some(Shape::Nested {
                    steps,
                    gathered: true,
                    ..
                }) => gathered_codec(steps),
                _ => None,
            })
    }

    /// Sets (or clears) the codec of the step's result: what
    /// [`StepSpec::output`] declares, for a type known only at run time.
    pub(crate) fn with_codec(mut self, codec: Option<crate::codec::Codec>) -> StepSpec {
        self.edit().extras_mut().output = codec;
        self
    }

    /// Describes the step.
    pub fn description(mut self, text: impl Into<String>) -> StepSpec {
        self.edit().extras_mut().description = Some(text.into());
        self
    }

    /// The implementation, or an error naming what is wrong with it.
    pub(crate) fn resolve(&self) -> Result<StepImp, Error> {
        let def = &self.def;
        if let Some(callback) = def.extras().conflict {
            return Err(Error::ConflictingImplementation {
                step: def.name.to_string(),
                callback,
            });
        }
        let imp = match &def.implementation {
            Implementation::None => Err(Error::NoImplementation {
                step: def.name.to_string(),
            }),
            Implementation::Fn(f) if f.run.is_none() => Err(Error::NoImplementation {
                step: def.name.to_string(),
            }),
            Implementation::Fn(_) => Ok(StepImp::Closures(self.clone())),
            Implementation::Custom(s) => Ok(StepImp::Custom(s.clone())),
        }?;
        let limits = &def.extras().limits;
        if limits.is_empty() {
            return Ok(imp);
        }
        Ok(StepImp::Custom(Arc::new(crate::limit::step::Limited::new(
            imp, limits,
        ))))
    }
}

/// The codec of the map of `steps`' results (a group's), if each has one.
pub(crate) fn gathered_codec(steps: &[StepSpec]) -> Option<crate::codec::Codec> {
    steps
        .iter()
        .map(|s| s.output_codec().map(|c| (s.name().to_string(), c)))
        .collect::<Option<Vec<_>>>()
        .map(crate::codec::Codec::record)
}
