//! Halting and resuming runs; dynamic steps.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Recorder;
use reactor::{
    input, result, step, Error, Inputs, Outcome, Reactor, RunOutcome, StepErrorKind, Value,
};

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

#[tokio::test]
async fn a_halted_reactor_resumes_with_its_results_and_does_not_rerun_steps() {
    let runs = counter();
    let r = runs.clone();
    let reactor = Reactor::builder("halting")
        .input("name")
        .add(
            step("atom_to_string")
                .argument("name", input("name"))
                .run_sync(move |a, _| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(Outcome::Halt(Value::new(a.get::<String>("name")?.clone())))
                }),
        )
        .add(
            step("upcase")
                .argument("s", result("atom_to_string"))
                .run_sync(|a, _| Ok(a.get::<String>("s")?.to_uppercase())),
        )
        .returns("upcase")
        .build()
        .unwrap();
    let err = reactor
        .run(Inputs::new().with("name", "marty".to_string()))
        .await
        .unwrap_err();
    let Error::Halted(halted) = err else {
        panic!("expected a halt")
    };
    assert_eq!(
        halted
            .result("atom_to_string")
            .unwrap()
            .get::<String>()
            .unwrap(),
        "marty"
    );
    assert_eq!(halted.pending_steps(), ["upcase"]);
    let run_id = halted.run_id().to_string();
    let done = halted
        .resume()
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert_eq!(done.value().get::<String>().unwrap(), "MARTY");
    assert_eq!(done.state().run_id, run_id);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stored_state_resumes_through_the_reactor() {
    let reactor = Reactor::builder("halting")
        .add(step("a").run_sync(|_, _| Ok(Outcome::Halt(Value::new(20_i64)))))
        .add(
            step("b")
                .argument("a", result("a"))
                .run_sync(|a, _| Ok(a.get::<i64>("a")? + 1)),
        )
        .returns("b")
        .build()
        .unwrap();
    let state = reactor
        .run(Inputs::new())
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap()
        .into_state();
    let stored = state.clone();
    let out = reactor.resume(stored).await.unwrap();
    assert_eq!(*out.get::<i64>().unwrap(), 21);
    // The same state can be resumed again.
    let again = reactor.resume(state).await.unwrap();
    assert_eq!(*again.get::<i64>().unwrap(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_steps_are_awaited_on_halt_and_not_rerun() {
    let slow_runs = counter();
    let s = slow_runs.clone();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let reactor = Reactor::builder("r")
        .add(step("slow").run(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
            let g = g.clone();
            async move {
                g.notified().await;
                Ok("slow")
            }
        }))
        .add(step("halter").run(move |_, _| {
            let gate = gate.clone();
            async move {
                // Let the slow step finish only once the halt is under way.
                tokio::task::yield_now().await;
                gate.notify_one();
                Ok(Outcome::Halt(Value::new("waiting")))
            }
        }))
        .add(
            step("end")
                .argument("s", result("slow"))
                .wait_for("halter")
                .run_sync(|a, _| Ok(*a.get::<&str>("s")?)),
        )
        .returns("end")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .max_concurrency(2)
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    assert!(halted.state().is_completed("slow"));
    assert_eq!(
        *halted.result("slow").unwrap().get::<&str>().unwrap(),
        "slow"
    );
    let out = halted.resume().await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "slow");
    assert_eq!(slow_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_abandoned_after_the_halt_timeout_runs_again_on_resume() {
    let runs = counter();
    let r = runs.clone();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let rel = release.clone();
    let reactor = Reactor::builder("r")
        .add(step("slow").run(move |_, _| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let rel = rel.clone();
            async move {
                if n == 0 {
                    // The first attempt never finishes in time.
                    let _ = rel.acquire().await;
                }
                Ok("slow")
            }
        }))
        .add(step("halter").run_sync(|_, _| Ok(Outcome::Halt(Value::unit()))))
        .add(
            step("end")
                .argument("s", result("slow"))
                .wait_for("halter")
                .run_sync(|a, _| Ok(*a.get::<&str>("s")?)),
        )
        .returns("end")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .max_concurrency(2)
        .halt_timeout(Duration::from_millis(20))
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    assert!(!halted.state().is_completed("slow"));
    let out = halted.resume().await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "slow");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    release.add_permits(1);
}

#[tokio::test]
async fn a_timeout_halts_at_the_next_step_boundary() {
    let reactor = {
        let mut b = Reactor::builder("seq");
        let mut prev: Option<String> = None;
        for i in 0..5 {
            let name = format!("s{i}");
            let mut s = step(name.clone()).run(|_, _| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(())
            });
            if let Some(p) = prev {
                s = s.wait_for(p);
            }
            b.add(s);
            prev = Some(name);
        }
        b.returns("s4").build().unwrap()
    };
    let halted = reactor
        .run(Inputs::new())
        .run_async(false)
        .timeout(Duration::from_millis(45))
        .outcome()
        .await
        .unwrap()
        .halted()
        .expect("halted by the timeout");
    let pending = halted.pending_steps();
    assert!(!pending.is_empty() && pending.len() < 5, "{pending:?}");
    let out = halted.resume().await;
    assert!(out.is_ok());
}

