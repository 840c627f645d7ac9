//! Middleware hooks: init, complete, error and halt, in order, guarded.

mod common;

use std::sync::{Arc, Mutex};

use common::run_error;
use reactor::kinds::compose;
use reactor::{
    async_trait, input, step, BoxError, Error, Event, Inputs, Middleware, Outcome, Phase, Reactor,
    RunError, RunInfo, RunState, Value, ValueMap,
};

type Log = Arc<Mutex<Vec<String>>>;

/// Logs its hooks under `name`, and does what it is told to.
#[derive(Default)]
struct Hooks {
    name: &'static str,
    log: Log,
    refuse: bool,
    fail_complete: bool,
    panic_in: Option<&'static str>,
    halt_context: bool,
}

impl Hooks {
    fn new(name: &'static str, log: &Log) -> Hooks {
        Hooks {
            name,
            log: log.clone(),
            ..Hooks::default()
        }
    }
    fn note(&self, what: &str, run: &RunInfo<'_>) {
        let nested = if run.parent_run.is_some() {
            " (nested)"
        } else {
            ""
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {what} {}{nested}", self.name, run.reactor));
        if self.panic_in == Some(what) {
            panic!("{} panics in {what}", self.name);
        }
    }
}

#[async_trait]
impl Middleware for Hooks {
    async fn init(&self, run: RunInfo<'_>, context: &mut ValueMap) -> Result<(), BoxError> {
        self.note("init", &run);
        if self.refuse {
            return Err("no entry".into());
        }
        let seen = context.get("seen").map_or(0, |v| *v.get::<i32>().unwrap());
        context.insert("seen".into(), Value::new(seen + 1));
        Ok(())
    }
    async fn complete(&self, run: RunInfo<'_>, value: Value) -> Result<Value, BoxError> {
        self.note("complete", &run);
        if self.fail_complete {
            return Err("not good enough".into());
        }
        Ok(Value::new(format!(
            "{}+{}",
            value.get::<String>()?,
            self.name
        )))
    }
    async fn error(&self, run: RunInfo<'_>, mut error: RunError) -> RunError {
        self.note("error", &run);
        error.run_id = format!("{}+{}", error.run_id, self.name);
        error
    }
    async fn halt(&self, run: RunInfo<'_>, mut state: RunState) -> Result<RunState, BoxError> {
        self.note("halt", &run);
        if self.halt_context {
            state.context.insert("mutated".into(), Value::new(true));
        }
        Ok(state)
    }
}

fn undo_logged(log: &Log) -> reactor::StepSpec {
    let l = log.clone();
    step("effect")
        .run_sync(|_, ctx| {
            Ok(format!(
                "seen {}",
                ctx.get::<i32>("seen").copied().unwrap_or(0)
            ))
        })
        .undo(move |_, _, _| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push("undo effect".to_string());
                Ok(())
            }
        })
}

fn one_step(log: &Log) -> Reactor {
    Reactor::builder("one")
        .add(undo_logged(log))
        .returns("effect")
        .build()
        .unwrap()
}

#[tokio::test]
async fn hooks_run_in_order_each_seeing_the_last_ones_result() {
    let log: Log = Default::default();
    let out = one_step(&log)
        .run(Inputs::new())
        .middleware(Arc::new(Hooks::new("a", &log)))
        .middleware(Arc::new(Hooks::new("b", &log)))
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "seen 2+a+b");
    assert_eq!(
        *log.lock().unwrap(),
        [
            "a init one",
            "b init one",
            "a complete one",
            "b complete one"
        ]
    );
}

