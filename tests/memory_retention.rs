//! Results are kept only while something still needs them.

use std::sync::{Arc, Mutex, Weak};

use reactor::{result, step, Inputs, Reactor, StepSpec};

struct Big(#[allow(dead_code)] Vec<u8>);

/// Runs `produce`, `readers`, then `check` once `last` is done, in
/// tasks and in the coordinator: the big result must be freed by then.
async fn freed_after(readers: Vec<StepSpec>, last: &str) {
    let (produce, check) = produce_and_check(last);
    let mut b = Reactor::builder("mem");
    b.add(produce);
    for r in readers {
        b.add(r);
    }
    b.add(check).returns("check");
    let reactor = b.build().unwrap();
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

/// A step reading `produce`'s result (as `big`): its length.
fn reads_big(name: &str) -> StepSpec {
    step(name)
        .argument("big", result("produce"))
        .run_sync(|a, _| Ok(a.get::<Arc<Big>>("big")?.0.len()))
}

#[tokio::test]
async fn a_result_is_freed_once_its_last_reader_has_started() {
    freed_after(vec![reads_big("summarise")], "summarise").await;
}

/// A step reading one result through two arguments counts as two
/// readings and releases both: the result stays for a later reader and
/// is freed after it.
#[tokio::test]
async fn a_result_read_twice_by_one_step_is_kept_for_the_next_reader() {
    let twice = step("twice")
        .argument("a", result("produce"))
        .argument("b", result("produce"))
        .run_sync(|a, _| Ok(a.get::<Arc<Big>>("a")?.0.len() + a.get::<Arc<Big>>("b")?.0.len()));
    let later = reads_big("later").wait_for("twice");
    freed_after(vec![twice, later], "later").await;
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
