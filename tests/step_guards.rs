//! Guards: `guard` and `run_if` decide before a step runs.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::{run_error, Recorder};
use std::future::IntoFuture;

use reactor::{input, result, step, Compensation, Guard, Inputs, Outcome, Reactor, Reason};

#[tokio::test]
async fn run_if_skips_the_step_and_its_dependents_see_unit() {
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let reactor = Reactor::builder("where")
        .input("exists")
        .add(
            step("read")
                .argument("exists", input("exists"))
                .run_if(|args, _| *args.get::<bool>("exists").unwrap())
                .run_sync(move |_, _| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok("Great Scott!")
                }),
        )
        .add(
            step("show")
                .argument("content", result("read"))
                .run_sync(|a, _| {
                    let content = a.value("content").unwrap();
                    Ok(match content.downcast_ref::<&str>() {
                        Some(s) => s.to_string(),
                        None => format!("skipped: {:?}", content),
                    })
                }),
        )
        .returns("show")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new().with("exists", false))
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "skipped: ()");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let out = reactor
        .run(Inputs::new().with("exists", true))
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "Great Scott!");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_guard_can_answer_for_the_step() {
    let rec = Recorder::new();
    let reactor = Reactor::builder("cache")
        .add(
            step("heavy")
                .guard(|_, _| Guard::Skip(Outcome::ok("This is heavy")))
                .run_sync(|_, _| -> Result<&str, reactor::BoxError> { panic!("not run") }),
        )
        .returns("heavy")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new())
        .middleware(rec.clone())
        .await
        .unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "This is heavy");
    assert_eq!(rec.of("heavy"), ["step.guard.start", "step.guard.skip"]);
}

#[tokio::test]
async fn a_guard_that_fails_fails_the_step_without_compensation() {
    let compensated = Arc::new(AtomicU32::new(0));
    let c = compensated.clone();
    let reactor = Reactor::builder("fail")
        .add(
            step("guarded")
                .guard(|_, _| Guard::Skip(Outcome::Error(Reason::msg("hodor"))))
                .run_sync(|_, _| Ok(()))
                .compensate(move |_, _, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async { Compensation::Continue(reactor::Value::unit()) }
                }),
        )
        .returns("guarded")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert!(err.errors[0].to_string().contains("hodor"));
    assert_eq!(compensated.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn guards_run_in_order_and_the_first_to_decide_wins() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
    let rec = Recorder::new();
    let reactor = Reactor::builder("order")
        .add(
            step("s")
                .guard(move |_, _| {
                    o1.lock().unwrap().push(1);
                    Guard::Continue
                })
                .guard(move |_, _| {
                    o2.lock().unwrap().push(2);
                    Guard::Skip(Outcome::ok(2_i32))
                })
                .guard(move |_, _| {
                    o3.lock().unwrap().push(3);
                    Guard::Skip(Outcome::ok(3_i32))
                })
                .run_sync(|_, _| Ok(0_i32)),
        )
        .returns("s")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new())
        .middleware(rec.clone())
        .await
        .unwrap();
    assert_eq!(*out.get::<i32>().unwrap(), 2);
    assert_eq!(*order.lock().unwrap(), [1, 2]);
    // A guard that lets the step run:
    let passing = Reactor::builder("pass")
        .add(
            step("s")
                .guard(|_, _| Guard::Continue)
                .run_sync(|_, _| Ok(1)),
        )
        .returns("s")
        .build()
        .unwrap();
    let rec = Recorder::new();
    passing
        .run(Inputs::new())
        .middleware(rec.clone())
        .await
        .unwrap();
    assert_eq!(
        rec.of("s"),
        [
            "step.guard.start",
            "step.guard.pass",
            "step.run.start",
            "step.run.complete"
        ]
    );
}

#[tokio::test]
async fn a_skipped_step_is_not_undone() {
    let undone = Arc::new(AtomicU32::new(0));
    let u = undone.clone();
    let reactor = Reactor::builder("skip")
        .add(
            step("read")
                .run_if(|_, _| false)
                .run_sync(|_, _| Ok(()))
                .undo(move |_, _, _| {
                    u.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                }),
        )
        .add(
            step("flunk")
                .wait_for("read")
                .run_sync(|_, _| -> Result<(), reactor::BoxError> { Err("abort".into()) }),
        )
        .returns("flunk")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert!(err.to_string().contains("abort"));
    assert_eq!(undone.load(Ordering::SeqCst), 0);
}

#[test]
fn guards_run_once_per_attempt_with_a_debug_subscriber() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let rec = Recorder::new();
    let reactor = Reactor::builder("traced")
        .add(
            step("guarded")
                .guard(move |_, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                    Guard::Continue
                })
                .run(|_, _| async { Ok(1_i64) }),
        )
        .returns("guarded")
        .middleware_arc(rec.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for run_async in [true, false] {
            rt.block_on(
                reactor
                    .run(Inputs::new())
                    .run_async(run_async)
                    .into_future(),
            )
            .unwrap();
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        rec.of("guarded")
            .iter()
            .filter(|e| *e == "step.guard.start")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_guard_skipping_with_a_halt_halts_the_run() {
    let reactor = Reactor::builder("halting")
        .add(
            step("pause")
                .guard(|_, ctx| {
                    if ctx.get::<bool>("resumed").is_some() {
                        Guard::Continue
                    } else {
                        Guard::Skip(Outcome::Halt(reactor::Value::new("paused")))
                    }
                })
                .run_sync(|_, _| Ok("never reached")),
        )
        .add(
            step("after")
                .argument("p", result("pause"))
                .run_sync(|a, _| Ok(format!("after {}", a.get::<&str>("p")?))),
        )
        .returns("after")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .outcome()
        .await
        .unwrap()
        .halted()
        .expect("a skip with a halt halts the run");
    assert_eq!(
        *halted.result("pause").unwrap().get::<&str>().unwrap(),
        "paused"
    );
    let out = halted.resume().await.unwrap();
    assert_eq!(out.get::<String>().unwrap(), "after paused");
}

#[tokio::test]
async fn a_guard_skipping_with_steps_adds_them() {
    let reactor = Reactor::builder("emitting")
        .add(
            step("plan")
                .guard(|_, _| {
                    Guard::Skip(Outcome::with_steps(
                        (),
                        vec![step("extra").run_sync(|_, _| Ok(7_i64))],
                    ))
                })
                .run_sync(|_, _| Ok(())),
        )
        .add(step("end").wait_for("plan").run_sync(|_, _| Ok(())))
        .returns("end")
        .build()
        .unwrap();
    let done = reactor
        .run(Inputs::new())
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert!(done.state().is_completed("extra"));
}
