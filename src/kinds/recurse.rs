//! `recurse`: a reactor run again and again on its own result.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use super::nested::{self, Kept};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::Reason;
use crate::executor::RunOutcome;
use crate::name::Name;
use crate::reactor::{Inputs, Reactor};
use crate::step::{step, Outcome, Shape, Step, StepSpec, UndoOutcome};
use crate::value::{Value, ValueMap};

type ExitCondition = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// A step running a reactor repeatedly, as [`recurse`] starts it.
///
/// The first run takes the step's arguments as its inputs; each later run
/// takes the previous result, which must be a map ([`ValueMap`],
/// `HashMap<String, Value>` or a JSON object) with a key for every input.
/// After each run the exit condition is checked first, then the iteration
/// limit; the step's result is the last run's.
///
/// # Examples
///
/// ```
/// use reactor::kinds::recurse;
/// use reactor::{input, step, Inputs, Reactor, Value, ValueMap};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // {n, acc} -> {n - 1, acc * n}
/// let factorial_step = Reactor::builder("factorial_step")
///     .input("n")
///     .input("acc")
///     .add(step("next").argument("n", input("n")).argument("acc", input("acc")).run_sync(|a, _| {
///         let (n, acc) = (*a.get::<u64>("n")?, *a.get::<u64>("acc")?);
///         let mut next = ValueMap::new();
///         next.insert("n".into(), Value::new(n - 1));
///         next.insert("acc".into(), Value::new(acc * n));
///         Ok(next)
///     }))
///     .returns("next")
///     .build()?;
/// let reactor = Reactor::builder("factorial")
///     .input("n")
///     .add(
///         recurse("loop", factorial_step)
///             .until(|v| *v.get::<ValueMap>().unwrap()["n"].get::<u64>().unwrap() <= 1)
///             .into_step()?
///             .argument("n", input("n"))
///             .argument("acc", reactor::value(1_u64)),
///     )
///     .returns("loop")
///     .build()?;
/// let out = reactor.run(Inputs::new().with("n", 5_u64)).await?;
/// assert_eq!(*out.get::<ValueMap>()?["acc"].get::<u64>()?, 120);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Recurse {
    name: Name,
    reactor: Reactor,
    max_iterations: Option<u64>,
    until: Option<ExitCondition>,
}

/// Starts a recursion named `name` over `reactor`.
pub fn recurse(name: impl Into<Name>, reactor: Reactor) -> Recurse {
    Recurse {
        name: name.into(),
        reactor,
        max_iterations: None,
        until: None,
    }
}

/// Why a recursion cannot be made or run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecurseError {
    /// Neither an exit condition nor an iteration limit was given.
    #[error("recursion `{step}` has neither an exit condition nor max_iterations")]
    MissingConstraints {
        /// The recurse step.
        step: String,
    },
    /// `max_iterations(0)`: the reactor runs at least once.
    #[error(
        "recursion `{step}`: max_iterations must be at least 1 (the reactor runs at least once)"
    )]
    ZeroIterations {
        /// The recurse step.
        step: String,
    },
    /// A result to run on is not a map with every input of the reactor.
    #[error("recursion `{step}`: the result of iteration {iteration} is not a map with the inputs {inputs:?} of `{reactor}`")]
    NotInputs {
        /// The recurse step.
        step: String,
        /// The iteration, from 1.
        iteration: u64,
        /// The inner reactor.
        reactor: String,
        /// Its inputs.
        inputs: Vec<String>,
    },
    /// The inner reactor halted.
    #[error("recursion `{step}`: the reactor `{reactor}` halted")]
    Halted {
        /// The recurse step.
        step: String,
        /// The inner reactor.
        reactor: String,
    },
}

impl Recurse {
    /// Stops after at most `n` runs (at least 1).
    pub fn max_iterations(mut self, n: u64) -> Recurse {
        self.max_iterations = Some(n);
        self
    }

