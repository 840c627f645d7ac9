//! The step registry: step kinds by name, so that a durable run journals
//! the steps its steps emit as data (a kind and its parameters) and
//! rebuilds them after a crash, instead of closures it cannot record.
//!
//! An emitted step is checked when its emitter completes: it must carry
//! its descriptor (made by [`StepRegistry::make`], or marked with
//! [`StepSpec::described`]), its kind must be registered, and the step its
//! kind rebuilds from the journalled parameters must be the same step (the
//! same definition line as the reactor's own steps have: arguments, waits,
//! undo, result type). Otherwise the emitter fails, naming the emitted step
//! and why, before anything depends on it.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::definition::step_line;
use crate::error::Error;
use crate::journal::EmittedStep;
use crate::step::StepSpec;

type Factory = Arc<dyn Fn(&str, serde_json::Value) -> Result<StepSpec, String> + Send + Sync>;

/// Step kinds by name, from which a durable run rebuilds the steps emitted
/// at run time. Cloning a registry shares it; a [`Runtime`](super::Runtime)
/// has one ([`Runtime::steps`](super::Runtime::steps)).
///
/// # Examples
///
/// ```
/// use reactor::durable::StepRegistry;
/// use reactor::{step, value, StepSpec};
///
/// fn notify(name: &str, customer: u64) -> StepSpec {
///     step(name)
///         .argument("customer", value(customer))
///         .output::<u64>()
///         .run_sync(|a, _| Ok(*a.get::<u64>("customer")?))
/// }
///
/// let steps = StepRegistry::new();
/// steps.register("notify", notify);
/// // In a step, emit it as data the journal can hold:
/// let emitted = steps.make("notify", "notify_42", 42_u64).unwrap();
/// assert_eq!(emitted.name(), "notify_42");
/// ```
#[derive(Clone, Default)]
pub struct StepRegistry {
    kinds: Arc<RwLock<HashMap<String, Factory>>>,
}

impl std::fmt::Debug for StepRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = kinds.keys().collect();
        names.sort();
        f.debug_struct("StepRegistry")
            .field("kinds", &names)
            .finish()
    }
}

impl StepRegistry {
    /// An empty registry.
    pub fn new() -> StepRegistry {
        StepRegistry::default()
    }

    /// Registers (or replaces) the kind `kind`: `make(name, params)` makes
    /// its step named `name`. It must make the same step from the same
    /// parameters every time (a durable run checks this when the step is
    /// emitted). A panic in `make` is an error of the emitting step. Kinds
    /// named `reactor:...` are the library's own: registering one is
    /// ignored, with a warning.
    pub fn register<P, F>(&self, kind: impl Into<String>, make: F)
    where
        P: Serialize + DeserializeOwned + 'static,
        F: Fn(&str, P) -> StepSpec + Send + Sync + 'static,
    {
        let kind = kind.into();
        if kind.starts_with("reactor:") {
            tracing::warn!(%kind, "step kinds named `reactor:...` are the library's own: not registered");
            return;
        }
        let named = kind.clone();
        let factory: Factory = Arc::new(move |name: &str, json: serde_json::Value| {
            let params: P = serde_json::from_value(json.clone()).map_err(|e| {
                format!("the parameters of the step kind `{named}` cannot be decoded: {e}")
            })?;
            let spec = catch_unwind(AssertUnwindSafe(|| make(name, params))).map_err(|p| {
                format!(
                    "the step kind `{named}` panicked: {}",
                    crate::error::panic_message(&*p)
                )
            })?;
            Ok(spec.described(named.clone(), json))
        });
        self.kinds
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, factory);
    }

    /// The step named `name` of the kind `kind`, made from `params`, and
    /// marked so that a durable run can journal it.
    pub fn make(&self, kind: &str, name: &str, params: impl Serialize) -> Result<StepSpec, Error> {
        let failed = |problem: String| Error::StepKind {
            step: name.to_string(),
            problem,
        };
        super::definition::check_step_name(name).map_err(failed)?;
        let json = serde_json::to_value(params).map_err(|e| {
            failed(format!(
                "the parameters of the step kind `{kind}` cannot be encoded: {e}"
            ))
        })?;
        self.rebuild(name, kind, json).map_err(failed)
    }

    /// Rebuilds the step `name` of the kind `kind` from `params`.
    pub(crate) fn rebuild(
        &self,
        name: &str,
        kind: &str,
        params: serde_json::Value,
    ) -> Result<StepSpec, String> {
        let factory = self
            .kinds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "the step kind `{kind}` is not registered: register it with \
                     `Runtime::register_step(\"{kind}\", ..)`"
                )
            })?;
        let spec = factory(name, params)?;
        if spec.name() != name {
            return Err(format!(
                "the step kind `{kind}` made a step named `{}` when asked for `{name}`",
                spec.name()
            ));
        }
        Ok(spec)
    }

    /// What a durable run journals of the emitted step `spec`; why it
    /// cannot, naming the step.
    pub(crate) fn journalled(&self, spec: &StepSpec) -> Result<EmittedStep, String> {
        let name = spec.name();
        let problem =
            |why: String| format!("the emitted step `{name}` cannot be journalled: {why}");
        let Some(descriptor) = spec.def().extras().descriptor.clone() else {
            return Err(problem(
                "it was not made by a registered step kind: make it with \
                 `StepRegistry::make` (kinds are registered with `Runtime::register_step`)"
                    .to_string(),
            ));
        };
        let params = descriptor
            .params
            .clone()
            .map_err(|e| problem(format!("its parameters cannot be encoded: {e}")))?;
        if descriptor.kind == crate::kinds::SWITCH_KIND {
            // A switch's steps: rebuilt from the switch, not a registry.
            return Ok(EmittedStep {
                name: name.to_string(),
                kind: descriptor.kind.clone(),
                params,
            });
        }
        let rebuilt = self
            .rebuild(name, &descriptor.kind, params.clone())
            .map_err(problem)?;
        let line = |s: &StepSpec| {
            let can_undo = s.resolve().map_err(|e| e.to_string())?.can_undo();
            step_line(s, can_undo).map(|(line, _)| line)
        };
        let (emitted, again) = (
            line(spec).map_err(problem)?,
            line(&rebuilt).map_err(problem)?,
        );
        if emitted != again {
            return Err(problem(format!(
                "its kind `{}` rebuilds it as `{again}`, not `{emitted}`: a kind must make \
                 the same step from the same parameters",
                descriptor.kind
            )));
        }
        Ok(EmittedStep {
            name: name.to_string(),
            kind: descriptor.kind.clone(),
            params,
        })
    }
}
