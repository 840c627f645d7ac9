//! Retries, compensation and backoff.

mod common;

use common::run_error;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Recorder;
use reactor::{
    step, Backoff, Compensation, Inputs, Outcome, Phase, Reactor, Reason, StepErrorKind, StepSpec,
    Value,
};

fn single(s: StepSpec) -> Reactor {
    let name = s.name().to_string();
    Reactor::builder("r").add(s).returns(name).build().unwrap()
}

#[tokio::test]
async fn a_step_retries_until_it_succeeds_and_sees_its_try() {
    let tries = Arc::new(Mutex::new(Vec::new()));
    let t = tries.clone();
    let reactor = single(step("flaky").max_retries(3).run_sync(move |_, ctx| {
        t.lock()
            .unwrap()
            .push((ctx.current_try(), ctx.retries_remaining()));
        if ctx.current_try() < 2 {
            Ok(Outcome::Retry(None))
        } else {
            Ok(Outcome::ok("done"))
        }
    }));
    let out = reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "done");
    assert_eq!(
        *tries.lock().unwrap(),
        [(0, Some(3)), (1, Some(2)), (2, Some(1))]
    );
}

#[tokio::test]
async fn bare_retries_past_the_limit_fail_with_retries_exceeded() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let reactor = single(step("again").max_retries(0).run_sync(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::Retry(None))
    }));
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        err.errors[0].kind,
        StepErrorKind::RetriesExceeded {
            retries: 1,
            max_retries: 0
        }
    ));
}

#[tokio::test]
async fn a_retry_reason_becomes_the_error_when_retries_run_out() {
    let reactor = single(
        step("again")
            .max_retries(2)
            .run_sync(|_, _| Ok(Outcome::Retry(Some(Reason::msg("still warming up"))))),
    );
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(err.errors[0].attempt, 3);
    assert!(err.errors[0].to_string().contains("still warming up"));
}

#[tokio::test]
async fn compensation_can_continue_with_a_value() {
    let rec = Recorder::new();
    let reactor = single(
        step("fetch")
            .run_sync(|_, _| -> Result<i32, reactor::BoxError> { Err("doc".into()) })
            .compensate(|reason, _, _| async move {
                assert_eq!(reason.to_string(), "doc");
                Compensation::Continue(Value::new(7_i32))
            }),
    );
    let out = reactor
        .run(Inputs::new())
        .middleware(rec.clone())
        .await
        .unwrap();
    assert_eq!(*out.get::<i32>().unwrap(), 7);
    assert_eq!(
        rec.of("fetch"),
        [
            "step.run.start",
            "step.run.error",
            "step.compensate.start",
            "step.compensate.continue"
        ]
    );
}

#[tokio::test]
async fn compensation_can_accept_the_failure() {
    let rec = Recorder::new();
    let reactor = single(
        step("fetch")
            .run_sync(|_, _| -> Result<(), reactor::BoxError> { Err("doc".into()) })
            .compensate(|_, _, _| async { Compensation::Fail }),
    );
    let err = run_error(
        reactor
            .run(Inputs::new())
            .middleware(rec.clone())
            .await
            .unwrap_err(),
    );
    assert!(matches!(&err.errors[0].kind, StepErrorKind::Failed(r) if r.to_string() == "doc"));
    assert_eq!(
        rec.of("fetch"),
        [
            "step.run.start",
            "step.run.error",
            "step.compensate.start",
            "step.compensate.complete",
            "step.failed"
        ]
    );
}

#[tokio::test]
async fn compensation_retries_count_and_keep_the_original_error() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let reactor = single(
        step("fetch")
            .max_retries(2)
            .run_sync(move |_, _| -> Result<(), reactor::BoxError> {
                c.fetch_add(1, Ordering::SeqCst);
                Err("doc".into())
            })
            .compensate(|_, _, _| async { Compensation::Retry(None) }),
    );
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(matches!(&err.errors[0].kind, StepErrorKind::Failed(r) if r.to_string() == "doc"));
}

#[tokio::test]
async fn a_failing_compensation_is_a_compensate_error() {
    let reactor = single(
        step("fetch")
            .run_sync(|_, _| -> Result<(), reactor::BoxError> { Err("doc".into()) })
            .compensate(|_, _, _| async { Compensation::Error(Reason::msg("cant_compensate")) }),
    );
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(err.errors[0].phase, Phase::Compensate);
    assert!(err.errors[0].to_string().contains("cant_compensate"));
}