#[tokio::test]
async fn max_iterations_halts_the_run() {
    let reactor = Reactor::builder("seq")
        .add(step("a").run_sync(|_, _| Ok(1)))
        .add(step("b").wait_for("a").run_sync(|_, _| Ok(2)))
        .add(step("c").wait_for("b").run_sync(|_, _| Ok(3)))
        .returns("c")
        .build()
        .unwrap();
    let rec = Recorder::new();
    let outcome = reactor
        .run(Inputs::new())
        .max_iterations(1)
        .middleware(rec.clone())
        .outcome()
        .await
        .unwrap();
    assert!(matches!(outcome, RunOutcome::Halted(_)));
    assert_eq!(rec.all().last().unwrap(), "run.halt");
}

#[tokio::test]
async fn a_step_can_emit_itself_to_recurse() {
    let reactor = Reactor::builder("countdown")
        .input("from")
        .add(
            step("count_down")
                .argument("n", input("from"))
                .run_sync(|a, ctx| {
                    let n = *a.get::<u32>("n")?;
                    Ok(count_down_step(vec![n], n, ctx))
                }),
        )
        .add(
            step("done")
                .argument("list", result("count_down"))
                .run_sync(|a, _| Ok(a.get::<Vec<u32>>("list")?.clone())),
        )
        .returns("done")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new().with("from", 7_u32))
        .await
        .unwrap();
    assert_eq!(*out.get::<Vec<u32>>().unwrap(), [7, 6, 5, 4, 3, 2, 1, 0]);
}

fn count_down_step(list: Vec<u32>, n: u32, _ctx: &reactor::Context) -> Outcome {
    if n == 0 {
        return Outcome::ok(list);
    }
    let next = step("count_down")
        .argument("list", result("count_down"))
        .run_sync(|a, ctx| {
            let mut list = a.get::<Vec<u32>>("list")?.clone();
            let n = list.last().unwrap() - 1;
            list.push(n);
            Ok(count_down_step(list, n, ctx))
        });
    Outcome::with_steps(list, vec![next])
}