#[tokio::test]
async fn an_init_hook_refuses_the_run_before_anything_runs() {
    for panics in [false, true] {
        let log: Log = Default::default();
        let mut refusing = Hooks::new("a", &log);
        refusing.refuse = !panics;
        refusing.panic_in = panics.then_some("init");
        let err = one_step(&log)
            .run(Inputs::new())
            .middleware(Arc::new(refusing))
            .middleware(Arc::new(Hooks::new("b", &log)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        assert_eq!(*log.lock().unwrap(), ["a init one"]);
    }
}

#[tokio::test]
async fn a_failing_complete_hook_fails_the_run_which_unwinds() {
    for panics in [false, true] {
        let log: Log = Default::default();
        let mut hooks = Hooks::new("a", &log);
        hooks.fail_complete = !panics;
        hooks.panic_in = panics.then_some("complete");
        let err = one_step(&log)
            .run(Inputs::new())
            .middleware(Arc::new(hooks))
            .await
            .unwrap_err();
        let run = run_error(err);
        assert!(run.errors.iter().any(|e| e.phase == Phase::Middleware));
        assert!(
            run.run_id.ends_with("+a"),
            "the error hooks ran: {}",
            run.run_id
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["a init one", "a complete one", "undo effect", "a error one"]
        );
    }
}

#[tokio::test]
async fn every_error_hook_runs_and_a_panicking_one_adds_its_panic() {
    let log: Log = Default::default();
    let failing = Reactor::builder("bad")
        .add(step("boom").run_sync(|_, _| Err::<(), _>("boom".into())))
        .returns("boom")
        .build()
        .unwrap();
    let mut first = Hooks::new("a", &log);
    first.panic_in = Some("error");
    let err = failing
        .run(Inputs::new())
        .middleware(Arc::new(first))
        .middleware(Arc::new(Hooks::new("b", &log)))
        .await
        .unwrap_err();
    let run = run_error(err);
    assert!(run.run_id.ends_with("+b"), "{}", run.run_id);
    assert!(run
        .errors
        .iter()
        .any(|e| e.phase == Phase::Middleware && e.to_string().contains("a panics in error")));
    assert!(run.errors.iter().any(|e| e.step == "boom"));
}

#[tokio::test]
async fn halt_hooks_change_the_state_and_run_at_the_iteration_limit() {
    let log: Log = Default::default();
    let halting = Reactor::builder("h")
        .add(step("pause").run_sync(|_, _| Ok(Outcome::Halt(Value::new(1_i64)))))
        .returns("pause")
        .build()
        .unwrap();
    let mut hooks = Hooks::new("a", &log);
    hooks.halt_context = true;
    let hooks = Arc::new(hooks);
    let halted = halting
        .run(Inputs::new())
        .middleware(hooks.clone())
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    assert!(halted.state().context.contains_key("mutated"));
    // The iteration limit halts too.
    let two = Reactor::builder("two")
        .add(step("first").run_sync(|_, _| Ok(1_i64)))
        .add(step("second").wait_for("first").run_sync(|_, _| Ok(2_i64)))
        .returns("second")
        .build()
        .unwrap();
    let limited = two
        .run(Inputs::new())
        .run_async(false)
        .max_iterations(1)
        .middleware(hooks)
        .outcome()
        .await
        .unwrap();
    assert!(limited.halted().is_some());
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("halt"))
            .count()
            == 2
    );
}

#[tokio::test]
async fn a_failing_halt_hook_fails_the_run_which_unwinds() {
    let log: Log = Default::default();
    let halting = Reactor::builder("h")
        .add(undo_logged(&log))
        .add(
            step("pause")
                .wait_for("effect")
                .run_sync(|_, _| Ok(Outcome::Halt(Value::new(1_i64)))),
        )
        .returns("pause")
        .build()
        .unwrap();
    let mut hooks = Hooks::new("a", &log);
    hooks.panic_in = Some("halt");
    let err = halting
        .run(Inputs::new())
        .middleware(Arc::new(hooks))
        .await
        .unwrap_err();
    assert!(run_error(err)
        .errors
        .iter()
        .any(|e| e.phase == Phase::Middleware));
    assert!(log.lock().unwrap().contains(&"undo effect".to_string()));
}

#[derive(Default)]
struct Seen(Mutex<Vec<(String, Option<String>, String)>>);

impl Middleware for Seen {
    fn on_event(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push((
            event.reactor.to_string(),
            event.parent_run.map(str::to_string),
            event.kind.name().to_string(),
        ));
    }
}

#[tokio::test]
async fn nested_runs_see_the_outer_middleware_with_their_parent() {
    let log: Log = Default::default();
    let inner = Reactor::builder("inner")
        .input("x")
        .add(
            step("double")
                .argument("x", input("x"))
                .run_sync(|a, _| Ok(*a.get::<i64>("x")? * 2)),
        )
        .returns("double")
        .build()
        .unwrap();
    let outer = Reactor::builder("outer")
        .add(step("x").run_sync(|_, _| Ok(21_i64)))
        .add(compose("nested", inner).argument("x", reactor::result("x")))
        .returns("nested")
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let out = outer
        .run(Inputs::new())
        .run_id("outer-run")
        .middleware(seen.clone())
        .middleware(Arc::new(Hooks::new("a", &log)))
        .await;
    // The complete hook appends to strings; this run returns a number.
    assert!(out.is_err());
    let seen = seen.0.lock().unwrap().clone();
    assert!(seen.contains(&(
        "inner".to_string(),
        Some("outer-run".to_string()),
        "step.run.complete".to_string()
    )));
    assert!(log
        .lock()
        .unwrap()
        .contains(&"a init inner (nested)".to_string()));
}
