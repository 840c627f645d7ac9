//! `map`: nested steps run once per element of a collection or stream.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::argument::{input, result, Arguments, Origin, Source};
use crate::context::Context;
use crate::error::{BoxError, Error, Reason};
use crate::executor::{run_elements, Elements, ElementsFailed, UndoStack};
use crate::name::Name;
use crate::reactor::Reactor;
use crate::step::{step, Outcome, Shape, Step, StepSpec, UndoOutcome};
use crate::value::Value;

mod durable;

/// The current element of the map named `map`, for its nested steps
/// (sub-paths work as for any source: `element("m").at("id")`).
pub fn element(map: impl Into<Name>) -> Source {
    input(element_input(&map.into()))
}

const ELEMENT: &str = "__element__";

fn element_input(map: &str) -> String {
    format!("{ELEMENT}{map}")
}

/// The map whose element the input `input` carries, if it is one.
pub(crate) fn element_of(input: &str) -> Option<&str> {
    input.strip_prefix(ELEMENT)
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
    #[error("map `{map}` cannot iterate a `{type_name}`: declare the type of its elements with `.items::<T>()` for a `Vec<T>`, or give a `Vec<Value>`, a JSON array or a `MapSource`")]
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
    /// An element failed; every completed undoable step of every element
    /// was undone.
    #[error("map `{map}`: element {index} failed: {reason}")]
    Element {
        /// The map.
        map: String,
        /// The element's position in the source, from 0.
        index: u64,
        /// Why (the run error of the map's elements).
        reason: Reason,
    },
    /// The map's elements failed, not in an element of their own (a
    /// middleware panic, say); every completed undoable step was undone.
    #[error("map `{map}` failed: {reason}")]
    Failed {
        /// The map.
        map: String,
        /// Why.
        reason: Reason,
    },
    /// A step inside the map halted: elements cannot halt the run.
    #[error("map `{map}`: a step of its elements halted, which a map does not support")]
    Halted {
        /// The map.
        map: String,
    },
}

use crate::executor::Sink;

/// Turns a source value into elements, for a declared element type.
type Items = Arc<dyn Fn(&Value) -> Option<BoxStream<'static, Value>> + Send + Sync>;

/// A map under construction; [`Map::into_step`] makes the step.
///
/// For each element of the source (a `Vec<Value>`, a `Vec<T>` of a type
/// declared with [`Map::items`], a JSON array, or a [`MapSource`] iterator
/// or stream), the nested steps run with the element ([`element`]) and the
/// map's other arguments as inputs; the `returns` step's result is the
/// element's output. Nested steps may also read results of steps outside
/// the map (`result("outer")`): they become arguments of the map.
///
/// The elements' steps run in a run of their own nested in the map's,
/// under exactly the rules of a reactor's steps (retries, backoff,
/// compensation, guards, emitted steps and switches, timeouts), sharing
/// the run's concurrency limit, pool (and the map step's own slot),
/// context and middleware. At most `batch_size` elements are in flight at
/// once and the source is pulled lazily. Outputs are collected in source
/// order (`strict_ordering`, the default) or in completion order; or, with
/// [`Map::sink`], handed to a sink one by one instead of collected, so
/// memory stays bounded by the batch size whatever the size of the data.
///
/// A failing element fails the map (naming the element) after the
/// elements in flight have finished; every completed undoable step of
/// every element is undone, newest first. A completed map is undone the
/// same way when a later step fails.
///
/// In a durable run ([`crate::durable`]) each element is a durable run of
/// its own, so a crash mid-map keeps the elements that completed; the
/// rules are the same.
///
/// # Examples
///
/// ```
/// use reactor::kinds::{element, map};
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let doubled = map("double_all", input("numbers"))
///     .items::<i64>()
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
    items: Option<Items>,
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
        allow_async: true,
        sink: None,
        items: None,
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

    /// How many elements may be in flight at once (default 100; at least 1).
    pub fn batch_size(mut self, n: usize) -> Map {
        self.batch_size = n.max(1);
        self
    }

    /// Outputs in source order (the default) or in completion order.
    pub fn strict_ordering(mut self, strict: bool) -> Map {
        self.strict_ordering = strict;
        self
    }

    /// Whether the nested steps may run off the map's coordinator, in
    /// tasks of their own or in chunks, so that elements run concurrently
    /// (default: yes, when the run is async). `false` runs them one at a
    /// time in the map's coordinator.
    pub fn allow_async(mut self, allow: bool) -> Map {
        self.allow_async = allow;
        self
    }

    /// Declares the source a `Vec<T>` (of any clonable type): each element
    /// is a clone of one item.
    ///
    /// ```
    /// use reactor::kinds::{element, map};
    /// use reactor::{input, step};
    ///
    /// #[derive(Clone)]
    /// struct Record { id: u64 }
    ///
    /// let m = map("ids", input("records"))
    ///     .items::<Record>()
    ///     .steps([step("id").argument("r", element("ids")).run_sync(|a, _| Ok(a.get::<Record>("r")?.id))]);
    /// # let _ = m;
    /// ```
    pub fn items<T: Clone + Send + Sync + 'static>(mut self) -> Map {
        self.items = Some(Arc::new(|source: &Value| {
            if !source.is::<Vec<T>>() {
                return None;
            }
            Some(shared_items::<T>(source.clone()))
        }));
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
        // arguments of the map, passed to each element as inputs; outside
        // steps they wait for, the map waits for.
        let inner: BTreeSet<Name> = self.steps.iter().map(|s| s.name_arc().clone()).collect();
        let mut outer: Vec<Name> = Vec::new();
        let mut waits: BTreeSet<Name> = BTreeSet::new();
        let shape = Shape::Map {
            steps: self.steps.clone(),
            returns: returns.clone(),
            element: element_input(&self.name).into(),
            batch_size: self.batch_size,
            strict_ordering: self.strict_ordering,
            sink: self.sink.is_some(),
        };
        let mut map = self;
        map.steps = std::mem::take(&mut map.steps)
            .into_iter()
            .map(|s| {
                let (s, outside) = s.without_waits_outside(&inner);
                waits.extend(outside);
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
            .shaped(shape)
            .argument("source", source)
            .implementation(MapStep {
                map: Arc::new(map),
                returns,
            });
        for n in outer {
            spec = spec.argument(outer_input(&n), result(n));
        }
        for n in waits {
            spec = spec.wait_for(n);
        }
        Ok(spec)
    }
}

