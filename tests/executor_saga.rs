//! Sagas: completed undoable steps are undone, newest first, exactly once.

mod common;

use common::run_error;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::Recorder;
use reactor::{
    result, step, Error, ErrorClass, Inputs, Phase, Reactor, Reason, StepErrorKind, StepSpec,
    UndoOutcome,
};

type Log = Arc<Mutex<Vec<String>>>;

fn undoable(name: &str, log: &Log) -> StepSpec {
    let log = log.clone();
    step(name.to_string())
        .run_sync(|_, ctx| Ok(ctx.step_name().to_string()))
        .undo(move |value, _, _| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(value.get::<String>()?.clone());
                Ok(())
            }
        })
}

fn failing(name: &str) -> StepSpec {
    step(name.to_string())
        .run_sync(|_, _| -> Result<(), reactor::BoxError> { Err("I fail".into()) })
}

#[tokio::test]
async fn completed_steps_are_undone_in_reverse_completion_order() {
    let log: Log = Default::default();
    let rec = Recorder::new();
    let reactor = Reactor::builder("chain")
        .add(undoable("a", &log))
        .add(undoable("b", &log).wait_for("a"))
        .add(undoable("c", &log).wait_for("b"))
        .add(failing("d").wait_for("c"))
        .returns("d")
        .build()
        .unwrap();
    let err = run_error(
        reactor
            .run(Inputs::new())
            .middleware(rec.clone())
            .await
            .unwrap_err(),
    );
    assert_eq!(*log.lock().unwrap(), ["c", "b", "a"]);
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].step, "d");
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(err.to_string().contains("I fail"));
    assert_eq!(rec.steps_with("step.undo.complete"), ["c", "b", "a"]);
    assert_eq!(rec.all().last().unwrap(), "run.error");
}

#[tokio::test]
async fn the_same_holds_in_a_sync_run() {
    let log: Log = Default::default();
    let reactor = Reactor::builder("chain")
        .add(undoable("a", &log))
        .add(undoable("b", &log))
        .add(undoable("c", &log).wait_for("a").wait_for("b"))
        .add(failing("d").wait_for("c"))
        .returns("d")
        .build()
        .unwrap();
    reactor
        .run(Inputs::new())
        .run_async(false)
        .await
        .unwrap_err();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0], "c");
}

#[tokio::test]
async fn undo_errors_are_collected_and_the_remaining_undos_still_run() {
    let log: Log = Default::default();
    let reactor = Reactor::builder("r")
        .add(undoable("a", &log))
        .add(
            step("b")
                .wait_for("a")
                .run_sync(|_, _| Ok(()))
                .undo(|_, _, _| async { Err::<(), reactor::BoxError>("cannot undo b".into()) }),
        )
        .add(failing("c").wait_for("b"))
        .returns("c")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(*log.lock().unwrap(), ["a"]);
    assert_eq!(err.errors.len(), 2);
    assert_eq!(
        (err.errors[0].step.as_str(), err.errors[0].phase),
        ("c", Phase::Run)
    );
    assert_eq!(
        (err.errors[1].step.as_str(), err.errors[1].phase),
        ("b", Phase::Undo)
    );
    assert!(err.to_string().contains("cannot undo b"));
}

#[tokio::test]
async fn undo_retries_at_most_five_times() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let rec = Recorder::new();
    let reactor = Reactor::builder("r")
        .add(step("stuck").run_sync(|_, _| Ok(())).undo(move |_, _, _| {
            c.fetch_add(1, Ordering::SeqCst);
            async { UndoOutcome::Retry(Some(Reason::msg("einstein"))) }
        }))
        .add(failing("f").wait_for("stuck"))
        .returns("f")
        .build()
        .unwrap();
    let err = run_error(
        reactor
            .run(Inputs::new())
            .middleware(rec.clone())
            .await
            .unwrap_err(),
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(matches!(
        err.errors[1].kind,
        StepErrorKind::UndoRetriesExceeded { attempts: 5 }
    ));
    let undo_events: Vec<String> = rec
        .of("stuck")
        .into_iter()
        .filter(|e| e.contains("undo"))
        .collect();
    assert_eq!(undo_events.len(), 11, "{undo_events:?}");
    assert_eq!(undo_events.last().unwrap(), "step.undo.error");
}

#[tokio::test]
async fn an_undo_that_retries_then_succeeds_is_fine() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let reactor = Reactor::builder("r")
        .add(step("a").run_sync(|_, _| Ok(())).undo(move |_, _, _| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    UndoOutcome::Retry(None)
                } else {
                    UndoOutcome::Done
                }
            }
        }))
        .add(failing("f").wait_for("a"))
        .returns("f")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.errors.len(), 1);
}

