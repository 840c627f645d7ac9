//! Arguments: where a step's values come from, and how the step reads them.
//!
//! A [`Source`] names an input ([`input`]), another step's result
//! ([`result`]) or a constant ([`value`]), optionally followed by a sub-path
//! ([`Source::at`]) and a typed transform ([`Source::map`]). At run time the
//! step receives [`Arguments`], read with [`Arguments::get`].

use std::fmt;
use std::sync::Arc;

use crate::error::{BoxError, Error, Reason, StepErrorKind};
use crate::name::Name;
use crate::planner::{Plan, PlannedStep};
use crate::value::{PathKey, Value};

pub(crate) type TransformFn = Arc<dyn Fn(&Value) -> Result<Value, BoxError> + Send + Sync>;

/// Where an argument's value comes from.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    Input(Name),
    Result(Name),
    /// Boxed, so that an argument specification stays at 48 bytes: a step
    /// gathering a million results holds a million of them.
    Value(Box<Value>),
}

/// The source of an argument: an input, a result or a value, with an optional
/// sub-path and transform.
///
/// # Examples
///
/// ```
/// use reactor::{input, result, value};
///
/// let a = input("user_ids");
/// let b = result("fetch").at("profile").at(0);
/// let c = value(3_i64).map(|n: &i64| n * 2);
/// # let _ = (a, b, c);
/// ```
#[derive(Clone)]
pub struct Source {
    pub(crate) origin: Origin,
    /// The sub-path and transform, when there are any (most arguments have
    /// neither, and stay small).
    pub(crate) extra: Option<Box<SourceExtra>>,
}

#[derive(Clone, Default)]
pub(crate) struct SourceExtra {
    pub(crate) path: Vec<PathKey>,
    pub(crate) transform: Option<TransformFn>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("origin", &self.origin)
            .field("path", &self.sub_path())
            .field(
                "transform",
                &self.extra.as_ref().is_some_and(|e| e.transform.is_some()),
            )
            .finish()
    }
}

/// As written: `input(name)`, `result(step).at(key)`, `value(..)`, with
/// `.map(..)` when it has a transform.
///
/// # Examples
///
/// ```
/// use reactor::{input, result};
///
/// assert_eq!(input("ids").to_string(), "input(ids)");
/// assert_eq!(result("fetch").at("profile").at(0).to_string(), r#"result(fetch).at("profile").at(0)"#);
/// ```
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Input(n) => match crate::kinds::element_of(n) {
                Some(map) => write!(f, "element({map})")?,
                None => write!(f, "input({n})")?,
            },
            Origin::Result(n) => write!(f, "result({n})")?,
            Origin::Value(v) => write!(f, "value({v:?})")?,
        }
        for key in self.sub_path() {
            write!(f, ".at({key})")?;
        }
        if self.extra.as_ref().is_some_and(|e| e.transform.is_some()) {
            f.write_str(".map(..)")?;
        }
        Ok(())
    }
}

/// The reactor input `name`.
pub fn input(name: impl Into<Name>) -> Source {
    Source::new(Origin::Input(name.into()))
}

/// The result of the step `name`; the consumer waits for it.
pub fn result(name: impl Into<Name>) -> Source {
    Source::new(Origin::Result(name.into()))
}

/// A constant value.
pub fn value<T: Send + Sync + 'static>(v: T) -> Source {
    Source::new(Origin::Value(Box::new(Value::new(v))))
}

impl Source {
    fn new(origin: Origin) -> Source {
        Source {
            origin,
            extra: None,
        }
    }

    fn extra_mut(&mut self) -> &mut SourceExtra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// The sub-path.
    pub(crate) fn sub_path(&self) -> &[PathKey] {
        self.extra.as_ref().map_or(&[], |e| &e.path)
    }

    /// Whether the value is read as is (no sub-path, no transform).
    pub(crate) fn is_plain(&self) -> bool {
        self.extra.is_none()
    }

    /// Appends one key to the sub-path (a map key, a field or a list index).
    pub fn at(mut self, key: impl Into<PathKey>) -> Source {
        self.extra_mut().path.push(key.into());
        self
    }

