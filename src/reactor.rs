//! [`Reactor`]: a planned, immutable workflow definition, and [`Inputs`].

use std::sync::Arc;

use crate::builder::Builder;
use crate::executor::{RunRequest, RunState};
use crate::name::Name;
use crate::planner::Plan;
use crate::value::{Value, ValueMap};

/// A planned reactor. Cheap to clone; run it any number of times, at once.
///
/// # Examples
///
/// ```
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let double = Reactor::builder("double")
///     .input("x")
///     .add(step("twice").argument("x", input("x")).run_sync(|args, _| {
///         Ok(args.get::<i64>("x")? * 2)
///     }))
///     .returns("twice")
///     .build()?;
/// let out = double.run(Inputs::new().with("x", 21_i64)).await?;
/// assert_eq!(*out.get::<i64>()?, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Reactor {
    plan: Arc<Plan>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("name", &self.name())
            .field("steps", &self.plan.steps.len())
            .finish()
    }
}

impl Reactor {
    /// Starts declaring a reactor named `name`.
    pub fn builder(name: impl Into<Name>) -> Builder {
        Builder::new(name)
    }

    pub(crate) fn from_plan(plan: Arc<Plan>) -> Reactor {
        Reactor { plan }
    }

    pub(crate) fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// The reactor's description.
    pub fn description(&self) -> Option<&str> {
        self.plan.description.as_deref()
    }

    /// The declared inputs, in order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.plan.inputs.iter().map(|i| &*i.name)
    }

    /// The steps, in declaration order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.plan.steps.iter().map(|s| s.spec.name())
    }

    /// The number of steps.
    pub fn step_count(&self) -> usize {
        self.plan.steps.len()
    }

    /// The return step's name.
    pub fn return_step(&self) -> &str {
        self.plan.steps[self.plan.return_step].spec.name()
    }

    /// A run of this reactor with `inputs`; set options, then `.await` it.
    pub fn run(&self, inputs: Inputs) -> RunRequest {
        RunRequest::new(self.clone(), inputs.0, None)
    }

    /// Resumes a run from its state (for example a stored [`RunState`]).
    pub fn resume(&self, state: RunState) -> RunRequest {
        RunRequest::new(self.clone(), ValueMap::new(), Some(state))
    }
}

/// A reactor's inputs, by name.
///
/// # Examples
///
/// ```
/// use reactor::Inputs;
///
/// let inputs = Inputs::new().with("user_ids", vec![1_u64, 2, 3]).with("name", "x".to_string());
/// assert_eq!(inputs.len(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Inputs(pub(crate) ValueMap);

impl Inputs {
    /// No inputs.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// These inputs with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Send + Sync + 'static) -> Inputs {
        self.0.insert(name.into(), Value::new(value));
        self
    }

    /// Sets `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Send + Sync + 'static) {
        self.0.insert(name.into(), Value::new(value));
    }

    /// How many inputs there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ValueMap> for Inputs {
    fn from(map: ValueMap) -> Inputs {
        Inputs(map)
    }
}
