//! The builder: declares a reactor's inputs, steps, return step and
//! middleware, then plans it into a runnable [`Reactor`].
//!
//! The builder records everything and validates nothing until
//! [`Builder::build`], which reports the first problem found by the planner
//! (duplicate names, unknown inputs or steps, cycles, a missing return).

use std::sync::Arc;

use crate::argument::TransformFn;
use crate::error::{BoxError, Error};
use crate::middleware::Middleware;
use crate::name::Name;
use crate::planner;
use crate::reactor::Reactor;
use crate::step::StepSpec;
use crate::value::Value;

/// A declared input.
#[derive(Clone)]
pub(crate) struct InputDef {
    pub(crate) name: Name,
    pub(crate) transform: Option<TransformFn>,
    pub(crate) description: Option<String>,
    /// How the input crosses a durable run's journal.
    pub(crate) codec: Option<crate::codec::Codec>,
    /// Given again by its parent every time the run is taken up (a map's
    /// element runs): a durable run does not journal it.
    pub(crate) given: bool,
}

/// Declares a reactor.
///
/// # Examples
///
/// ```
/// use reactor::{input, result, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("greeter")
///     .input("name")
///     .add(step("greet").argument("name", input("name")).run_sync(|args, _| {
///         Ok(format!("Hello, {}!", args.get::<String>("name")?))
///     }))
///     .add(step("shout").argument("text", result("greet")).run_sync(|args, _| {
///         Ok(args.get::<String>("text")?.to_uppercase())
///     }))
///     .returns("shout")
///     .build()?;
/// let out = reactor.run(Inputs::new().with("name", "Marty".to_string())).await?;
/// assert_eq!(out.get::<String>()?, "HELLO, MARTY!");
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Builder {
    pub(crate) name: Option<Name>,
    pub(crate) description: Option<String>,
    pub(crate) inputs: Vec<InputDef>,
    pub(crate) steps: Vec<StepSpec>,
    pub(crate) return_step: Option<Name>,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
}

impl Builder {
    /// A builder for a reactor named `name`.
    pub fn new(name: impl Into<Name>) -> Builder {
        Builder {
            name: Some(name.into()),
            ..Builder::default()
        }
    }

    /// Declares an input.
    pub fn input(&mut self, name: impl Into<Name>) -> &mut Builder {
        self.inputs.push(InputDef {
            name: name.into(),
            transform: None,
            description: None,
            codec: None,
            given: false,
        });
        self
    }

    /// Declares an input its parent gives again every time a durable run
    /// of it is taken up, so that the run does not journal it (a map's
    /// element runs: their element comes from the map's source).
    pub(crate) fn input_given(&mut self, name: impl Into<Name>) -> &mut Builder {
        self.input(name);
        if let Some(input) = self.inputs.last_mut() {
            input.given = true;
        }
        self
    }

    /// Declares an input of type `T`, which a durable run journals (see
    /// [`durable`](crate::durable)); a value of another type is refused
    /// when the run starts, naming the input and both types.
    ///
    /// ```
    /// use reactor::{input, step, Inputs, Reactor};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
    /// let r = Reactor::builder("typed")
    ///     .input_as::<u32>("n")
    ///     .add(step("double").argument("n", input("n")).run_sync(|a, _| Ok(a.get::<u32>("n")? * 2)))
    ///     .returns("double")
    ///     .build()?;
    /// assert!(r.run(Inputs::new().with("n", "seven")).await.is_err());
    /// assert_eq!(*r.run(Inputs::new().with("n", 7_u32)).await?.get::<u32>()?, 14);
    /// # Ok(()) }
    /// ```
    pub fn input_as<T>(&mut self, name: impl Into<Name>) -> &mut Builder
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.inputs.push(InputDef {
            name: name.into(),
            transform: None,
            description: None,
            codec: Some(crate::codec::Codec::of::<T>()),
            given: false,
        });
        self
    }

    /// Declares an input whose every consumer sees `transform(value)`.
    pub fn input_with<T, U, F>(&mut self, name: impl Into<Name>, transform: F) -> &mut Builder
    where
        T: 'static,
        U: Send + Sync + 'static,
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        self.try_input_with(name, move |t: &T| Ok::<U, BoxError>(transform(t)))
    }

    /// Declares an input with a transform that may fail; a failure fails the
    /// run before any step runs, naming the input.
    pub fn try_input_with<T, U, F>(&mut self, name: impl Into<Name>, transform: F) -> &mut Builder
    where
        T: 'static,
        U: Send + Sync + 'static,
        F: Fn(&T) -> Result<U, BoxError> + Send + Sync + 'static,
    {
        let transform: TransformFn = Arc::new(move |v: &Value| {
            let t = v.get::<T>().map_err(BoxError::from)?;
            transform(t).map(Value::new)
        });
        self.inputs.push(InputDef {
            name: name.into(),
            transform: Some(transform),
            description: None,
            codec: None,
            given: false,
        });
        self
    }

    /// Describes the last declared input.
    pub fn input_description(&mut self, text: impl Into<String>) -> &mut Builder {
        if let Some(last) = self.inputs.last_mut() {
            last.description = Some(text.into());
        }
        self
    }

    /// Adds a step.
    pub fn add(&mut self, step: StepSpec) -> &mut Builder {
        self.steps.push(step);
        self
    }

    /// Names the step whose result is the reactor's result.
    pub fn returns(&mut self, step: impl Into<Name>) -> &mut Builder {
        self.return_step = Some(step.into());
        self
    }

    /// Attaches middleware to every run of the reactor.
    pub fn middleware(&mut self, middleware: impl Middleware) -> &mut Builder {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Attaches shared middleware to every run of the reactor.
    pub fn middleware_arc(&mut self, middleware: Arc<dyn Middleware>) -> &mut Builder {
        self.middleware.push(middleware);
        self
    }

    /// Describes the reactor.
    pub fn description(&mut self, text: impl Into<String>) -> &mut Builder {
        let text = text.into();
        self.description = (!text.is_empty()).then_some(text);
        self
    }

    /// Validates and plans the reactor. The builder is left empty.
    pub fn build(&mut self) -> Result<Reactor, Error> {
        let builder = std::mem::take(self);
        planner::plan(builder).map(|plan| Reactor::from_plan(Arc::new(plan)))
    }
}
