//! `compose`: another reactor run as one step.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::nested::{self, Kept};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::Reason;
use crate::executor::RunOutcome;
use crate::name::Name;
use crate::reactor::{Inputs, Reactor};
use crate::step::{step, Outcome, Shape, Step, StepSpec, UndoOutcome};
use crate::value::Value;

/// A step running another reactor, as [`compose`] makes it; use it with
/// [`StepSpec::implementation`] to set its options.
///
/// The step's arguments become the inner reactor's inputs, by name: they
/// must match its inputs exactly. The inner run is part of the outer run
/// ([`RunRequest::within`](crate::RunRequest::within)): it shares the outer
/// run's pool (and the step's slot), sees its context and middleware, and
/// is asynchronous only if the outer run is and `allow_async` (the
/// default) is set. With `support_undo` (the default) a later failure of
/// the outer run undoes the inner run's completed steps too.
#[derive(Clone)]
pub struct Compose {
    reactor: Reactor,
    allow_async: bool,
    support_undo: bool,
}

/// Makes a step that runs `reactor` (see [`Compose`]).
///
/// # Examples
///
/// ```
/// use reactor::kinds::compose;
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let inner = Reactor::builder("greet")
///     .input("name")
///     .add(step("hello").argument("name", input("name")).run_sync(|a, _| {
///         Ok(format!("Hello, {}!", a.get::<String>("name")?))
///     }))
///     .returns("hello")
///     .build()?;
/// let outer = Reactor::builder("outer")
///     .input("name")
///     .add(compose("greeting", inner).argument("name", input("name")))
///     .returns("greeting")
///     .build()?;
/// let out = outer.run(Inputs::new().with("name", "World".to_string())).await?;
/// assert_eq!(out.get::<String>()?, "Hello, World!");
/// # Ok(()) }
/// ```
pub fn compose(name: impl Into<Name>, reactor: Reactor) -> StepSpec {
    Compose::new(reactor).into_step(name)
}

impl Compose {
    /// Runs `reactor`, asynchronously if allowed, with undo support.
    pub fn new(reactor: Reactor) -> Compose {
        Compose {
            reactor,
            allow_async: true,
            support_undo: true,
        }
    }

    /// Whether the inner run may be asynchronous (when the outer one is).
    pub fn allow_async(mut self, allow: bool) -> Compose {
        self.allow_async = allow;
        self
    }

    /// The step running the reactor, named `name`.
    pub fn into_step(self, name: impl Into<Name>) -> StepSpec {
        let shape = Shape::Reactor {
            kind: "compose",
            plan: self.reactor.plan().clone(),
        };
        step(name).max_retries(0).shaped(shape).implementation(self)
    }

    /// Whether a failure of the outer run undoes the inner run.
    pub fn support_undo(mut self, support: bool) -> Compose {
        self.support_undo = support;
        self
    }

    fn inputs(&self, args: &Arguments) -> Result<Inputs, ComposeError> {
        let wanted: BTreeSet<&str> = self.reactor.input_names().collect();
        let given: BTreeSet<&str> = args.iter().map(|(n, _)| n).collect();
        let missing: Vec<String> = wanted.difference(&given).map(|s| s.to_string()).collect();
        let extra: Vec<String> = given.difference(&wanted).map(|s| s.to_string()).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(ComposeError::Arguments {
                step: args.step().to_string(),
                reactor: self.reactor.name().to_string(),
                missing,
                extra,
            });
        }
        let mut inputs = Inputs::new();
        for (name, value) in args.iter() {
            inputs.insert(name, value.clone());
        }
        Ok(inputs)
    }
}

/// Why a composed reactor could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The step's arguments do not match the inner reactor's inputs.
    #[error("step `{step}` composes `{reactor}`: missing arguments {missing:?}, extra arguments {extra:?}")]
    Arguments {
        /// The compose step.
        step: String,
        /// The inner reactor.
        reactor: String,
        /// Inputs of the inner reactor with no argument.
        missing: Vec<String>,
        /// Arguments that are no input of the inner reactor.
        extra: Vec<String>,
    },
    /// The inner reactor halted (resuming it through the outer run is not
    /// supported: run it directly to halt and resume it). Its completed
    /// steps were undone (with `support_undo`).
    #[error("the composed reactor `{reactor}` halted")]
    Halted {
        /// The inner reactor.
        reactor: String,
    },
}

#[async_trait]
impl Step for Compose {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let inputs = match self.inputs(&args) {
            Ok(inputs) => inputs,
            Err(e) => return Outcome::Error(Reason::new(e)),
        };
        let mut request = self
            .reactor
            .run(inputs)
            .within(&ctx)
            .run_async(ctx.is_async() && self.allow_async);
        if self.support_undo {
            request = request.fully_reversible();
        }
        let kept = Kept::new();
        let outcome = match request.outcome().await {
            Ok(RunOutcome::Completed(done)) => {
                let value = done.value().clone();
                kept.keep(done);
                Outcome::Ok(value)
            }
            Ok(RunOutcome::Halted(halted)) => {
                let halt = Reason::new(ComposeError::Halted {
                    reactor: self.reactor.name().to_string(),
                });
                if !self.support_undo {
                    return Outcome::Error(halt);
                }
                match kept.halted(halted).await {
                    Ok(()) => Outcome::Error(halt),
                    Err(e) => {
                        Outcome::Error(Reason::msg(format!("{halt}; undoing it failed: {e}")))
                    }
                }
            }
            Err(e) => Outcome::Error(Reason::new(e)),
        };
        kept.settle(outcome, ctx.durable()).await
    }

    fn can_compensate(&self) -> bool {
        false
    }

    fn can_undo(&self) -> bool {
        self.support_undo
    }

    async fn undo(&self, value: Value, _args: Arguments, ctx: Context) -> UndoOutcome {
        nested::undo(&value, &ctx, Some(nested::Journalled::of(&self.reactor))).await
    }
}