#[tokio::test]
async fn a_step_can_poll_by_emitting_its_current_definition() {
    let polls = counter();
    let p = polls.clone();
    let reactor = Reactor::builder("poll")
        .add(step("wait_for_external_service").run_sync(move |_, ctx| {
            if p.fetch_add(1, Ordering::SeqCst) < 3 {
                Ok(Outcome::with_steps((), vec![ctx.current_step()]))
            } else {
                Ok(Outcome::ok("ready"))
            }
        }))
        .add(
            step("use")
                .argument("s", result("wait_for_external_service"))
                .run_sync(|a, _| Ok(*a.get::<&str>("s")?)),
        )
        .returns("use")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "ready");
    assert_eq!(polls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn emitted_steps_join_the_run_and_can_depend_on_each_other() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let reactor = Reactor::builder("dyn")
        .input("x")
        .add(
            step("seed")
                .argument("x", input("x"))
                .run_sync(move |a, _| {
                    let l1 = l.clone();
                    let l2 = l.clone();
                    let second = step("second")
                        .argument("first", result("first"))
                        .argument("x", input("x"))
                        .run_sync(move |a, _| {
                            l2.lock().unwrap().push("second");
                            Ok(a.get::<i64>("first")? + a.get::<i64>("x")?)
                        });
                    let first =
                        step("first")
                            .argument("seed", result("seed"))
                            .run_sync(move |a, _| {
                                l1.lock().unwrap().push("first");
                                Ok(a.get::<i64>("seed")? * 10)
                            });
                    Ok(Outcome::with_steps(
                        *a.get::<i64>("x")?,
                        vec![second, first],
                    ))
                }),
        )
        .add(step("end").wait_for("seed").run_sync(|_, _| Ok("end")))
        .returns("end")
        .build()
        .unwrap();
    let done = reactor
        .run(Inputs::new().with("x", 4_i64))
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert_eq!(*log.lock().unwrap(), ["first", "second"]);
    let completed = &done.state().completed;
    assert!(completed.contains(&"second".to_string()));
    assert_eq!(done.state().emitted.len(), 2);
}

#[tokio::test]
async fn emitted_steps_that_cannot_be_planned_fail_the_emitter_and_unwind() {
    let undone = counter();
    let u = undone.clone();
    let reactor = Reactor::builder("dyn")
        .add(step("a").run_sync(|_, _| Ok(())).undo(move |_, _, _| {
            u.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        }))
        .add(step("emitter").wait_for("a").run_sync(|_, _| {
            let bad = step("bad")
                .argument("v", result("nowhere"))
                .run_sync(|_, _| Ok(()));
            Ok(Outcome::with_steps((), vec![bad]))
        }))
        .returns("emitter")
        .build()
        .unwrap();
    let err = reactor.run(Inputs::new()).await.unwrap_err();
    let run = err.as_run_error().unwrap();
    assert_eq!(run.errors[0].step, "emitter");
    assert!(
        matches!(&run.errors[0].kind, StepErrorKind::Plan(r) if r.to_string().contains("nowhere"))
    );
    assert_eq!(err.class(), reactor::ErrorClass::Internal);
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_recursive_step_interrupted_by_a_halt_continues_on_resume() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    fn tick(n: u32, seen: Arc<Mutex<Vec<u32>>>) -> reactor::StepSpec {
        step("tick").run_sync(move |_, _| {
            seen.lock().unwrap().push(n);
            if n == 0 {
                return Ok(Outcome::ok("done"));
            }
            Ok(Outcome::with_steps(n, vec![tick(n - 1, seen.clone())]))
        })
    }
    let reactor = Reactor::builder("tick")
        .add(tick(3, seen.clone()))
        .add(step("halter").run_sync(|_, _| Ok(Outcome::Halt(Value::unit()))))
        .add(
            step("end")
                .argument("t", result("tick"))
                .wait_for("halter")
                .run_sync(|a, _| Ok(*a.get::<&str>("t")?)),
        )
        .returns("end")
        .build()
        .unwrap();
    let halted = reactor
        .run(Inputs::new())
        .run_async(false)
        .outcome()
        .await
        .unwrap()
        .halted()
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [3]);
    assert!(!halted.state().is_completed("tick"));
    assert_eq!(halted.state().emitted.len(), 1);
    let out = halted.resume().run_async(false).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "done");
    assert_eq!(*seen.lock().unwrap(), [3, 2, 1, 0]);
}
