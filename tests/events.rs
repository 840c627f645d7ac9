//! Every lifecycle point is an event, in order, with the run id and step.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Recorder;
use reactor::{step, Event, EventKind, Inputs, Middleware, Outcome, Reactor, Value};

#[tokio::test]
async fn a_successful_run_emits_start_step_events_and_complete() {
    let rec = Recorder::new();
    let reactor = Reactor::builder("ok")
        .add(step("a").run_sync(|_, _| Ok("marty")))
        .returns("a")
        .middleware_arc(rec.clone())
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(
        rec.all(),
        [
            "run.start",
            "a:step.run.start",
            "a:step.run.complete",
            "run.complete"
        ]
    );
}

#[tokio::test]
async fn retry_halt_and_error_have_their_events() {
    let rec = Recorder::new();
    let reactor = Reactor::builder("r")
        .add(step("retry").run_sync(|_, ctx| {
            Ok(if ctx.current_try() == 0 {
                Outcome::Retry(None)
            } else {
                Outcome::ok(())
            })
        }))
        .add(
            step("halt")
                .wait_for("retry")
                .run_sync(|_, _| Ok(Outcome::Halt(Value::unit()))),
        )
        .add(
            step("fail")
                .wait_for("halt")
                .run_sync(|_, _| -> Result<(), reactor::BoxError> { Err("nope".into()) }),
        )
        .returns("fail")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .middleware(rec.clone())
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    assert_eq!(
        rec.of("retry"),
        [
            "step.run.start",
            "step.run.retry",
            "step.run.start",
            "step.run.complete"
        ]
    );
    assert_eq!(rec.of("halt"), ["step.run.start", "step.run.halt"]);
    assert_eq!(rec.all().last().unwrap(), "run.halt");
    let rec2 = Recorder::new();
    halted.resume().middleware(rec2.clone()).await.unwrap_err();
    assert_eq!(
        rec2.of("fail"),
        ["step.run.start", "step.run.error", "step.failed"]
    );
    assert_eq!(rec2.all().last().unwrap(), "run.error");
}

/// (run id, step, duration) of each event.
type Seen = (String, Option<String>, Option<Duration>);

#[derive(Default)]
struct Details(Mutex<Vec<Seen>>);

impl Middleware for Details {
    fn on_event(&self, e: &Event<'_>) {
        let duration = match &e.kind {
            EventKind::StepComplete { duration, .. } | EventKind::RunComplete { duration, .. } => {
                Some(*duration)
            }
            _ => None,
        };
        self.0
            .lock()
            .unwrap()
            .push((e.run_id.to_string(), e.step.map(str::to_string), duration));
    }
}

#[tokio::test]
async fn events_carry_the_run_id_the_step_and_timings() {
    let details = Arc::new(Details::default());
    let reactor = Reactor::builder("timed")
        .add(step("sleepy").run(|_, _| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }))
        .returns("sleepy")
        .build()
        .unwrap();
    reactor
        .run(Inputs::new())
        .run_id("run-42")
        .middleware(details.clone())
        .await
        .unwrap();
    let d = details.0.lock().unwrap();
    assert!(d.iter().all(|(id, _, _)| id == "run-42"));
    let step_time = d
        .iter()
        .find(|(_, s, t)| s.as_deref() == Some("sleepy") && t.is_some())
        .unwrap()
        .2
        .unwrap();
    let run_time = d.last().unwrap().2.unwrap();
    assert!(step_time >= Duration::from_millis(5));
    assert!(step_time <= run_time);
}

#[tokio::test]
async fn a_retry_chosen_by_compensation_has_its_retry_event() {
    let rec = Recorder::new();
    let reactor = Reactor::builder("r")
        .add(
            step("flaky")
                .run_sync(|_, ctx| {
                    if ctx.current_try() == 0 {
                        Err("transient".into())
                    } else {
                        Ok(())
                    }
                })
                .compensate(|_, _, _| async { reactor::Compensation::Retry(None) })
                .backoff(|_, _, _| reactor::Backoff::Now),
        )
        .returns("flaky")
        .middleware_arc(rec.clone())
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(
        rec.of("flaky"),
        [
            "step.run.start",
            "step.run.error",
            "step.compensate.start",
            "step.compensate.retry",
            "step.run.retry",
            "step.run.start",
            "step.run.complete"
        ]
    );
}