#[derive(Debug, thiserror::Error)]
#[error("rate limited, retry after {0} ms")]
struct RateLimited(u64);

#[tokio::test(start_paused = true)]
async fn backoff_sees_the_unwrapped_error_and_other_steps_keep_running() {
    let rec = Recorder::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let reactor = Reactor::builder("b")
        .add(
            step("api")
                .run_sync(|_, ctx| -> Result<&str, reactor::BoxError> {
                    if ctx.current_try() == 0 {
                        Err(Box::new(RateLimited(250)))
                    } else {
                        Ok("body")
                    }
                })
                .compensate(|_, _, _| async { Compensation::Retry(None) })
                .backoff(move |reason, _, _| {
                    let limited = reason.and_then(|r| r.downcast_ref::<RateLimited>());
                    s.lock().unwrap().push(limited.map(|r| r.0));
                    match limited {
                        Some(r) => Backoff::millis(r.0),
                        None => Backoff::Now,
                    }
                }),
        )
        .add(step("other").run(|_, _| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok("other")
        }))
        .add(
            step("end")
                .wait_for("api")
                .wait_for("other")
                .run_sync(|_, _| Ok(())),
        )
        .returns("end")
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    reactor
        .run(Inputs::new())
        .middleware(rec.clone())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(250)]);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let all = rec.all();
    let other_done = all
        .iter()
        .position(|e| e == "other:step.run.complete")
        .unwrap();
    let api_second_start = all
        .iter()
        .enumerate()
        .filter(|(_, e)| *e == "api:step.run.start")
        .nth(1)
        .unwrap()
        .0;
    assert!(other_done < api_second_start, "{all:?}");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_backoff_does_not_spend_iterations() {
    let reactor = single(
        step("s")
            .run_sync(|_, ctx| {
                Ok(if ctx.current_try() == 0 {
                    Outcome::Retry(None)
                } else {
                    Outcome::ok("finished")
                })
            })
            .backoff(|_, _, _| Backoff::millis(50)),
    );
    let out = reactor.run(Inputs::new()).max_iterations(4).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "finished");
}

#[tokio::test(start_paused = true)]
async fn the_executor_halts_rather_than_sleep_on_its_last_iteration() {
    let reactor = single(
        step("s")
            .run_sync(|_, _| Ok(Outcome::Retry(None)))
            .backoff(|_, _, _| Backoff::millis(1000)),
    );
    let started = tokio::time::Instant::now();
    let outcome = reactor
        .run(Inputs::new())
        .max_iterations(2)
        .outcome()
        .await
        .unwrap();
    assert!(outcome.halted().is_some());
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cuts_a_backoff_short() {
    let reactor = single(
        step("s")
            .run_sync(|_, _| Ok(Outcome::Retry(None)))
            .backoff(|_, _, _| Backoff::millis(500)),
    );
    let started = tokio::time::Instant::now();
    let outcome = reactor
        .run(Inputs::new())
        .timeout(Duration::from_millis(50))
        .outcome()
        .await
        .unwrap();
    let halted = outcome.halted().expect("halted");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(halted.state().retries.get("s"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn the_earliest_backoff_wakes_first() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut b = Reactor::builder("two");
    for (name, ms) in [("long", 1000_u64), ("short", 100)] {
        let order = order.clone();
        b.add(
            step(name)
                .run_sync(move |_, ctx| {
                    if ctx.current_try() == 0 {
                        Ok(Outcome::Retry(None))
                    } else {
                        order.lock().unwrap().push(ctx.step_name().to_string());
                        Ok(Outcome::ok(()))
                    }
                })
                .backoff(move |_, _, _| Backoff::millis(ms)),
        );
    }
    b.add(
        step("end")
            .wait_for("long")
            .wait_for("short")
            .run_sync(|_, _| Ok(())),
    );
    b.returns("end")
        .build()
        .unwrap()
        .run(Inputs::new())
        .await
        .unwrap();
    assert_eq!(*order.lock().unwrap(), ["short", "long"]);
}