    /// Appends several keys to the sub-path.
    pub fn path<K: Into<PathKey>>(mut self, keys: impl IntoIterator<Item = K>) -> Source {
        self.extra_mut()
            .path
            .extend(keys.into_iter().map(Into::into));
        self
    }

    /// Transforms the value (after the sub-path) with a typed function.
    /// A value of another type than `T` fails the step, naming both types.
    pub fn map<T, U, F>(self, f: F) -> Source
    where
        T: 'static,
        U: Send + Sync + 'static,
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        self.try_map(move |t: &T| Ok::<U, BoxError>(f(t)))
    }

    /// Transforms the value with a typed function that may fail.
    pub fn try_map<T, U, F>(mut self, f: F) -> Source
    where
        T: 'static,
        U: Send + Sync + 'static,
        F: Fn(&T) -> Result<U, BoxError> + Send + Sync + 'static,
    {
        self.extra_mut().transform = Some(Arc::new(move |v: &Value| {
            let t = v.get::<T>().map_err(BoxError::from)?;
            f(t).map(Value::new)
        }));
        self
    }

    /// Resolves the sub-path and transform against the raw value.
    pub(crate) fn finish(&self, argument: &str, raw: Value) -> Result<Value, StepErrorKind> {
        let mut current = raw;
        let path = self.sub_path();
        for (i, key) in path.iter().enumerate() {
            // `navigate` may call a user's `Navigate` impl: a panic there is
            // an error of this argument.
            let next =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| current.navigate(key)))
                    .map_err(|panic| StepErrorKind::ArgumentTransform {
                        argument: argument.to_string(),
                        reason: Reason::msg(format!(
                            "navigating to key {key} panicked: {}",
                            crate::error::panic_message(&*panic)
                        )),
                    })?;
            current = match next {
                Some(next) => next,
                None => {
                    let path: Vec<String> = path[..=i].iter().map(ToString::to_string).collect();
                    return Err(StepErrorKind::ArgumentPath {
                        argument: argument.to_string(),
                        key: key.to_string(),
                        path: path.join(", "),
                        value_type: current.type_name(),
                    });
                }
            };
        }
        match self.extra.as_ref().and_then(|e| e.transform.as_ref()) {
            None => Ok(current),
            Some(f) => {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&current)));
                match outcome {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(StepErrorKind::ArgumentTransform {
                        argument: argument.to_string(),
                        reason: Reason::from(e),
                    }),
                    Err(panic) => Err(StepErrorKind::ArgumentTransform {
                        argument: argument.to_string(),
                        reason: Reason::msg(format!(
                            "panicked: {}",
                            crate::error::panic_message(&*panic)
                        )),
                    }),
                }
            }
        }
    }
}

/// A declared argument: a name and its source.
#[derive(Clone, Debug)]
pub struct ArgumentSpec {
    pub(crate) name: Name,
    pub(crate) source: Source,
}

/// The values a step runs with, by argument name.
///
/// Cloning is cheap: the values are shared.
///
/// # Examples
///
/// ```
/// use reactor::{Arguments, Value};
///
/// let args = Arguments::from_pairs("greet", [("name", Value::new("Marty".to_string()))]);
/// assert_eq!(args.get::<String>("name").unwrap(), "Marty");
/// let err = args.get::<i64>("name").unwrap_err();
/// assert!(err.to_string().contains("`name` of step `greet`"));
/// assert!(args.get::<String>("nope").is_err());
/// ```
#[derive(Clone)]
pub struct Arguments {
    /// Shared by every run of the step: only the values are per run.
    names: ArgNames,
    values: Values,
}

/// Where the names of a step's arguments are kept.
#[derive(Clone)]
pub(crate) enum ArgNames {
    /// A planned step's, found through the plan (whose reference count the
    /// coordinator keeps hot), so running a step touches no count of its own.
    Planned(Arc<Plan>, u32),
    /// A step emitted at run time.
    Emitted(Arc<PlannedStep>),
    /// Arguments made by hand.
    Owned(Arc<ArgumentNames>),
}

impl ArgNames {
    fn step(&self) -> &str {
        match self {
            ArgNames::Planned(plan, i) => plan.steps[*i as usize].spec.name(),
            ArgNames::Emitted(step) => step.spec.name(),
            ArgNames::Owned(names) => &names.step,
        }
    }