/// The items of a shared `Vec<T>`, cloned one at a time.
fn shared_items<T: Clone + Send + Sync + 'static>(shared: Value) -> BoxStream<'static, Value> {
    let len = shared.get::<Vec<T>>().map(Vec::len).unwrap_or(0);
    stream::iter(
        (0..len).map(move |i| {
            Value::new(shared.get::<Vec<T>>().expect("checked when made")[i].clone())
        }),
    )
    .boxed()
}

struct MapStep {
    map: Arc<Map>,
    returns: Name,
}

/// The undo stack of a completed map's elements.
struct MapUndo(Mutex<Option<UndoStack>>);

impl MapStep {
    /// The reactor of each element: its inputs are the element and the
    /// map's other arguments.
    fn element_reactor(&self, args: &Arguments) -> Result<Reactor, crate::Error> {
        // Given again by the map whenever an element runs (a durable
        // element run does not journal them).
        let mut b = Reactor::builder(format!("{}/element", self.map.name));
        b.input_given(element_input(&self.map.name));
        for (name, _) in args.iter().filter(|(n, _)| *n != "source") {
            b.input_given(name);
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
        if let Some(items) = self.map.items.as_ref().and_then(|items| items(source)) {
            return Ok(items);
        }
        if source.is::<Vec<Value>>() {
            return Ok(shared_items::<Value>(source.clone()));
        }
        if let Some(serde_json::Value::Array(items)) = source.downcast_ref::<serde_json::Value>() {
            let items = items.clone();
            return Ok(stream::iter(items.into_iter().map(Value::json)).boxed());
        }
        macro_rules! typed_vec {
            ($($t:ty),*) => {$(
                if source.is::<Vec<$t>>() {
                    return Ok(shared_items::<$t>(source.clone()));
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

    fn error(&self, e: MapError) -> Outcome {
        Outcome::Error(Reason::new(e))
    }
}

#[async_trait]
impl Step for MapStep {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let map = self.map.name.to_string();
        let source = args
            .value("source")
            .expect("a map reads its source")
            .clone();
        let stream = match self.elements(&source) {
            Ok(e) => e,
            Err(e) => return self.error(e),
        };
        let reactor = match self.element_reactor(&args) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(Reason::new(e)),
        };
        if ctx.durable() {
            return self.run_durable(&args, &ctx, stream, reactor).await;
        }
        // The element plan's inputs: the element (first, filled per
        // element), then the map's other arguments.
        let mut inputs = vec![Value::unit()];
        inputs.extend(
            args.iter()
                .filter(|(n, _)| *n != "source")
                .map(|(_, v)| v.clone()),
        );
        let elements = Elements {
            stream,
            batch: self.map.batch_size,
            ordered: self.map.strict_ordering,
            sink: self.map.sink.clone(),
            element_input: 0,
        };
        let run_async = self.map.allow_async && ctx.is_async();
        let plan = reactor.plan().clone();
        match run_elements(&ctx, plan, inputs, elements, run_async).await {
            Ok((value, undo)) if undo.is_empty() => Outcome::Ok(value),
            Ok((value, undo)) => Outcome::OkWithUndo {
                value,
                undo: Value::new(MapUndo(Mutex::new(Some(undo)))),
            },
            Err(ElementsFailed::Run(error, Some(index))) => self.error(MapError::Element {
                map,
                index,
                reason: Reason::new(Error::Run(error)),
            }),
            Err(ElementsFailed::Run(error, None)) => self.error(MapError::Failed {
                map,
                reason: Reason::new(Error::Run(error)),
            }),
            Err(ElementsFailed::Halted(None)) => self.error(MapError::Halted { map }),
            Err(ElementsFailed::Halted(Some(error))) => self.error(MapError::Failed {
                map: map.clone(),
                reason: Reason::msg(format!("{}; {}", MapError::Halted { map }, error)),
            }),
            Err(ElementsFailed::Start(e)) => Outcome::Error(Reason::new(e)),
        }
    }

    async fn undo(&self, value: Value, args: Arguments, ctx: Context) -> UndoOutcome {
        if !value.is::<MapUndo>() {
            // A durable map's element runs: in memory, or in their journals.
            if crate::kinds::nested::needs_journals(&value, &ctx) {
                return self.undo_durable(&value, &args, &ctx).await;
            }
            return crate::kinds::nested::undo(&value, &ctx, None).await;
        }
        let undo = value
            .downcast_ref::<MapUndo>()
            .and_then(|u| u.0.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(mut undo) = undo else {
            return UndoOutcome::Done;
        };
        match undo.undo_run(ctx.run_id()).await {
            Ok(()) => UndoOutcome::Done,
            Err(e) => UndoOutcome::Error(Reason::new(e)),
        }
    }
}
