//! `run --progress`: progress bars on the terminal (`indicatif`), fed by
//! the run's events: steps done of those known (the count grows as steps
//! are added while running), and for each map, its elements done.
//!
//! Steps are told apart by name: a map's element is counted when the
//! map's returned step completes (or is recovered by compensation), so a
//! step named like a map's returned step elsewhere counts there too.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::event::{Event, EventKind};
use crate::middleware::Middleware;
use crate::name::is_internal;
use crate::reactor::Reactor;
use crate::step::Shape;

/// The bars, and which steps they count.
pub(super) struct Progress {
    steps: ProgressBar,
    /// A bar per map, by the name of its returned (per element) step.
    elements: BTreeMap<String, ProgressBar>,
    /// The reactor's own steps.
    top: HashSet<String>,
    /// Steps nested in the reactor's steps (map elements', groups',
    /// branches'), which may run under the same run id.
    nested: HashSet<String>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    root: Option<String>,
    done: HashSet<String>,
    known: HashSet<String>,
}

impl Progress {
    /// Bars for a run of `reactor`, drawn on standard error when it is a
    /// terminal (hidden otherwise).
    pub(super) fn new(reactor: &Reactor) -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let top: HashSet<String> = reactor
            .step_names()
            .filter(|n| !is_internal(n))
            .map(str::to_string)
            .collect();
        let steps = multi.add(ProgressBar::new(top.len() as u64));
        steps.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        steps.set_prefix("steps");
        let mut elements = BTreeMap::new();
        let mut nested = HashSet::new();
        for s in &reactor.plan().steps {
            let shape = s.spec.def().extras().shape.as_deref();
            if let Some(shape) = shape {
                shape.for_each_nested(&mut |s| {
                    nested.insert(s.name().to_string());
                });
            }
            if let Some(Shape::Map { returns, .. }) = shape {
                let bar = multi.add(ProgressBar::no_length());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>16} {pos} elements done")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(s.spec.name().to_string());
                elements.insert(returns.to_string(), bar);
            }
        }
        let known = top.clone();
        Progress {
            steps,
            elements,
            top,
            nested,
            seen: Mutex::new(Seen {
                known,
                ..Seen::default()
            }),
        }
    }

    /// Leaves the bars as they ended.
    pub(super) fn finish(&self) {
        self.steps.abandon();
        self.elements.values().for_each(ProgressBar::abandon);
    }
}

impl Middleware for Progress {
    fn on_event(&self, event: &Event<'_>) {
        let Some(step) = event.step else { return };
        // Succeeded, or recovered by its compensation.
        let succeeded = matches!(
            event.kind,
            EventKind::StepComplete { .. } | EventKind::CompensateContinue { .. }
        );
        let ended = succeeded
            || matches!(
                event.kind,
                EventKind::GuardSkip { .. } | EventKind::StepFailed { .. }
            );
        if let (true, Some(bar)) = (succeeded, self.elements.get(step)) {
            bar.inc(1);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let root = seen.root.get_or_insert_with(|| event.run_id.to_string());
        let in_root = *root == event.run_id;
        let top = self.top.contains(step);
        if !in_root || is_internal(step) || (self.nested.contains(step) && !top) {
            return;
        }
        if matches!(event.kind, EventKind::StepStart { .. }) && seen.known.insert(step.to_string())
        {
            // Added while running: one more step known.
            self.steps.inc_length(1);
        }
        if ended && seen.done.insert(step.to_string()) {
            self.steps.inc(1);
            self.steps.set_message(step.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kinds::{element, map};
    use crate::{input, result, step, Inputs, Outcome};

    #[tokio::test]
    async fn counts_steps_done_of_known_and_map_elements_done_or_recovered() {
        let reactor = Reactor::builder("counted")
            .input("numbers")
            .add(
                map("doubled", input("numbers"))
                    .items::<u64>()
                    // One element fails and is recovered by compensation.
                    .steps([step("double")
                        .argument("n", element("doubled"))
                        .run_sync(|a, _| match *a.get::<u64>("n")? {
                            3 => Err("three".into()),
                            n => Ok(n * 2),
                        })
                        .compensate(|_, _, _| async {
                            crate::Compensation::Continue(crate::Value::new(0_u64))
                        })])
                    .into_step()
                    .unwrap(),
            )
            // Adds a step while running: one more known.
            .add(
                step("grow")
                    .argument("d", result("doubled"))
                    .run_sync(|_, _| {
                        Ok(Outcome::with_steps(
                            (),
                            vec![step("added").run_sync(|_, _| Ok(()))],
                        ))
                    }),
            )
            .returns("grow")
            .build()
            .unwrap();
        let progress = Arc::new(Progress::new(&reactor));
        reactor
            .run(Inputs::new().with("numbers", vec![1_u64, 2, 3, 4, 5]))
            .middleware(progress.clone())
            .await
            .unwrap();
        assert_eq!(progress.steps.length(), Some(3), "doubled, grow, added");
        assert_eq!(progress.steps.position(), 3);
        assert_eq!(progress.elements["double"].position(), 5);
    }
}
