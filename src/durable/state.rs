//! A [`RunState`] as JSON: a halted run saved by one process and resumed
//! by another, without a journal.
//!
//! Its values are encoded with the reactor's declared types (the rules of
//! [`Runtime::register`](super::Runtime::register)); undo records are
//! saved without their arguments, which are rebuilt from the state's
//! inputs and results when the run resumes. Context values are not saved
//! (give them again on the resumed run), nor are steps emitted at run time
//! (a state holding any is refused).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::definition::{first_change, Definition};
use crate::error::Error;
use crate::executor::{RunState, UndoRecord, Unfinished};
use crate::reactor::Reactor;
use crate::value::{Value, ValueMap};

#[derive(Serialize, Deserialize)]
struct Saved {
    reactor: String,
    def_hash: String,
    definition: Vec<String>,
    run_id: String,
    inputs: BTreeMap<String, serde_json::Value>,
    completed: Vec<String>,
    results: BTreeMap<String, serde_json::Value>,
    undo_stack: Vec<SavedUndo>,
    retries: BTreeMap<String, u32>,
    abandoned: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct SavedUndo {
    step: String,
    /// `None`: the step was abandoned part-way ([`Unfinished`]).
    value: Option<serde_json::Value>,
}

/// What the state cannot hold, as the error naming the reactor.
fn refuse(reactor: &str, problem: String) -> Error {
    Error::NotDurable {
        reactor: reactor.to_string(),
        problem: format!("the state holds {problem}"),
    }
}

impl RunState {
    /// The state as JSON, its values encoded with the types the reactor
    /// declares ([`StepSpec::output`](crate::StepSpec::output),
    /// [`Builder::input_as`](crate::Builder::input_as)).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::{input, result, step, Inputs, Outcome, Reactor, RunState, Value};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
    /// let r = Reactor::builder("pause")
    ///     .input_as::<u32>("n")
    ///     .add(step("wait").argument("n", input("n")).output::<u32>()
    ///         .run_sync(|a, _| Ok(Outcome::Halt(Value::new(*a.get::<u32>("n")?)))))
    ///     .add(step("next").argument("n", result("wait")).output::<u32>()
    ///         .run_sync(|a, _| Ok(*a.get::<u32>("n")? + 1)))
    ///     .returns("next")
    ///     .build()?;
    /// let halted = r.run(Inputs::new().with("n", 41_u32)).outcome().await?.halted().unwrap();
    /// let saved = halted.into_state().to_json(&r)?.to_string();
    /// // ... in another process:
    /// let state = RunState::from_json(&r, serde_json::from_str(&saved).unwrap())?;
    /// assert_eq!(*r.resume(state).await?.get::<u32>()?, 42);
    /// # Ok(()) }
    /// ```
    pub fn to_json(&self, reactor: &Reactor) -> Result<serde_json::Value, Error> {
        let def = Definition::of(reactor.plan())?;
        let name = reactor.name();
        if let Some(spec) = self.emitted.first() {
            let problem = format!("the emitted step `{}`", spec.name());
            return Err(refuse(name, problem));
        }
        let mut inputs = BTreeMap::new();
        for (k, v) in &self.inputs {
            if let Some(codec) = def.inputs.get(k) {
                inputs.insert(k.clone(), codec.encode(v)?);
            }
        }
        let mut results = BTreeMap::new();
        for (k, v) in &self.results {
            let codec = def.output(k).map_err(|p| refuse(name, p))?;
            results.insert(k.clone(), codec.encode(v)?);
        }
        let mut undo_stack = Vec::new();
        for rec in &self.undo_stack {
            if rec.emitted.is_some() {
                let problem = format!("the emitted step `{}` on its undo stack", rec.step);
                return Err(refuse(name, problem));
            }
            let value = match rec.value.is::<Unfinished>() {
                true => None,
                false => {
                    let codec = def.output(&rec.step).map_err(|p| refuse(name, p))?;
                    Some(codec.encode(&rec.value)?)
                }
            };
            undo_stack.push(SavedUndo {
                step: rec.step.clone(),
                value,
            });
        }
        let saved = Saved {
            reactor: name.to_string(),
            def_hash: def.hash,
            definition: def.lines,
            run_id: self.run_id.clone(),
            inputs,
            completed: self.completed.clone(),
            results,
            undo_stack,
            retries: self.retries.clone(),
            abandoned: self.abandoned.clone(),
        };
        serde_json::to_value(saved).map_err(|e| Error::Codec {
            type_name: "RunState",
            message: e.to_string(),
        })
    }

    /// A state saved with [`RunState::to_json`], for `reactor`: refused,
    /// naming the first change, if the reactor's definition changed.
    pub fn from_json(reactor: &Reactor, json: serde_json::Value) -> Result<RunState, Error> {
        let def = Definition::of(reactor.plan())?;
        let saved: Saved = serde_json::from_value(json).map_err(|e| Error::Codec {
            type_name: "RunState",
            message: e.to_string(),
        })?;
        if saved.def_hash != def.hash || saved.reactor != reactor.name() {
            return Err(Error::DefinitionChanged {
                run_id: saved.run_id,
                reactor: saved.reactor,
                changed: first_change(&saved.definition, &def.lines),
            });
        }
        let name = reactor.name();
        let mut inputs = ValueMap::new();
        for (k, v) in saved.inputs {
            let codec = def.input(&k).map_err(|p| refuse(name, p))?;
            inputs.insert(k, codec.decode(v)?);
        }
        let mut results = ValueMap::new();
        for (k, v) in saved.results {
            let codec = def.output(&k).map_err(|p| refuse(name, p))?;
            results.insert(k, codec.decode(v)?);
        }
        let mut undo_stack = Vec::new();
        for u in saved.undo_stack {
            let value = match u.value {
                None => Value::new(Unfinished),
                Some(v) => def
                    .output(&u.step)
                    .map_err(|p| refuse(name, p))?
                    .decode(v)?,
            };
            undo_stack.push(UndoRecord::without_arguments(u.step, value));
        }
        Ok(RunState {
            run_id: saved.run_id,
            inputs,
            context: ValueMap::new(),
            completed: saved.completed,
            results,
            undo_stack,
            emitted: Vec::new(),
            retries: saved.retries,
            abandoned: saved.abandoned,
        })
    }
}
