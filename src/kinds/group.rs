//! `group` and `around`: nested steps run as an inner reactor.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::nested::{self, Journalled, Kept};
use crate::argument::{result, Arguments};
use crate::context::Context;
use crate::error::{BoxError, Error};
use crate::executor::RunOutcome;
use crate::name::Name;
use crate::reactor::{Inputs, Reactor};
use crate::step::{gathered_codec, step, IntoOutcome, Outcome, Shape, StepSpec, UndoOutcome};
use crate::value::{Value, ValueMap};

/// The name of the inner step that gathers the nested steps' results.
const GATHER: &str = "__nested_results__";

/// The inner reactor running `steps` with `args` as its inputs, and
/// returning each top-level step's result by name (through a step
/// gathering them), and its inputs. In a durable run its inputs are given
/// again whenever it is taken up or undone, and not journalled.
fn nested_reactor(
    name: &str,
    args: &Arguments,
    steps: Vec<StepSpec>,
) -> Result<(Reactor, Inputs), Error> {
    let mut builder = Reactor::builder(format!("{name}/nested"));
    let mut inputs = Inputs::new();
    for (arg, value) in args.iter() {
        builder.input_given(arg);
        inputs.insert(arg, value.clone());
    }
    let mut gather = super::collect(GATHER)
        .max_retries(0)
        .with_codec(gathered_codec(&steps));
    for s in &steps {
        gather = gather.argument(s.name_arc().clone(), result(s.name_arc().clone()));
    }
    for s in steps {
        builder.add(s);
    }
    builder.add(gather);
    Ok((builder.returns(GATHER).build()?, inputs))
}

/// Runs `steps` as an inner reactor whose inputs are `args`, and returns
/// each top-level step's result by name; the completed run is kept in
/// `kept` for undo. The inner run shares `ctx`'s pool and is asynchronous
/// only if the outer run is and `allow_async` is set. Nested steps read
/// outer values through the group's arguments only.
async fn run_nested(
    name: &str,
    args: &Arguments,
    steps: Vec<StepSpec>,
    ctx: &Context,
    allow_async: bool,
    kept: &Kept,
) -> Result<ValueMap, Error> {
    if steps.is_empty() {
        return Ok(ValueMap::new());
    }
    let (reactor, inputs) = nested_reactor(name, args, steps)?;
    let outcome = reactor
        .run(inputs)
        .within(ctx)
        .run_async(ctx.is_async() && allow_async)
        .fully_reversible()
        .outcome()
        .await?;
    match outcome {
        RunOutcome::Completed(done) => {
            let value = done.value().clone();
            kept.keep(done);
            value.take::<ValueMap>()
        }
        RunOutcome::Halted(halted) => {
            let run_id = halted.run_id().to_string();
            kept.halted(halted).await?;
            Err(Error::State {
                run_id,
                message: format!("the steps nested in `{name}` halted, which they cannot"),
            })
        }
    }
}

/// The undo of a group or around: its nested runs, in memory, or after a
/// crash from their journals, run by `steps` with `args` as inputs again.
async fn undo_nested(
    name: &str,
    token: &Value,
    args: &Arguments,
    steps: Vec<StepSpec>,
    ctx: &Context,
) -> UndoOutcome {
    if !nested::needs_journals(token, ctx) {
        return nested::undo(token, ctx, None).await;
    }
    let (reactor, inputs) = match nested_reactor(name, args, steps) {
        Ok(rebuilt) => rebuilt,
        Err(e) => return nested::unrebuildable(name, e),
    };
    let inputs = move |_: &str| inputs.0.clone();
    let journalled = Journalled {
        reactor: &reactor,
        places: None,
        inputs: &inputs,
    };
    nested::undo(token, ctx, Some(journalled)).await
}

type BeforeAll = Arc<
    dyn Fn(Arguments, Vec<StepSpec>) -> Result<(Arguments, Vec<StepSpec>), BoxError> + Send + Sync,
>;
type AfterAll = Arc<dyn Fn(ValueMap) -> Result<Value, BoxError> + Send + Sync>;

