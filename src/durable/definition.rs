//! A reactor's definition as a durable run sees it: checked for what the
//! journal needs (a codec for every input and step result), written as
//! one line per input and step, and hashed.
//!
//! The lines are journalled with the run, so that resuming it under a
//! changed reactor names the first line that changed instead of only
//! saying that a hash differs.

use std::collections::HashMap;

use crate::codec::Codec;
use crate::error::Error;
use crate::planner::Plan;
use crate::step::{Shape, StepSpec};

/// A reactor's definition, checked for durability.
#[derive(Clone, Debug)]
pub(crate) struct Definition {
    pub(crate) lines: Vec<String>,
    pub(crate) hash: String,
    pub(crate) inputs: HashMap<String, Codec>,
    pub(crate) outputs: HashMap<String, Codec>,
}

impl Definition {
    /// Checks `plan` and describes it; a step or input the journal could
    /// not record is an error naming it.
    pub(crate) fn of(plan: &Plan) -> Result<Definition, Error> {
        let refuse = |problem: String| Error::NotDurable {
            reactor: plan.name.to_string(),
            problem,
        };
        let mut lines = Vec::new();
        let mut inputs = HashMap::new();
        for input in &plan.inputs {
            if input.given {
                lines.push(format!("input {}: given", input.name));
                continue;
            }
            let Some(codec) = input.codec.clone() else {
                return Err(refuse(format!(
                    "input `{}` has no declared type: declare it with `.input_as::<T>(\"{}\")`",
                    input.name, input.name
                )));
            };
            if input.transform.is_some() {
                return Err(refuse(format!(
                    "input `{}` has a transform, which is not journalled",
                    input.name
                )));
            }
            lines.push(format!("input {}: {}", input.name, codec.type_name()));
            inputs.insert(input.name.to_string(), codec);
        }
        let mut outputs = HashMap::new();
        for planned in &plan.steps {
            check_step_name(planned.spec.name()).map_err(refuse)?;
            let (line, codec) = step_line(&planned.spec, planned.can_undo).map_err(refuse)?;
            lines.push(line);
            outputs.insert(planned.spec.name().to_string(), codec);
        }
        let ret = &plan.steps[plan.return_step].spec;
        if matches!(
            ret.def().extras().shape.as_deref(),
            Some(Shape::Switch { .. })
        ) {
            return Err(refuse(format!(
                "its return step `{}` is a switch, whose result's type the journal cannot know \
                 before it runs: return a step that reads it",
                ret.name()
            )));
        }
        lines.push(format!("returns {}", ret.name()));
        let hash = hash_lines(&plan.name, &lines);
        Ok(Definition {
            lines,
            hash,
            inputs,
            outputs,
        })
    }
}

impl Definition {
    /// The codec of input `name`; what is wrong, if there is no such input.
    pub(crate) fn input(&self, name: &str) -> Result<Codec, String> {
        self.inputs
            .get(name)
            .cloned()
            .ok_or_else(|| format!("`{name}` is not an input of the reactor"))
    }

    /// The codec of step `step`'s result; what is wrong, if there is no
    /// such step.
    pub(crate) fn output(&self, step: &str) -> Result<Codec, String> {
        self.outputs
            .get(step)
            .cloned()
            .ok_or_else(|| format!("`{step}` is not a step of the reactor"))
    }
}

