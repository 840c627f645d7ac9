//! Limits and bad input: saturation, clear errors, no panic, no hang.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reactor::kinds::{compose, recurse, template, RecurseError};
use reactor::{
    input, result, step, Backoff, ConcurrencyPool, Error, Inputs, Outcome, Reactor, RunState,
    UndoRecord, Value, MAX_NESTING,
};

fn one_step() -> Reactor {
    Reactor::builder("one")
        .add(step("a").run(|_, _| async { Ok(1_i64) }))
        .returns("a")
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_longest_durations_saturate() {
    for run_async in [true, false] {
        let out = one_step()
            .run(Inputs::new())
            .run_async(run_async)
            .timeout(Duration::MAX)
            .halt_timeout(Duration::MAX)
            .await
            .unwrap();
        assert_eq!(*out.get::<i64>().unwrap(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn the_longest_backoff_saturates() {
    let reactor = Reactor::builder("b")
        .add(
            step("wait")
                .run_sync(|_, _| Ok(Outcome::Retry(None)))
                .backoff(|_, _, _| Backoff::After(Duration::MAX)),
        )
        .returns("wait")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .timeout(Duration::from_secs(3600))
        .outcome()
        .await
        .unwrap();
    assert!(halted.halted().is_some());
}

#[tokio::test]
async fn a_pool_of_no_slots_is_refused() {
    let err = one_step()
        .run(Inputs::new())
        .pool(ConcurrencyPool::new(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "pool", .. }),
        "{err}"
    );
    let err = one_step()
        .run(Inputs::new())
        .max_concurrency(0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
}

#[tokio::test]
async fn a_recursion_of_no_iterations_is_refused() {
    let err = recurse("r", one_step())
        .max_iterations(0)
        .into_step()
        .unwrap_err();
    assert!(matches!(err, RecurseError::ZeroIterations { .. }), "{err}");
}

#[tokio::test]
async fn a_template_renders_lists_in_their_debug_form() {
    let reactor = Reactor::builder("t")
        .input("xs")
        .add(template("show", "xs = {{ xs }}").argument("xs", input("xs")))
        .returns("show")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new().with("xs", vec![1_i64, 2, 3]))
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "xs = [1, 2, 3]");
}

/// `a`, then `h` (halts), then `c` reading `h`; returns `ret`.
fn halting(ret: &str) -> Reactor {
    Reactor::builder("h")
        .add(step("a").run_sync(|_, _| Ok(1_i64)))
        .add(
            step("h")
                .wait_for("a")
                .run_sync(|_, _| Ok(Outcome::Halt(Value::new(2_i64)))),
        )
        .add(
            step("c")
                .argument("h", result("h"))
                .run_sync(|_, _| Ok(3_i64)),
        )
        .returns(ret)
        .build()
        .unwrap()
}

async fn halted_state() -> RunState {
    halting("c")
        .run(Inputs::new())
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap()
        .into_state()
}

async fn resume_error(reactor: &Reactor, state: RunState) -> String {
    match reactor.resume(state).await {
        Err(e @ Error::StateMismatch { .. }) => e.to_string(),
        other => panic!("expected a state mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn resuming_with_a_state_that_does_not_fit_is_refused_before_running() {
    // The reactor's return step changed to one whose result was not kept.
    let text = resume_error(&halting("a"), halted_state().await).await;
    assert!(text.contains("return step `a`"), "{text}");
    // An undo record for a step the reactor does not have.
    let mut state = halted_state().await;
    state.undo_stack.push(UndoRecord {
        step: "gone".to_string(),
        emitted: None,
        value: Value::unit(),
        arguments: reactor::Arguments::from_pairs::<&str>("gone", []),
    });
    let text = resume_error(&halting("c"), state).await;
    assert!(text.contains("`gone`"), "{text}");
    // A step completed twice.
    let mut state = halted_state().await;
    state.completed.push("a".to_string());
    let text = resume_error(&halting("c"), state).await;
    assert!(text.contains("completed twice"), "{text}");
    // A completed step nobody declared.
    let mut state = halted_state().await;
    state.completed.push("ghost".to_string());
    let text = resume_error(&halting("c"), state).await;
    assert!(text.contains("`ghost`"), "{text}");
    // A result a pending step reads, missing.
    let mut state = halted_state().await;
    state.results.clear();
    let text = resume_error(&halting("c"), state).await;
    assert!(text.contains("`c` reads the result of `h`"), "{text}");
    // And the state as it was resumes fine.
    let out = halting("c").resume(halted_state().await).await.unwrap();
    assert_eq!(*out.get::<i64>().unwrap(), 3);
}

#[test]
fn a_long_cycle_is_named_briefly() {
    let n = 100_000;
    let mut b = Reactor::builder("cycle");
    for i in 0..n {
        let prev = (i + n - 1) % n;
        b.add(
            step(format!("step_{i}"))
                .argument("x", result(format!("step_{prev}")))
                .run_sync(|_, _| Ok(())),
        );
    }
    let err = b.returns("step_0").build().unwrap_err();
    let Error::Cycle { cycle, length } = &err else {
        panic!("{err}")
    };
    assert_eq!(*length, n);
    assert!(cycle.len() <= 11);
    let text = err.to_string();
    assert!(text.len() < 500, "{}", text.len());
    assert!(text.contains("100000 steps"), "{text}");
}

/// A reactor composing `inner` in a `run_async(false)`-style nesting.
fn nest(inner: Reactor, level: usize) -> Reactor {
    Reactor::builder(format!("level{level}"))
        .input("x")
        .add(compose("inner", inner).argument("x", input("x")))
        .returns("inner")
        .build()
        .unwrap()
}

#[test]
fn deep_nesting_is_not_bounded_by_the_callers_stack() {
    // A small stack, as a worker thread's: nesting 300 sync runs deep must
    // not overflow it.
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut r = Reactor::builder("leaf")
                .input("x")
                .add(
                    step("x")
                        .argument("x", input("x"))
                        .run_sync(|a, _| Ok(*a.get::<i64>("x")? + 1)),
                )
                .returns("x")
                .build()
                .unwrap();
            for level in 0..300 {
                r = nest(r, level);
            }
            rt.block_on(async {
                r.run(Inputs::new().with("x", 41_i64))
                    .run_async(false)
                    .await
                    .unwrap()
            })
        })
        .unwrap();
    let out = handle.join().expect("no stack overflow");
    assert_eq!(*out.get::<i64>().unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_without_end_is_an_error() {
    static SELF: OnceLock<Reactor> = OnceLock::new();
    let depth = Arc::new(AtomicU32::new(0));
    let d = depth.clone();
    let reactor = Reactor::builder("again")
        .add(step("again").run(move |_, _| {
            d.fetch_add(1, Ordering::SeqCst);
            async move {
                let me = SELF.get().expect("set below");
                me.run(Inputs::new()).run_async(false).await?;
                Ok(())
            }
        }))
        .returns("again")
        .build()
        .unwrap();
    let _ = SELF.set(reactor.clone());
    let err = reactor
        .run(Inputs::new())
        .run_async(false)
        .await
        .unwrap_err();
    // Follow the chain of nested run errors down to the refusal.
    let mut current: &Error = &err;
    let mut levels = 0;
    while let Error::Run(run) = current {
        let Some(reactor::StepErrorKind::Failed(reason)) = run.errors.first().map(|e| &e.kind)
        else {
            panic!("{run}")
        };
        current = reason
            .downcast_ref::<Error>()
            .expect("a nested run's error");
        levels += 1;
    }
    assert!(
        matches!(current, Error::NestingTooDeep { limit, .. } if *limit == MAX_NESTING),
        "{current}"
    );
    assert_eq!(levels, MAX_NESTING + 1);
    assert_eq!(depth.load(Ordering::SeqCst), MAX_NESTING + 1);
    // Writing such an error does not need a deep stack.
    assert!(err.to_string().contains("nested too deep to show"));
}
