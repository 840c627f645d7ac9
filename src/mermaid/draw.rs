//! Walks a reactor's steps, scope by scope, writing nodes and subgraphs as
//! it goes and keeping edges for the end (a node belongs to the subgraph
//! where it is first written, so edges come after every node).

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use super::{escape, shorten, state_class, MermaidOptions, CLASS_DEFS};
use crate::argument::Origin;
use crate::name::is_internal;
use crate::name::Name;
use crate::planner::Plan;
use crate::reactor::Reactor;
use crate::recording::{Recording, StepRecord, StepState};
use crate::step::{Shape, StepSpec};

/// The steps of one scope (a reactor, a map's element, a branch) and what
/// their names and inputs resolve to.
struct Scope<'p> {
    parent: Option<&'p Scope<'p>>,
    steps: FxHashMap<Name, String>,
    /// The scope's own inputs (a reactor's or a group's), by name; `None`
    /// when inputs are read from the parent (a branch).
    inputs: Option<FxHashMap<Name, String>>,
    /// The input a map's nested steps read their element from.
    element: Option<(Name, String)>,
}

impl Scope<'_> {
    fn step(&self, name: &str) -> Option<&str> {
        match self.steps.get(name) {
            Some(id) => Some(id),
            None => self.parent?.step(name),
        }
    }

    fn input(&self, name: &str) -> Option<&str> {
        if let Some((element, id)) = &self.element {
            if element == name {
                return Some(id);
            }
        }
        match &self.inputs {
            Some(inputs) => inputs.get(name).map(String::as_str),
            None => self.parent?.input(name),
        }
    }
}

struct Drawer<'a> {
    options: &'a MermaidOptions,
    records: Option<FxHashMap<String, StepRecord>>,
    out: String,
    edges: Vec<String>,
    drawn_edges: HashSet<(String, String, bool)>,
    classes: Vec<(String, StepState)>,
    /// Every step name the definition holds, drawn or not.
    known: HashSet<Name>,
    next: usize,
}

/// The whole diagram.
pub(super) fn diagram(
    reactor: &Reactor,
    options: &MermaidOptions,
    recording: Option<&Recording>,
) -> String {
    let plan = reactor.plan();
    let mut d = Drawer {
        options,
        records: recording.map(|r| r.steps().into_iter().collect()),
        out: format!("flowchart {}\n", options.direction.code()),
        edges: Vec::new(),
        drawn_edges: HashSet::new(),
        classes: Vec::new(),
        known: HashSet::new(),
        next: 0,
    };
    let title = match (&plan.description, options.descriptions) {
        (Some(text), true) => format!("{}: {}", plan.name, text),
        _ => plan.name.to_string(),
    };
    let _ = writeln!(d.out, "    %% reactor {}", escape(&title));
    d.reactor(plan, None, 1, 0);
    if let Some(records) = d.records.take() {
        d.emitted(&records);
        for def in CLASS_DEFS {
            let _ = writeln!(d.out, "    classDef {def}");
        }
        for (id, state) in std::mem::take(&mut d.classes) {
            let _ = writeln!(d.out, "    class {id} {}", state_class(state));
        }
        d.records = Some(records);
    }
    let edges = std::mem::take(&mut d.edges);
    for edge in edges {
        let _ = writeln!(d.out, "    {edge}");
    }
    d.out
}

