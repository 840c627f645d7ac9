//! Results are kept only while something still needs them.

use std::sync::{Arc, Mutex, Weak};

use reactor::{result, step, Inputs, Reactor, StepSpec};

struct Big(#[allow(dead_code)] Vec<u8>);

/// Runs `reactor` (whose return step says whether the big result was
/// freed by then), in tasks and in the coordinator.
async fn freed_either_way(reactor: &Reactor) {
    for run_async in [true, false] {
        let out = reactor
            .run(Inputs::new())
            .run_async(run_async)
            .await
            .unwrap();
        assert!(
            *out.get::<bool>().unwrap(),
            "the 1 MiB result was still alive (async={run_async})"
        );
    }
}

/// A `produce` step making a 1 MiB result, and a `check` step (run
/// after `after`) answering whether that result has been freed.
fn produce_and_check(after: &str) -> (StepSpec, StepSpec) {
    let weak: Arc<Mutex<Option<Weak<Big>>>> = Arc::new(Mutex::new(None));
    let w = weak.clone();
    let produce = step("produce").run_sync(move |_, _| {
        let big = Arc::new(Big(vec![7; 1 << 20]));
        *w.lock().unwrap() = Some(Arc::downgrade(&big));
        Ok(big)
    });
    let check = step("check")
        .wait_for(after)
        .run_sync(move |_, _| Ok(weak.lock().unwrap().as_ref().unwrap().upgrade().is_none()));
    (produce, check)
}

#[tokio::test]
async fn a_result_is_freed_once_its_last_reader_has_started() {
    let (produce, check) = produce_and_check("summarise");
    let reactor = Reactor::builder("mem")
        .add(produce)
        .add(
            step("summarise")
                .argument("big", result("produce"))
                .run_sync(|a, _| Ok(a.get::<Arc<Big>>("big")?.0.len())),
        )
        .add(check)
        .returns("check")
        .build()
        .unwrap();
    freed_either_way(&reactor).await;
}

/// A step reading one result through two arguments counts as two
/// readings and releases both: the result stays for a later reader and
/// is freed after it.
#[tokio::test]
async fn a_result_read_twice_by_one_step_is_kept_for_the_next_reader() {
    let (produce, check) = produce_and_check("later");
    let reactor = Reactor::builder("mem_twice")
        .add(produce)
        .add(
            step("twice")
                .argument("a", result("produce"))
                .argument("b", result("produce"))
                .run_sync(|a, _| {
                    Ok(a.get::<Arc<Big>>("a")?.0.len() + a.get::<Arc<Big>>("b")?.0.len())
                }),
        )
        .add(
            step("later")
                .argument("big", result("produce"))
                .wait_for("twice")
                .run_sync(|a, _| Ok(a.get::<Arc<Big>>("big")?.0.len())),
        )
        .add(check)
        .returns("check")
        .build()
        .unwrap();
    freed_either_way(&reactor).await;
}

#[tokio::test]
async fn only_needed_results_and_the_undo_stack_are_kept() {
    let reactor = Reactor::builder("keep")
        .add(step("plain").run_sync(|_, _| Ok(1_i32)))
        .add(
            step("undoable")
                .run_sync(|_, _| Ok(2_i32))
                .undo(|_, _, _| async { Ok(()) }),
        )
        .add(step("unused").run_sync(|_, _| Ok(3_i32)))
        .add(
            step("end")
                .argument("p", result("plain"))
                .wait_for("undoable")
                .wait_for("unused")
                .run_sync(|a, _| Ok(*a.get::<i32>("p")?)),
        )
        .returns("end")
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
    let kept: Vec<&String> = done.state().results.keys().collect();
    assert_eq!(kept, ["end"]);
    let undo: Vec<&str> = done
        .state()
        .undo_stack
        .iter()
        .map(|r| r.step.as_str())
        .collect();
    assert_eq!(undo, ["undoable"]);
}