#[tokio::test]
async fn a_panicking_undo_is_reported_not_raised() {
    let reactor = Reactor::builder("r")
        .add(step("a").run_sync(|_, _| Ok(())).undo(|_, _, _| async {
            panic!("undo exploded");
            #[allow(unreachable_code)]
            Ok(())
        }))
        .add(failing("f").wait_for("a"))
        .returns("f")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert!(err.errors[1].to_string().contains("undo exploded"));
}

#[tokio::test]
async fn undo_receives_the_value_and_the_arguments() {
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let reactor = Reactor::builder("r")
        .add(step("year").run_sync(|_, _| Ok(1985_i32)))
        .add(
            step("book")
                .argument("year", result("year"))
                .run_sync(|a, _| Ok(format!("booked {}", a.get::<i32>("year")?)))
                .undo(move |value, args, _| {
                    let s = s.clone();
                    async move {
                        *s.lock().unwrap() =
                            Some((value.get::<String>()?.clone(), *args.get::<i32>("year")?));
                        Ok(())
                    }
                }),
        )
        .add(failing("f").wait_for("book"))
        .returns("f")
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap_err();
    assert_eq!(
        *seen.lock().unwrap(),
        Some(("booked 1985".to_string(), 1985))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_still_running_at_the_failure_are_awaited_and_undone() {
    let log: Log = Default::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let rx = Arc::new(Mutex::new(Some(rx)));
    let l = log.clone();
    let reactor = Reactor::builder("r")
        .add(
            step("slow")
                .run(move |_, _| {
                    let rx = rx.lock().unwrap().take();
                    async move {
                        if let Some(rx) = rx {
                            let _ = rx.await;
                        }
                        Ok("slow")
                    }
                })
                .undo(move |_, _, _| {
                    let l = l.clone();
                    async move {
                        l.lock().unwrap().push("slow".to_string());
                        Ok(())
                    }
                }),
        )
        .add(step("fail").run(move |_, _| {
            let tx = tx.lock().unwrap().take();
            async move {
                if let Some(tx) = tx {
                    let _ = tx.send(());
                }
                Err::<(), reactor::BoxError>("fail".into())
            }
        }))
        .add(
            step("end")
                .wait_for("slow")
                .wait_for("fail")
                .run_sync(|_, _| Ok(())),
        )
        .returns("end")
        .build()
        .unwrap();
    reactor
        .run(Inputs::new())
        .max_concurrency(2)
        .await
        .unwrap_err();
    assert_eq!(*log.lock().unwrap(), ["slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_are_all_reported() {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut b = Reactor::builder("r");
    for name in ["x", "y"] {
        let barrier = barrier.clone();
        b.add(step(name).run(move |_, ctx| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Err::<(), reactor::BoxError>(format!("{} broke", ctx.step_name()).into())
            }
        }));
    }
    b.add(
        step("end")
            .wait_for("x")
            .wait_for("y")
            .run_sync(|_, _| Ok(())),
    );
    let reactor = b.returns("end").build().unwrap();
    let err = run_error(
        reactor
            .run(Inputs::new())
            .max_concurrency(2)
            .await
            .unwrap_err(),
    );
    let mut steps: Vec<&str> = err.errors.iter().map(|e| e.step.as_str()).collect();
    steps.sort();
    assert_eq!(steps, ["x", "y"]);
}

#[tokio::test]
async fn a_fully_reversible_run_can_be_undone_later() {
    let log: Log = Default::default();
    let reactor = Reactor::builder("push")
        .add(undoable("push_a", &log))
        .add(undoable("push_b", &log).wait_for("push_a"))
        .returns("push_b")
        .build()
        .unwrap();
    let done = reactor
        .run(Inputs::new())
        .fully_reversible()
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert_eq!(done.value().get::<String>().unwrap(), "push_b");
    assert_eq!(done.state().undo_stack.len(), 2);
    assert!(log.lock().unwrap().is_empty());
    done.undo().await.unwrap();
    assert_eq!(*log.lock().unwrap(), ["push_b", "push_a"]);

    let not_reversible = reactor
        .run(Inputs::new())
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert!(matches!(
        not_reversible.undo().await,
        Err(Error::State { .. })
    ));
}

#[tokio::test]
async fn steps_without_undo_are_not_undone_or_kept() {
    let log: Log = Default::default();
    let reactor = Reactor::builder("r")
        .add(undoable("a", &log))
        .add(
            step("plain")
                .wait_for("a")
                .run_sync(|_, _| Ok(vec![0_u8; 16])),
        )
        .add(failing("f").wait_for("plain"))
        .returns("f")
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap_err();
    assert_eq!(*log.lock().unwrap(), ["a"]);
}