/// A step's line of a definition, and its result's codec; what the
/// journal could not record of it, if anything.
pub(crate) fn step_line(spec: &StepSpec, can_undo: bool) -> Result<(String, Codec), String> {
    let extras = spec.def().extras();
    let kind = match extras.shape.as_deref() {
        None => "step".to_string(),
        Some(Shape::Leaf(kind)) => kind.to_string(),
        // Its runs are journalled as runs of their own: their reactor is
        // checked, and its hash is part of this line.
        Some(Shape::Reactor { kind, plan }) => match Definition::of(plan) {
            Ok(inner) => format!("{kind} {}#{}", plan.name, inner.hash),
            Err(Error::NotDurable { reactor, problem }) => {
                return Err(format!(
                    "step `{}` runs the reactor `{reactor}`, which cannot run durably: {problem}",
                    spec.name()
                ))
            }
            Err(e) => return Err(e.to_string()),
        },
        // Its branches' steps join the run when it takes one: each must be
        // journalled as the run's own are, and is part of this line.
        Some(Shape::Switch { branches, .. }) => {
            let mut inner = Vec::new();
            for (label, steps, returns) in branches {
                if let Some(r) = returns
                    .as_ref()
                    .filter(|r| !steps.iter().any(|s| s.name() == r.as_str()))
                {
                    return Err(format!(
                        "step `{}` is a switch whose branch `{label}` returns `{r}`, which is not one of its steps",
                        spec.name()
                    ));
                }
                // The branch's bounds and returned step are part of it.
                inner.push(format!("branch {label} returns {returns:?}"));
                for s in steps {
                    let can_undo = s.resolve().map_err(|e| e.to_string())?.can_undo();
                    let (line, _) = step_line(s, can_undo).map_err(|problem| {
                        format!("step `{}` is a switch whose {problem}", spec.name())
                    })?;
                    inner.push(line);
                }
            }
            format!("switch#{}", hash_lines(spec.name(), &inner))
        }
        // Its elements run as runs of their own, their inputs given again
        // by the map: each nested step must be journalled as the run's
        // own are, and is part of this line.
        Some(Shape::Map {
            steps,
            returns,
            sink,
            ..
        }) => {
            let mut inner = Vec::new();
            for s in steps {
                let can_undo = s.resolve().map_err(|e| e.to_string())?.can_undo();
                let (line, codec) = step_line(s, can_undo).map_err(|problem| {
                    format!("step `{}` is a map whose {problem}", spec.name())
                })?;
                if !sink && s.name() == returns.as_str() && codec.list().is_none() {
                    return Err(format!(
                        "step `{}` is a map returning the results of the map `{returns}`, \
                         which the journal cannot record: return a step that reads them",
                        spec.name()
                    ));
                }
                inner.push(line);
            }
            inner.push(format!("returns {returns} sink {sink}"));
            format!("map#{}", hash_lines(spec.name(), &inner))
        }
        // Its nested steps run as a run of its own, its inputs given again
        // by the step: each must be journalled as the run's own are.
        Some(Shape::Nested { kind, steps, .. }) => {
            let mut inner = Vec::new();
            for s in steps {
                let can_undo = s.resolve().map_err(|e| e.to_string())?.can_undo();
                let (line, _) = step_line(s, can_undo).map_err(|problem| {
                    format!(
                        "step `{}` ({kind}) nests steps the journal cannot hold: {problem}",
                        spec.name()
                    )
                })?;
                inner.push(line);
            }
            format!("{kind}#{}", hash_lines(spec.name(), &inner))
        }
    };
    let Some(codec) = spec.output_codec() else {
        return Err(format!(
            "step `{}` has no declared result type: add `.output::<T>()` to it",
            spec.name()
        ));
    };
    let args: Vec<String> = spec
        .def()
        .arguments
        .iter()
        .map(|a| format!("{}={}", a.name, a.source))
        .collect();
    let waits: Vec<&str> = extras.wait_for.iter().map(|n| &**n).collect();
    let line = format!(
        "{kind} {}({}) waits [{}] undo {can_undo} -> {}",
        spec.name(),
        args.join(", "),
        waits.join(", "),
        codec.type_name()
    );
    Ok((line, codec))
}

/// FNV-1a over the name and lines: stable across builds and platforms.
fn hash_lines(name: &str, lines: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in std::iter::once(name).chain(lines.iter().map(String::as_str)) {
        for b in part.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The first difference between a journalled definition and the current
/// one, in words.
pub(crate) fn first_change(old: &[String], new: &[String]) -> String {
    // What a line is about: `returns`, or a kind and a name.
    let about = |l: &str| -> String {
        if l.starts_with("returns ") {
            return "returns".to_string();
        }
        l.split(['(', ':']).next().unwrap_or(l).to_string()
    };
    if let Some(line) = old.iter().find(|l| !new.contains(l)) {
        let name = about(line);
        return match new.iter().find(|l| about(l) == name) {
            Some(now) => format!("`{line}` is now `{now}`"),
            None => format!("`{line}` is gone"),
        };
    }
    match new.iter().find(|l| !old.contains(l)) {
        Some(line) => format!("`{line}` is new"),
        None => "the order of inputs or steps changed".to_string(),
    }
}

/// A durable step's name may not hold the characters that separate the
/// parts of its nested runs' ids (`parent/step~generation.attempt.place`),
/// so that no two steps' runs share an id.
pub(crate) fn check_step_name(name: &str) -> Result<(), String> {
    match name.chars().find(|c| matches!(c, '/' | '~')) {
        Some(c) => Err(format!(
            "step `{name}` has `{c}` in its name, which a durable run's nested run ids use as a separator"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_change() {
        let old = vec![
            "input a: u32".to_string(),
            "step s(x=input(a)) -> u32".into(),
        ];
        let renamed = vec![
            "input a: u32".to_string(),
            "step s(x=input(b)) -> u32".into(),
        ];
        assert_eq!(
            first_change(&old, &renamed),
            "`step s(x=input(a)) -> u32` is now `step s(x=input(b)) -> u32`"
        );
        let gone = vec!["input a: u32".to_string()];
        assert!(first_change(&old, &gone).contains("is gone"));
        let more = [old.clone(), vec!["step t() -> u8".into()]].concat();
        assert!(first_change(&old, &more).contains("is new"));
        assert_ne!(hash_lines("r", &old), hash_lines("r", &renamed));
        assert_eq!(hash_lines("r", &old), hash_lines("r", &old.clone()));
    }
}
