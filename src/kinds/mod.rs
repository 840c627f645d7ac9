//! Ready-made step kinds: `map`, `compose`, `switch`, `group`, `around`,
//! `recurse`, `template`, `collect`, `debug`, `flunk` and `transform`.
//!
//! Each returns a [`StepSpec`] to add arguments to, like [`step`](crate::step).
//!
//! ```
//! use reactor::kinds::{collect, template};
//! use reactor::{input, result, Inputs, Reactor};
//!
//! # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
//! let reactor = Reactor::builder("report")
//!     .input("processed")
//!     .add(collect("counts").argument("processed", input("processed")))
//!     .add(template("done", "Processing complete: {{ processed }} records")
//!         .argument("processed", input("processed"))
//!         .wait_for("counts"))
//!     .returns("done")
//!     .build()?;
//! let out = reactor.run(Inputs::new().with("processed", 42_u64)).await?;
//! assert_eq!(out.get::<String>()?, "Processing complete: 42 records");
//! # Ok(()) }
//! ```

mod compose;
mod group;
mod map;
mod nested;
mod recurse;
mod switch;
mod template;

use crate::argument::Arguments;
use crate::name::Name;
use crate::step::{step, Shape, StepSpec};
use crate::value::{Value, ValueMap};

pub use compose::{compose, Compose, ComposeError};
pub use group::{around, around_async, group, EmptyNesting, Group, Nested};
pub(crate) use map::element_of;
pub use map::{element, map, Map, MapError, MapSource};
pub use recurse::{recurse, Recurse, RecurseError};
pub(crate) use switch::{rebuild as rebuild_switched, SWITCH_KIND};
pub use switch::{switch, Switch};
pub use template::{Template, TemplateError};

/// A step rendering `text`, whose `{{ name }}` placeholders are replaced
/// by the step's arguments (strings as they are, numbers and booleans as
/// printed, lists, options and maps of those in their debug form, as
/// [`Value`]'s `Debug` shows them). Whitespace around the
/// placeholders is kept. A placeholder naming no argument fails the step,
/// naming the placeholder.
pub fn template(name: impl Into<Name>, text: &str) -> StepSpec {
    let template = Template::parse(text);
    step(name)
        .max_retries(1)
        .shaped(Shape::Leaf("template"))
        .run_sync(move |args, _| template.render(args).map_err(Into::into))
}

/// A step whose result is `f` applied to `source` (a typed transform of
/// one value; a value of another type than `T` fails the step, naming
/// both types).
///
/// ```
/// use reactor::kinds::transform;
/// use reactor::{input, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("t")
///     .input("name")
///     .add(transform("upper", input("name"), |s: &String| s.to_uppercase()))
///     .returns("upper")
///     .build()?;
/// let out = reactor.run(Inputs::new().with("name", "marty".to_string())).await?;
/// assert_eq!(out.get::<String>()?, "MARTY");
/// # Ok(()) }
/// ```
pub fn transform<T, U, F>(name: impl Into<Name>, source: crate::argument::Source, f: F) -> StepSpec
where
    T: 'static,
    U: Send + Sync + 'static,
    F: Fn(&T) -> U + Send + Sync + 'static,
{
    step(name)
        .max_retries(0)
        .shaped(Shape::Leaf("transform"))
        .argument("value", source.map(f))
        .run_sync(|args, _| Ok(args.value("value").expect("the transform's value").clone()))
}

/// A step returning its arguments as a [`ValueMap`] (transform it with
/// [`StepSpec::transform_arguments`] first to reshape it).
pub fn collect(name: impl Into<Name>) -> StepSpec {
    step(name)
        .max_retries(1)
        .shaped(Shape::Leaf("collect"))
        .run_sync(|args, _| {
            let map: ValueMap = args
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            Ok(map)
        })
}

/// A step logging its arguments and context through `tracing` at `level`,
/// returning the unit value.
pub fn debug(name: impl Into<Name>, level: tracing::Level) -> StepSpec {
    step(name)
        .max_retries(0)
        .shaped(Shape::Leaf("debug"))
        .run_sync(move |args, ctx| {
            let step = ctx.step_name();
            let report = format!(
            "# Debug information for step `{step}`.\n## Arguments\n{args:?}\n## Context\n{ctx:?}"
        );
            match level {
                tracing::Level::ERROR => tracing::error!(step, "{report}"),
                tracing::Level::WARN => tracing::warn!(step, "{report}"),
                tracing::Level::INFO => tracing::info!(step, "{report}"),
                tracing::Level::DEBUG => tracing::debug!(step, "{report}"),
                tracing::Level::TRACE => tracing::trace!(step, "{report}"),
            }
            Ok(())
        })
}

/// A step that always fails with [`ForcedFailure`]: `message` may hold
/// `{{ name }}` placeholders filled from the step's arguments, which are
/// also kept in the error.
pub fn flunk(name: impl Into<Name>, message: &str) -> StepSpec {
    let template = Template::parse(message);
    step(name)
        .max_retries(0)
        .shaped(Shape::Leaf("flunk"))
        .run_sync(move |args, ctx| -> Result<(), crate::BoxError> {
            let message = template.render(args)?;
            Err(Box::new(ForcedFailure {
                step: ctx.step_name().to_string(),
                message,
                arguments: arguments_debug(args),
            }))
        })
}

fn arguments_debug(args: &Arguments) -> Vec<(String, String)> {
    args.iter()
        .map(|(n, v)| (n.to_string(), format!("{v:?}")))
        .collect()
}

/// The failure of a [`flunk`] step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ForcedFailure {
    /// The flunk step.
    pub step: String,
    /// The rendered message.
    pub message: String,
    /// The step's arguments, as printed.
    pub arguments: Vec<(String, String)>,
}

/// Renders a value for a template: strings as they are, numbers and
/// booleans as printed, JSON as JSON, anything else in its debug form.
pub(crate) fn render(value: &Value) -> String {
    macro_rules! display {
        ($($t:ty),*) => {$(
            if let Some(v) = value.downcast_ref::<$t>() { return v.to_string(); }
        )*};
    }
    crate::value::with_scalar_types!(display, Name);
    if let Some(json) = value.downcast_ref::<serde_json::Value>() {
        return match json {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
    format!("{value:?}")
}
