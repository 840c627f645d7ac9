//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use reactor::{result, step, Event, Middleware, Reactor, StepSpec};

/// A reactor named `name`: `n` steps `s0..` built by `each`, then `all`
/// reading every one and returning how many it read.
pub fn fan_out(name: &str, n: usize, each: impl Fn(usize) -> StepSpec) -> Reactor {
    let mut b = Reactor::builder(name);
    let mut all = step("all");
    for i in 0..n {
        b.add(each(i));
        all = all.argument(format!("s{i}"), result(format!("s{i}")));
    }
    b.add(all.run_sync(|args, _| Ok(args.len())));
    b.returns("all");
    b.build().unwrap()
}

/// Records `(step, event name)` for every event, in order.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<(Option<String>, String)>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// All event names, with the step they concern as `step:name`.
    pub fn all(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(s, n)| match s {
                Some(s) => format!("{s}:{n}"),
                None => n.clone(),
            })
            .collect()
    }

    /// The event names of one step, in order.
    pub fn of(&self, step: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.as_deref() == Some(step))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The steps of the events named `name`, in order.
    pub fn steps_with(&self, name: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, n)| n == name && s.is_some())
            .map(|(s, _)| s.clone().unwrap())
            .collect()
    }
}

impl Middleware for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        self.events.lock().unwrap().push((
            event.step.map(str::to_string),
            event.kind.name().to_string(),
        ));
    }
}

/// Tracks how many things run at once, and the most ever seen.
#[derive(Default)]
pub struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl Gauge {
    pub fn enter(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
    }
    pub fn exit(&self) {
        self.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The run error inside `err`; panics on any other error.
pub fn run_error(err: reactor::Error) -> reactor::RunError {
    match err {
        reactor::Error::Run(e) => e,
        other => panic!("expected a run error, got {other:?}"),
    }
}
pub mod failing_store;
pub mod file_ledger;
pub mod mermaid;
pub mod stall;

/// A reactor of one async step: `greet` says hello to input `name`.
pub fn greeter() -> reactor::Reactor {
    use reactor::{input, step};
    reactor::Reactor::builder("greeter")
        .input("name")
        .add(
            step("greet")
                .argument("name", input("name"))
                .run(|a, _| async move { Ok(format!("Hello, {}!", a.get::<String>("name")?)) }),
        )
        .returns("greet")
        .build()
        .unwrap()
}