    /// Stops once `exit` holds for a run's result.
    pub fn until<F>(mut self, exit: F) -> Recurse
    where
        F: Fn(&Value) -> bool + Send + Sync + 'static,
    {
        self.until = Some(Arc::new(exit));
        self
    }

    /// The recursion as a step; an error if it has no way to stop, or a
    /// limit of 0 iterations.
    pub fn into_step(self) -> Result<StepSpec, RecurseError> {
        if self.max_iterations == Some(0) {
            return Err(RecurseError::ZeroIterations {
                step: self.name.to_string(),
            });
        }
        if self.max_iterations.is_none() && self.until.is_none() {
            return Err(RecurseError::MissingConstraints {
                step: self.name.to_string(),
            });
        }
        let name = self.name.clone();
        let shape = Shape::Reactor {
            kind: "recurse",
            plan: self.reactor.plan().clone(),
        };
        Ok(step(name).max_retries(0).shaped(shape).implementation(self))
    }

    fn next_inputs(&self, result: &Value, iteration: u64) -> Result<Inputs, RecurseError> {
        let names: Vec<String> = self.reactor.input_names().map(str::to_string).collect();
        let lookup = |key: &str| -> Option<Value> {
            if let Some(m) = result.downcast_ref::<ValueMap>() {
                return m.get(key).cloned();
            }
            if let Some(m) = result.downcast_ref::<HashMap<String, Value>>() {
                return m.get(key).cloned();
            }
            result
                .downcast_ref::<serde_json::Value>()
                .and_then(|j| j.get(key))
                .map(|j| Value::json(j.clone()))
        };
        let mut inputs = Inputs::new();
        for n in &names {
            match lookup(n) {
                Some(v) => inputs.insert(n.clone(), v),
                None => {
                    return Err(RecurseError::NotInputs {
                        step: self.name.to_string(),
                        iteration,
                        reactor: self.reactor.name().to_string(),
                        inputs: names.clone(),
                    })
                }
            }
        }
        Ok(inputs)
    }
}

#[async_trait]
impl Step for Recurse {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let wanted: BTreeSet<&str> = self.reactor.input_names().collect();
        let mut inputs = Inputs::new();
        for (name, value) in args.iter() {
            if wanted.contains(name) {
                inputs.insert(name, value.clone());
            }
        }
        let kept = Kept::new();
        let mut iteration = 0;
        let outcome = loop {
            iteration += 1;
            let run = self
                .reactor
                .run(inputs)
                .within(&ctx)
                .run_async(ctx.is_async())
                .fully_reversible()
                .outcome()
                .await;
            let result = match run {
                Ok(RunOutcome::Completed(done)) => {
                    let value = done.value().clone();
                    kept.keep(done);
                    value
                }
                Ok(RunOutcome::Halted(halted)) => {
                    let error = Reason::new(RecurseError::Halted {
                        step: self.name.to_string(),
                        reactor: self.reactor.name().to_string(),
                    });
                    break match kept.halted(halted).await {
                        Ok(()) => Outcome::Error(error),
                        Err(e) => {
                            Outcome::Error(Reason::msg(format!("{error}; undoing it failed: {e}")))
                        }
                    };
                }
                Err(e) => break Outcome::Error(Reason::new(e)),
            };
            if self.until.as_ref().is_some_and(|exit| exit(&result)) {
                break Outcome::Ok(result);
            }
            if self.max_iterations.is_some_and(|max| iteration >= max) {
                break Outcome::Ok(result);
            }
            inputs = match self.next_inputs(&result, iteration) {
                Ok(inputs) => inputs,
                Err(e) => break Outcome::Error(Reason::new(e)),
            };
        };
        kept.settle(outcome, ctx.durable()).await
    }

    fn can_compensate(&self) -> bool {
        false
    }

    async fn undo(&self, value: Value, _args: Arguments, ctx: Context) -> UndoOutcome {
        nested::undo(&value, &ctx, Some(nested::Journalled::of(&self.reactor))).await
    }
}
