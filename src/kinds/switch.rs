//! `switch`: branches chosen by predicates on a value.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::argument::{result, Origin, Source};
use crate::name::Name;
use crate::step::{step, Outcome, Shape, StepSpec, SwitchEmit};
use crate::value::Value;

type Predicate = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The kind of the steps a switch emits, as a durable run journals them.
pub(crate) const SWITCH_KIND: &str = "reactor:switch";

/// The steps a switch emits for branch `k`: the branch's steps, reading
/// the outside results `outside` finds as values, and the switch's
/// replacement, which waits for them and carries the returned step's
/// result (with its type, for the journal), or the unit value.
fn emitter(name: Name, branches: Vec<Branch>, outer: BTreeSet<Name>) -> SwitchEmit {
    Arc::new(move |k, outside| {
        let branch = &branches[k];
        let rewrite = |source: &mut crate::argument::Source| {
            if let Origin::Result(n) = &source.origin {
                if outer.contains(n) {
                    if let Some(v) = outside(n) {
                        source.origin = Origin::Value(Box::new(v));
                    }
                }
            }
        };
        let mut emitted: Vec<StepSpec> = branch
            .steps
            .iter()
            .map(|s| s.clone().rewrite_sources(rewrite))
            .collect();
        // The switch's replacement waits for the branch and carries its
        // result, so the switch's dependents see the branch's outcome.
        let mut done = step(name.clone()).max_retries(0);
        for s in &branch.steps {
            done = done.wait_for(s.name_arc().clone());
        }
        let done = match &branch.returns {
            Some(r) => {
                let codec = branch
                    .steps
                    .iter()
                    .find(|s| s.name() == r.as_str())
                    .and_then(StepSpec::output_codec);
                done.argument("value", result(r.clone()))
                    .with_codec(codec)
                    .run_sync(|a, _| Ok(a.value("value").expect("read above").clone()))
            }
            None => done.output::<()>().run_sync(|_, _| Ok(Value::unit())),
        };
        emitted.push(done);
        emitted
    })
}

/// The step `name` that the switch `switch` emitted for branch `k`, rebuilt
/// for a durable run taken up from its journal (`outside` finds the
/// results its branches read).
pub(crate) fn rebuild(
    switch: &StepSpec,
    k: usize,
    name: &str,
    outside: &dyn Fn(&str) -> Option<Value>,
) -> Option<StepSpec> {
    let Some(Shape::Switch { emit, branches, .. }) = switch.def().extras().shape.as_deref() else {
        return None;
    };
    if k >= branches.len() {
        return None;
    }
    emit(k, outside).into_iter().find(|s| s.name() == name)
}

#[derive(Clone)]
struct Branch {
    matches: Option<Predicate>,
    steps: Vec<StepSpec>,
    returns: Option<Name>,
}

/// The switch's argument carrying an outside result its branches read.
fn nested_argument(step: &str) -> String {
    format!("__nested__{step}")
}

/// A switch under construction; [`Switch::into_step`] makes the step.
///
/// The switch evaluates `on`, tries each branch's predicate in order, and
/// adds the first matching branch's steps (or the default branch's, if
/// none matches) to the running reactor. The switch's result is the
/// result of the branch's `returns` step, or the unit value; either way
/// its dependents wait until the chosen branch's steps are done. Branch
/// steps may read the reactor's inputs and any step outside the switch:
/// the switch keeps those results for them.
///
/// # Examples
///
/// ```
/// use reactor::kinds::switch;
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let reactor = Reactor::builder("sign")
///     .input("n")
///     .add(
///         switch("sign", input("n"))
///             .branch(
///                 |v| *v.get::<i64>().unwrap() < 0,
///                 [step("negative").run_sync(|_, _| Ok("negative"))],
///                 Some("negative"),
///             )
///             .default([step("positive").run_sync(|_, _| Ok("positive"))], Some("positive"))
///             .into_step(),
///     )
///     .returns("sign")
///     .build()?;
/// let out = reactor.run(Inputs::new().with("n", -3_i64)).await?;
/// assert_eq!(*out.get::<&str>()?, "negative");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Switch {
    name: Name,
    on: Source,
    branches: Vec<Branch>,
    default: Option<Branch>,
}

/// Starts a switch named `name` on the value of `on`.
pub fn switch(name: impl Into<Name>, on: Source) -> Switch {
    Switch {
        name: name.into(),
        on,
        branches: Vec::new(),
        default: None,
    }
}

