//! User code that panics (middleware, `Navigate` impls) fails its step or
//! run, and the saga unwinds: never a hang, never a crash of the run.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::run_error;
use reactor::{
    input, result, step, Event, Inputs, Middleware, Navigate, PathKey, Phase, Reactor, Value,
};

/// Panics on the event named `event` of step `step` (or of the run).
struct PanicOn {
    event: &'static str,
    step: Option<&'static str>,
}

impl Middleware for PanicOn {
    fn on_event(&self, event: &Event<'_>) {
        if event.kind.name() == self.event && event.step == self.step {
            panic!("middleware bug on {}", self.event);
        }
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// A plain step `name` returning 1 and logging its undo.
fn undoable(name: &'static str, undone: &Log) -> reactor::StepSpec {
    let u = undone.clone();
    step(name).run_sync(|_, _| Ok(1_i64)).undo(move |_, _, _| {
        let u = u.clone();
        async move {
            u.lock().unwrap().push(name.to_string());
            Ok(())
        }
    })
}

/// `n` independent plain steps, each undoable (logging its undo), then a
/// step reading them all.
fn fan_out(n: usize, undone: &Log) -> reactor::Builder {
    let mut b = Reactor::builder("fan");
    let mut total = step("total");
    for i in 0..n {
        let u = undone.clone();
        b.add(
            step(format!("s{i}"))
                .run_sync(move |_, _| Ok(i))
                .undo(move |_, _, _| {
                    let u = u.clone();
                    async move {
                        u.lock().unwrap().push(format!("s{i}"));
                        Ok(())
                    }
                }),
        );
        total = total.argument(format!("s{i}"), result(format!("s{i}")));
    }
    b.add(total.run_sync(|_, _| Ok(())));
    b.returns("total");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_panic_in_a_chunk_fails_the_run_and_unwinds() {
    for event in ["step.run.start", "step.run.complete"] {
        let undone: Log = Default::default();
        let reactor = fan_out(64, &undone)
            .middleware(PanicOn {
                event,
                step: Some("s10"),
            })
            .build()
            .unwrap();
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            reactor.run(Inputs::new()).max_concurrency(2),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        let run = run_error(err);
        let hook = run
            .errors
            .iter()
            .find(|e| e.phase == Phase::Middleware)
            .expect("the middleware's panic is reported");
        assert_eq!(hook.step, "s10");
        assert!(hook.to_string().contains("middleware bug"), "{hook}");
        let undone = undone.lock().unwrap().clone();
        // Whatever completed was undone; s10 ran only if the panic came
        // after it ran, and then it is undone too.
        assert_eq!(
            undone.contains(&"s10".to_string()),
            event == "step.run.complete"
        );
    }
}

#[tokio::test]
async fn a_middleware_panic_on_a_step_in_the_coordinator_unwinds_the_saga() {
    for run_async in [true, false] {
        let undone: Log = Default::default();
        let reactor = Reactor::builder("r")
            .add(undoable("first", &undone))
            .add(
                step("second")
                    .argument("f", result("first"))
                    .run_async(false)
                    .run_sync(|_, _| Ok(2_i64)),
            )
            .returns("second")
            .middleware(PanicOn {
                event: "step.run.start",
                step: Some("second"),
            })
            .build()
            .unwrap();
        let err = reactor
            .run(Inputs::new())
            .run_async(run_async)
            .await
            .unwrap_err();
        let run = run_error(err);
        assert!(run
            .errors
            .iter()
            .any(|e| e.phase == Phase::Middleware && e.step == "second"));
        assert_eq!(*undone.lock().unwrap(), ["first"]);
    }
}

#[tokio::test]
async fn a_middleware_panic_on_a_run_event_fails_the_run() {
    for (event, undone_expected) in [("run.start", false), ("run.complete", true)] {
        let undone: Log = Default::default();
        let reactor = Reactor::builder("r")
            .add(undoable("a", &undone))
            .returns("a")
            .middleware(PanicOn { event, step: None })
            .build()
            .unwrap();
        let err = reactor.run(Inputs::new()).await.unwrap_err();
        let run = run_error(err);
        assert!(
            run.errors.iter().any(|e| e.phase == Phase::Middleware),
            "{run}"
        );
        assert_eq!(
            !undone.lock().unwrap().is_empty(),
            undone_expected,
            "{event}"
        );
    }
}

struct Exploding;

impl Navigate for Exploding {
    fn field(&self, _key: &PathKey) -> Option<Value> {
        panic!("navigation bug")
    }
}

#[tokio::test]
async fn a_panicking_navigate_impl_fails_the_step_reading_it() {
    for run_async in [true, false] {
        let undone: Log = Default::default();
        let reactor = Reactor::builder("r")
            .input("x")
            .add(undoable("first", &undone))
            .add(
                step("reader")
                    .argument("f", result("first"))
                    .argument("field", input("x").at("anything"))
                    .run_sync(|_, _| Ok(())),
            )
            .returns("reader")
            .build()
            .unwrap();
        let err = reactor
            .run(Inputs::new().with("x", Value::navigable(Exploding)))
            .run_async(run_async)
            .await
            .unwrap_err();
        let run = run_error(err);
        let e = run.for_step("reader").next().expect("the reader fails");
        assert_eq!(e.phase, Phase::Arguments);
        assert!(e.to_string().contains("navigation bug"), "{e}");
        assert_eq!(*undone.lock().unwrap(), ["first"]);
    }
}

#[tokio::test]
async fn a_panicking_backoff_fails_its_step_and_unwinds() {
    for run_async in [true, false] {
        let undone: Log = Default::default();
        let reactor = Reactor::builder("r")
            .add(undoable("first", &undone))
            .add(
                step("flaky")
                    .argument("f", result("first"))
                    .run_sync(|_, _| Ok(reactor::Outcome::Retry(None)))
                    .backoff(|_, _, _| panic!("backoff bug")),
            )
            .returns("flaky")
            .build()
            .unwrap();
        let err = reactor
            .run(Inputs::new())
            .run_async(run_async)
            .await
            .unwrap_err();
        let run = run_error(err);
        let e = run.for_step("flaky").next().expect("the step fails");
        assert_eq!((e.phase, e.attempt), (Phase::Run, 1));
        assert!(e.to_string().contains("backoff: backoff bug"), "{e}");
        assert_eq!(*undone.lock().unwrap(), ["first"]);
    }
}