/// A group under construction: nested steps run as an inner reactor, with
/// `before_all` and `after_all` around them.
///
/// The group's arguments are the inner reactor's inputs (nested steps read
/// them with [`input`](crate::input)). `before_all` may change the arguments and choose
/// the steps; `after_all` turns the map of each nested step's result into
/// the group's result (by default, the map itself).
///
/// In a durable run ([`crate::durable`]) the nested steps run as a durable
/// run of their own, given the group's arguments again after a crash.
///
/// # Examples
///
/// ```
/// use reactor::kinds::group;
/// use reactor::{input, step, value, Inputs, Reactor, ValueMap};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let g = group("g")
///     .steps([
///         step("a").run_sync(|_, _| Ok("a")),
///         step("b").argument("x", input("x")).run_sync(|a, _| Ok(*a.get::<i32>("x")? * 2)),
///     ])
///     .before_all(|args, steps| Ok((args, steps.into_iter().filter(|s| s.name() == "b").collect())))
///     .into_step()?
///     .argument("x", value(21_i32));
/// let reactor = Reactor::builder("r").add(g).returns("g").build()?;
/// let out = reactor.run(Inputs::new()).await?;
/// let map = out.get::<ValueMap>()?;
/// assert_eq!(*map["b"].get::<i32>()?, 42);
/// assert!(!map.contains_key("a"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Group {
    name: Name,
    steps: Vec<StepSpec>,
    before: Option<BeforeAll>,
    after: Option<AfterAll>,
    allow_async: bool,
}

/// Starts a group named `name`.
pub fn group(name: impl Into<Name>) -> Group {
    Group {
        name: name.into(),
        steps: Vec::new(),
        before: None,
        after: None,
        allow_async: true,
    }
}

/// A group or around without steps.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{step}` contains no steps")]
pub struct EmptyNesting {
    /// The group or around step.
    pub step: String,
}

impl Group {
    /// Adds nested steps.
    pub fn steps(mut self, steps: impl IntoIterator<Item = StepSpec>) -> Group {
        self.steps.extend(steps);
        self
    }

    /// Changes the arguments and chooses the steps before they run.
    pub fn before_all<F>(mut self, f: F) -> Group
    where
        F: Fn(Arguments, Vec<StepSpec>) -> Result<(Arguments, Vec<StepSpec>), BoxError>
            + Send
            + Sync
            + 'static,
    {
        self.before = Some(Arc::new(f));
        self
    }

    /// Makes the group's result from the nested steps' results.
    pub fn after_all<T, F>(mut self, f: F) -> Group
    where
        T: Send + Sync + 'static,
        F: Fn(ValueMap) -> Result<T, BoxError> + Send + Sync + 'static,
    {
        self.after = Some(Arc::new(move |m| f(m).map(Value::new)));
        self
    }

    /// Whether the nested steps may run asynchronously (default: yes).
    pub fn allow_async(mut self, allow: bool) -> Group {
        self.allow_async = allow;
        self
    }

    /// The group as a step.
    pub fn into_step(self) -> Result<StepSpec, EmptyNesting> {
        if self.steps.is_empty() {
            return Err(EmptyNesting {
                step: self.name.to_string(),
            });
        }
        let shape = Shape::Nested {
            kind: "group",
            steps: self.steps.clone(),
            gathered: self.after.is_none(),
        };
        let this = Arc::new(self);
        let name = this.name.clone();
        let undo = this.clone();
        Ok(step(name)
            .max_retries(0)
            .shaped(shape)
            .run(move |args, ctx| {
                let this = this.clone();
                async move {
                    let kept = Kept::new();
                    let run = async {
                        let (args, steps) = match &this.before {
                            Some(before) => before(args, this.steps.clone())?,
                            None => (args, this.steps.clone()),
                        };
                        let results =
                            run_nested(&this.name, &args, steps, &ctx, this.allow_async, &kept)
                                .await?;
                        match &this.after {
                            Some(after) => after(results),
                            None => Ok(Value::new(results)),
                        }
                    };
                    let outcome = run.await.into_outcome();
                    kept.settle(outcome, ctx.durable()).await
                }
            })
            .undo(move |token, args, ctx| {
                let this = undo.clone();
                async move {
                    if !nested::needs_journals(&token, &ctx) {
                        return nested::undo(&token, &ctx, None).await;
                    }
                    // The steps it ran: those `before_all` chose (again).
                    let chosen = match &this.before {
                        Some(before) => before(args, this.steps.clone()),
                        None => Ok((args, this.steps.clone())),
                    };
                    match chosen {
                        Ok((args, steps)) => {
                            undo_nested(&this.name, &token, &args, steps, &ctx).await
                        }
                        Err(e) => nested::unrebuildable(&this.name, e),
                    }
                }
            }))
    }
}