    /// The name of argument `k`.
    fn name(&self, k: usize) -> &Name {
        match self {
            ArgNames::Planned(plan, i) => plan.steps[*i as usize].arg_name(k),
            ArgNames::Emitted(step) => step.arg_name(k),
            ArgNames::Owned(names) => &names.names[k],
        }
    }
}

/// Argument values: up to two kept inline (most steps take one or two,
/// and then building their arguments allocates nothing), more shared.
#[derive(Clone)]
pub(crate) enum Values {
    Zero,
    One(Value),
    Two([Value; 2]),
    Many(Arc<[Value]>),
}

impl Values {
    fn as_slice(&self) -> &[Value] {
        match self {
            Values::Zero => &[],
            Values::One(v) => std::slice::from_ref(v),
            Values::Two(vs) => vs,
            Values::Many(vs) => vs,
        }
    }

    /// Collects exactly `len` values.
    pub(crate) fn collect(len: usize, mut values: impl Iterator<Item = Value>) -> Values {
        let mut next = || values.next().expect("as many values as announced");
        match len {
            0 => Values::Zero,
            1 => Values::One(next()),
            2 => Values::Two([next(), next()]),
            _ => Values::Many((0..len).map(|_| next()).collect()),
        }
    }
}

impl From<Vec<Value>> for Values {
    fn from(v: Vec<Value>) -> Values {
        let len = v.len();
        Values::collect(len, v.into_iter())
    }
}

/// A step's name and its argument names, in order.
pub(crate) struct ArgumentNames {
    pub(crate) step: Name,
    pub(crate) names: Box<[Name]>,
}

impl Arguments {
    pub(crate) fn new(step: Name, entries: Vec<(Name, Value)>) -> Arguments {
        let (names, values): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        let names = ArgNames::Owned(Arc::new(ArgumentNames {
            step,
            names: names.into(),
        }));
        Arguments::from_parts(names, Values::from(values))
    }

    pub(crate) fn from_parts(names: ArgNames, values: Values) -> Arguments {
        Arguments { names, values }
    }

    /// Builds arguments for `step` from name/value pairs.
    pub fn from_pairs<K: Into<Name>>(
        step: &str,
        pairs: impl IntoIterator<Item = (K, Value)>,
    ) -> Arguments {
        Arguments::new(
            step.into(),
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        )
    }

    /// The step these arguments belong to.
    pub fn step(&self) -> &str {
        self.names.step()
    }

    /// The argument `name` as a `T`; an error names the argument, the step
    /// and both types, or the missing argument.
    pub fn get<T: 'static>(&self, name: &str) -> Result<&T, Error> {
        let v = self.value(name).ok_or_else(|| Error::MissingArgument {
            step: self.names.step().to_string(),
            argument: name.to_string(),
        })?;
        v.downcast_ref::<T>().ok_or_else(|| Error::ArgumentType {
            step: self.names.step().to_string(),
            argument: name.to_string(),
            expected: std::any::type_name::<T>(),
            actual: v.type_name(),
        })
    }

    /// The argument `name`, untyped.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let values = self.values.as_slice();
        (0..values.len())
            .find(|&k| self.names.name(k) == name)
            .map(|k| &values[k])
    }

    /// Whether an argument `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    /// The arguments in declaration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        let values = self.values.as_slice();
        (0..values.len()).map(move |k| (self.names.name(k).as_str(), &values[k]))
    }

    /// The values in declaration order.
    pub fn values(&self) -> &[Value] {
        self.values.as_slice()
    }

    /// How many arguments there are.
    pub fn len(&self) -> usize {
        self.values.as_slice().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// These arguments with `name` set to `value` (replacing an existing one).
    pub fn with(&self, name: impl Into<Name>, value: Value) -> Arguments {
        let name = name.into();
        let mut entries: Vec<(Name, Value)> = self
            .iter()
            .filter(|(n, _)| *n != &*name)
            .map(|(n, v)| (Name::from(n), v.clone()))
            .collect();
        entries.push((name, value));
        Arguments::new(self.names.step().into(), entries)
    }
}

impl fmt::Debug for Arguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
