//! `describe`: a reactor's inputs, steps and their arguments as text.

use std::fmt::Write as _;

use crate::name::is_internal;
use crate::reactor::Reactor;
use crate::step::{Shape, StepSpec};

/// The reactor's name, description, inputs, return step, then each step
/// with its kind and options (a map's batch size and ordering,
/// `cpu_bound`, `run_async false`, `max_retries` when not the default),
/// arguments
/// (`name <- source`) and `wait_for`, nested steps indented under their
/// step.
pub(super) fn describe(reactor: &Reactor) -> String {
    let plan = reactor.plan();
    let mut out = format!("reactor {}\n", plan.name);
    if let Some(text) = &plan.description {
        let _ = writeln!(out, "  {text}");
    }
    let inputs: Vec<&str> = reactor.input_names().collect();
    let _ = writeln!(
        out,
        "inputs: {}",
        if inputs.is_empty() {
            "none".to_string()
        } else {
            inputs.join(", ")
        }
    );
    let _ = writeln!(out, "returns: {}", reactor.return_step());
    out.push_str("steps:\n");
    for planned in &plan.steps {
        step(&mut out, &planned.spec, 1);
    }
    out
}

fn step(out: &mut String, spec: &StepSpec, depth: usize) {
    if is_internal(spec.name()) {
        return;
    }
    let pad = "  ".repeat(depth);
    let shape = spec.def().extras().shape.clone();
    let _ = write!(out, "{pad}{}", spec.name());
    let def = spec.def();
    let mut traits: Vec<String> = shape.iter().map(|s| s.kind().to_string()).collect();
    if let Some(Shape::Map {
        batch_size,
        strict_ordering,
        ..
    }) = shape.as_deref()
    {
        traits.push(format!("batch_size {batch_size}"));
        if !strict_ordering {
            traits.push("unordered".into());
        }
    }
    if def.cpu_bound {
        traits.push("cpu_bound".into());
    }
    if !def.run_async {
        traits.push("run_async false".into());
    }
    // A kind sets its own retries; a step's own, when not the default.
    if shape.is_none() {
        match def.max_retries() {
            None => traits.push("unlimited retries".into()),
            Some(n) if n != crate::step::DEFAULT_MAX_RETRIES => {
                traits.push(format!("max_retries {n}"));
            }
            Some(_) => {}
        }
    }
    if !traits.is_empty() {
        let _ = write!(out, " ({})", traits.join(", "));
    }
    if let Some(text) = spec.description_text() {
        let _ = write!(out, ": {text}");
    }
    out.push('\n');
    for a in &def.arguments {
        if !is_internal(&a.name) {
            let _ = writeln!(out, "{pad}  {} <- {}", a.name, a.source);
        }
    }
    for w in &def.extras().wait_for {
        let _ = writeln!(out, "{pad}  waits for {w}");
    }
    match shape.as_deref() {
        Some(Shape::Map { steps, returns, .. }) => {
            let _ = writeln!(out, "{pad}  per element, returning {returns}:");
            steps.iter().for_each(|s| step(out, s, depth + 2));
        }
        Some(Shape::Nested { steps, .. }) => steps.iter().for_each(|s| step(out, s, depth + 1)),
        Some(Shape::Switch { branches, .. }) => {
            for (label, steps, returns) in branches {
                let returns = returns
                    .as_ref()
                    .map_or(String::new(), |r| format!(", returning {r}"));
                let _ = writeln!(out, "{pad}  branch {label}{returns}:");
                steps.iter().for_each(|s| step(out, s, depth + 2));
            }
        }
        Some(Shape::Reactor { plan, .. }) => {
            let _ = writeln!(out, "{pad}  runs reactor {}", plan.name);
        }
        Some(Shape::Leaf(_)) | None => {}
    }
}