impl Drawer<'_> {
    fn id(&mut self, prefix: char) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next - 1)
    }

    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// A planned reactor's inputs and steps, in the current subgraph.
    fn reactor(&mut self, plan: &Plan, parent: Option<&Scope<'_>>, depth: usize, level: usize) {
        let mut inputs = FxHashMap::default();
        for input in &plan.inputs {
            let id = self.id('i');
            self.line(depth, &format!("{id}[/\"{}\"/]", escape(&input.name)));
            inputs.insert(input.name.clone(), id);
        }
        let steps = specs(plan);
        let returns = plan.steps[plan.return_step].spec.name_arc().clone();
        self.scope(
            &steps,
            Some(&returns),
            parent,
            Some(inputs),
            None,
            depth,
            level,
        );
    }

    /// Steps of one scope: their nodes (or subgraphs), then their edges.
    #[allow(clippy::too_many_arguments)]
    fn scope(
        &mut self,
        steps: &[StepSpec],
        returns: Option<&Name>,
        parent: Option<&Scope<'_>>,
        inputs: Option<FxHashMap<Name, String>>,
        element: Option<(Name, String)>,
        depth: usize,
        level: usize,
    ) {
        let mut scope = Scope {
            parent,
            steps: FxHashMap::default(),
            inputs,
            element,
        };
        for s in steps {
            let id = self.id('n');
            scope.steps.insert(s.name_arc().clone(), id);
        }
        for s in steps {
            self.known.insert(s.name_arc().clone());
            let id = scope.steps[s.name()].clone();
            self.step(s, &id, &scope, depth, level);
        }
        if let Some(r) = returns.and_then(|r| scope.steps.get(r).cloned()) {
            let id = self.id('r');
            self.line(depth, &format!("{id}([\"return\"])"));
            self.edge(&r, &id, None, false);
        }
        for s in steps {
            let to = scope.steps[s.name()].clone();
            self.arguments(s, &to, &scope, depth);
        }
    }

    /// One step: a node, or a subgraph of what it nests.
    fn step(&mut self, s: &StepSpec, id: &str, scope: &Scope<'_>, depth: usize, level: usize) {
        let shape = s.def().extras().shape.clone();
        let expand = self.options.expand && level < self.options.max_depth;
        let label = self.label(s, shape.as_deref());
        match shape.as_deref() {
            Some(
                shape @ (Shape::Map { .. }
                | Shape::Reactor { .. }
                | Shape::Switch { .. }
                | Shape::Nested { .. }),
            ) if expand => {
                self.line(depth, &format!("subgraph {id} [\"{label}\"]"));
                self.nested(shape, scope, depth + 1, level + 1);
                self.line(depth, "end");
            }
            Some(Shape::Leaf(_)) | None => self.line(depth, &format!("{id}[\"{label}\"]")),
            Some(shape) => {
                self.line(depth, &format!("{id}[[\"{label}\"]]"));
                self.walk_names(shape);
            }
        }
        if let Some(state) = self.state_of(s.name()) {
            self.classes.push((id.to_string(), state));
        }
    }

    /// The inside of an expanded nesting step.
    fn nested(&mut self, shape: &Shape, scope: &Scope<'_>, depth: usize, level: usize) {
        match shape {
            Shape::Leaf(_) => {}
            Shape::Map {
                steps,
                returns,
                element,
                ..
            } => {
                let id = self.id('e');
                self.line(depth, &format!("{id}[/\"element\"/]"));
                let element = Some((element.clone(), id));
                self.scope(
                    steps,
                    Some(returns),
                    Some(scope),
                    None,
                    element,
                    depth,
                    level,
                );
            }
            Shape::Reactor { plan, .. } => self.reactor(plan, None, depth, level),
            Shape::Switch { branches, .. } => {
                for (label, steps, returns) in branches {
                    let id = self.id('b');
                    self.line(depth, &format!("subgraph {id} [\"{}\"]", escape(label)));
                    self.scope(
                        steps,
                        returns.as_ref(),
                        Some(scope),
                        None,
                        None,
                        depth + 1,
                        level,
                    );
                    self.line(depth, "end");
                }
            }
            Shape::Nested { steps, .. } => {
                // Nested steps read the group's arguments as inputs.
                let names: BTreeSet<Name> = steps
                    .iter()
                    .flat_map(|s| s.def().arguments.iter())
                    .filter_map(|a| match &a.source.origin {
                        Origin::Input(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                let mut inputs = FxHashMap::default();
                for name in names {
                    let id = self.id('i');
                    self.line(depth, &format!("{id}[/\"{}\"/]", escape(&name)));
                    inputs.insert(name, id);
                }
                self.scope(steps, None, Some(scope), Some(inputs), None, depth, level);
            }
        }
    }

    /// Records the names a collapsed nesting step holds.
    fn walk_names(&mut self, shape: &Shape) {
        shape.for_each_nested(&mut |s| {
            self.known.insert(s.name_arc().clone());
        });
    }

    /// A step's argument and `wait_for` edges.
    fn arguments(&mut self, s: &StepSpec, to: &str, scope: &Scope<'_>, depth: usize) {
        for a in &s.def().arguments {
            if is_internal(&a.name) {
                continue;
            }
            let label = self.options.arguments.then(|| a.name.as_str());
            let from = match &a.source.origin {
                Origin::Input(n) => scope.input(n).map(str::to_string),
                Origin::Result(n) => scope.step(n).map(str::to_string),
                Origin::Value(v) if self.options.arguments => {
                    let id = self.id('c');
                    let text = shorten(&format!("{v:?}"), 40);
                    self.line(depth, &format!("{id}{{{{\"{}\"}}}}", escape(&text)));
                    Some(id)
                }
                Origin::Value(_) => None,
            };
            if let Some(from) = from {
                self.edge(&from, to, label, false);
            }
        }
        for w in &s.def().extras().wait_for {
            if let Some(from) = scope.step(w).map(str::to_string) {
                self.edge(&from, to, None, true);
            }
        }
    }

    fn edge(&mut self, from: &str, to: &str, label: Option<&str>, dotted: bool) {
        let arrow = if dotted { "-.->" } else { "-->" };
        match label {
            Some(l) => self
                .edges
                .push(format!("{from} {arrow}|\"{}\"| {to}", escape(l))),
            None => {
                if self
                    .drawn_edges
                    .insert((from.to_string(), to.to_string(), dotted))
                {
                    self.edges.push(format!("{from} {arrow} {to}"));
                }
            }
        }
    }

    /// A step's label: its name, its kind, its description, its run.
    fn label(&self, s: &StepSpec, shape: Option<&Shape>) -> String {
        let mut label = escape(s.name());
        if let Some(kind) = shape.map(Shape::kind) {
            let _ = write!(label, "<br/><i>{kind}</i>");
        }
        if let (true, Some(text)) = (self.options.descriptions, s.description_text()) {
            let _ = write!(label, "<br/>{}", escape(&shorten(text, 60)));
        }
        if let Some(records) = &self.records {
            let record = records.get(s.name());
            let _ = write!(label, "<br/>{}", escape(&run_summary(record)));
        }
        label
    }

    fn state_of(&self, name: &str) -> Option<StepState> {
        let records = self.records.as_ref()?;
        Some(
            records
                .get(name)
                .map_or(StepState::NeverRan, StepRecord::state),
        )
    }

    /// Steps the run recorded that the definition does not hold: added
    /// while it ran.
    fn emitted(&mut self, records: &FxHashMap<String, StepRecord>) {
        let mut extra: Vec<(&String, &StepRecord)> = records
            .iter()
            .filter(|(n, _)| !is_internal(n) && !self.known.contains(n.as_str()))
            .collect();
        if extra.is_empty() {
            return;
        }
        extra.sort_by_key(|(n, r)| (r.first_start, n.as_str()));
        let group = self.id('g');
        self.line(1, &format!("subgraph {group} [\"added while running\"]"));
        for (name, record) in extra {
            let id = self.id('n');
            let label = format!(
                "{}<br/>{}",
                escape(name),
                escape(&run_summary(Some(record)))
            );
            self.line(2, &format!("{id}[\"{label}\"]"));
            self.classes.push((id, record.state()));
        }
        self.line(1, "end");
    }
}

/// A plan's step definitions, in declaration order.
fn specs(plan: &Plan) -> Vec<StepSpec> {
    plan.steps.iter().map(|s| s.spec.clone()).collect()
}

/// "done · 1.2ms", or "done 98 · failed 2 · 1.2s" for a step run often.
fn run_summary(record: Option<&StepRecord>) -> String {
    let Some(r) = record else {
        return StepState::NeverRan.label().to_string();
    };
    if r.ended() <= 1 {
        return format!("{} · {:.1?}", r.state().label(), r.busy);
    }
    let counts = [
        ("done", r.done),
        ("failed", r.failed),
        ("undone", r.undone),
        ("skipped", r.skipped),
        ("halted", r.halted),
        ("abandoned", r.abandoned),
    ];
    let mut text = String::new();
    for (word, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
        let _ = write!(text, "{word} {n} · ");
    }
    let _ = write!(text, "{:.1?}", r.busy);
    text
}