/// Runs nested steps for an [`around`] function.
pub struct Nested {
    name: Name,
    ctx: Context,
    allow_async: bool,
    kept: Arc<Kept>,
}

impl Nested {
    /// Runs `steps` as an inner reactor with `args` as its inputs, and
    /// returns each step's result by name (an empty map for no steps).
    pub async fn run(&self, args: &Arguments, steps: Vec<StepSpec>) -> Result<ValueMap, Error> {
        run_nested(
            &self.name,
            args,
            steps,
            &self.ctx,
            self.allow_async,
            &self.kept,
        )
        .await
    }
}

type AroundFn = Arc<
    dyn Fn(Arguments, Context, Vec<StepSpec>, Nested) -> BoxFuture<'static, Outcome> + Send + Sync,
>;

/// A step wrapping the run of its nested steps in a function (for example
/// a transaction): `f(args, ctx, steps, nested)` decides when, and whether,
/// to call `nested.run(args, steps)`, and returns the step's result.
///
/// Nested steps run in the coordinator, one at a time, unless
/// `allow_async` is set ([`around_async`]).
///
/// # Examples
///
/// ```
/// use reactor::kinds::around;
/// use reactor::{input, step, value, Inputs, Reactor, ValueMap};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wrapped = around(
///     "transaction",
///     [step("inner").argument("v", input("v")).run_sync(|a, _| Ok(*a.get::<i32>("v")? + 1))],
///     |args, _ctx, steps, nested| async move {
///         // begin ...
///         let results = nested.run(&args, steps).await?;
///         // ... commit
///         Ok(*results["inner"].get::<i32>()?)
///     },
/// )?
/// .argument("v", value(41_i32));
/// let reactor = Reactor::builder("r").add(wrapped).returns("transaction").build()?;
/// assert_eq!(*reactor.run(Inputs::new()).await?.get::<i32>()?, 42);
/// # Ok(()) }
/// ```
pub fn around<F, Fut, R>(
    name: impl Into<Name>,
    steps: impl IntoIterator<Item = StepSpec>,
    f: F,
) -> Result<StepSpec, EmptyNesting>
where
    F: Fn(Arguments, Context, Vec<StepSpec>, Nested) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    make_around(name.into(), steps.into_iter().collect(), f, false)
}

/// [`around`], with the nested steps allowed to run asynchronously.
pub fn around_async<F, Fut, R>(
    name: impl Into<Name>,
    steps: impl IntoIterator<Item = StepSpec>,
    f: F,
) -> Result<StepSpec, EmptyNesting>
where
    F: Fn(Arguments, Context, Vec<StepSpec>, Nested) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    make_around(name.into(), steps.into_iter().collect(), f, true)
}

fn make_around<F, Fut, R>(
    name: Name,
    steps: Vec<StepSpec>,
    f: F,
    allow_async: bool,
) -> Result<StepSpec, EmptyNesting>
where
    F: Fn(Arguments, Context, Vec<StepSpec>, Nested) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    if steps.is_empty() {
        return Err(EmptyNesting {
            step: name.to_string(),
        });
    }
    let f: AroundFn = Arc::new(move |args, ctx, steps, nested| {
        f(args, ctx, steps, nested)
            .map(IntoOutcome::into_outcome)
            .boxed()
    });
    let inner_name = name.clone();
    let shape = Shape::Nested {
        kind: "around",
        steps: steps.clone(),
        gathered: false,
    };
    let (undo_name, undo_steps) = (name.clone(), steps.clone());
    Ok(step(name)
        .max_retries(0)
        .shaped(shape)
        .run_async(allow_async)
        .run(move |args, ctx| {
            let kept = Kept::new();
            let durable = ctx.durable();
            let nested = Nested {
                name: inner_name.clone(),
                ctx: ctx.clone(),
                allow_async,
                kept: kept.clone(),
            };
            let outcome = f(args, ctx, steps.clone(), nested);
            async move { kept.settle(outcome.await, durable).await }
        })
        // After a crash, its nested runs are undone as run by its steps
        // with its arguments: the function's own choices are not known.
        .undo(move |token, args, ctx| {
            let (name, steps) = (undo_name.clone(), undo_steps.clone());
            async move { undo_nested(&name, &token, &args, steps, &ctx).await }
        }))
}