impl Switch {
    /// Adds a branch taken when `matches` holds for the value; `returns`
    /// names the branch step whose result becomes the switch's.
    pub fn branch<F>(
        mut self,
        matches: F,
        steps: impl IntoIterator<Item = StepSpec>,
        returns: Option<&str>,
    ) -> Switch
    where
        F: Fn(&Value) -> bool + Send + Sync + 'static,
    {
        self.branches.push(Branch {
            matches: Some(Arc::new(matches)),
            steps: steps.into_iter().collect(),
            returns: returns.map(Name::from),
        });
        self
    }

    /// Sets the branch taken when no other matches.
    pub fn default(
        mut self,
        steps: impl IntoIterator<Item = StepSpec>,
        returns: Option<&str>,
    ) -> Switch {
        self.default = Some(Branch {
            matches: None,
            steps: steps.into_iter().collect(),
            returns: returns.map(Name::from),
        });
        self
    }

    /// The switch as a step.
    pub fn into_step(self) -> StepSpec {
        let name = self.name.clone();
        // Results the branches read from outside the switch: the switch
        // reads them (so it waits for them), and hands them to the branch
        // steps it emits as values, so branch steps never look outside the
        // run they join (inside a map, say). Outside steps a branch step
        // waits for, the switch waits for.
        let inner: BTreeSet<Name> = self
            .branches
            .iter()
            .chain(&self.default)
            .flat_map(|b| b.steps.iter().map(|s| s.name_arc().clone()))
            .collect();
        let mut outer: BTreeSet<Name> = self
            .branches
            .iter()
            .chain(&self.default)
            .flat_map(|b| b.steps.iter())
            .flat_map(|s| s.def().arguments.iter())
            .filter_map(|a| match &a.source.origin {
                Origin::Result(n) if !inner.contains(n) && *n != name => Some(n.clone()),
                _ => None,
            })
            .collect();
        let drawn: Vec<(String, Vec<StepSpec>, Option<Name>)> = self
            .branches
            .iter()
            .enumerate()
            .map(|(k, b)| (format!("branch {}", k + 1), b))
            .chain(self.default.iter().map(|b| ("default".to_string(), b)))
            .map(|(label, b)| (label, b.steps.clone(), b.returns.clone()))
            .collect();
        let mut waits: BTreeSet<Name> = BTreeSet::new();
        let strip = |b: Branch, waits: &mut BTreeSet<Name>| Branch {
            steps: b
                .steps
                .into_iter()
                .map(|s| {
                    let (s, outside) = s.without_waits_outside(&inner);
                    waits.extend(outside);
                    s
                })
                .collect(),
            ..b
        };
        let mut branches: Vec<Branch> = self
            .branches
            .into_iter()
            .map(|b| strip(b, &mut waits))
            .collect();
        // The default goes last: branch `k` is `branches[k]` everywhere.
        let default = self.default.map(|b| strip(b, &mut waits));
        let has_default = default.is_some();
        branches.extend(default);
        outer.extend(waits.iter().filter(|n| **n != name).cloned());
        let matches: Vec<Option<Predicate>> = branches.iter().map(|b| b.matches.clone()).collect();
        let emit = emitter(name.clone(), branches, outer.clone());
        let mut spec = step(name.clone())
            .max_retries(0)
            .shaped(Shape::Switch {
                branches: drawn,
                emit: emit.clone(),
            })
            .output::<()>()
            .argument("on", self.on.clone());
        for dep in &outer {
            spec = spec.argument(nested_argument(dep), result(dep.clone()));
        }
        spec.run_sync(move |args, ctx| {
            let on = args.value("on").expect("the switch reads `on`");
            let chosen = matches
                .iter()
                .position(|m| m.as_ref().is_some_and(|m| m(on)))
                .or(has_default.then(|| matches.len() - 1));
            let Some(k) = chosen else {
                return Ok(Outcome::Ok(Value::unit()));
            };
            let outside = |n: &str| args.value(&nested_argument(n)).cloned();
            let mut emitted = emit(k, &outside);
            if ctx.durable() {
                // A durable run journals which branch it took; the switch
                // rebuilds the steps from it (`rebuild`).
                emitted = emitted
                    .into_iter()
                    .map(|s| s.described(SWITCH_KIND, k))
                    .collect();
            }
            Ok(Outcome::OkWithSteps(Value::unit(), emitted))
        })
    }
}
