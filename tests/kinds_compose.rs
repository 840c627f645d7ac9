//! compose: another reactor as a step.

mod common;

use std::sync::{Arc, Mutex};

use common::run_error;
use reactor::kinds::{compose, flunk, Compose, ComposeError};
use reactor::{input, step, ConcurrencyPool, Inputs, Reactor};

fn greeter() -> Reactor {
    Reactor::builder("greet")
        .input("name")
        .add(
            step("hello")
                .argument("name", input("name"))
                .run_sync(|a, _| Ok(format!("Hello, {}!", a.get::<String>("name")?))),
        )
        .returns("hello")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_composed_reactor_runs_as_a_step() {
    let outer = Reactor::builder("outer")
        .input("name")
        .add(compose("greeting", greeter()).argument("name", input("name")))
        .returns("greeting")
        .build()
        .unwrap();
    let out = outer
        .run(Inputs::new().with("name", "World".to_string()))
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "Hello, World!");
}

#[tokio::test]
async fn arguments_must_match_the_inner_inputs() {
    let outer = Reactor::builder("outer")
        .input("name")
        .add(compose("greeting", greeter()).argument("whom", input("name")))
        .returns("greeting")
        .build()
        .unwrap();
    let err = run_error(
        outer
            .run(Inputs::new().with("name", "World".to_string()))
            .await
            .unwrap_err(),
    );
    match err.find_reason::<ComposeError>() {
        Some(ComposeError::Arguments { missing, extra, .. }) => {
            assert_eq!(missing, &["name"]);
            assert_eq!(extra, &["whom"]);
        }
        other => panic!("{other:?}"),
    }
}

type Log = Arc<Mutex<Vec<&'static str>>>;

fn pusher(log: &Log) -> Reactor {
    let (l1, l2) = (log.clone(), log.clone());
    Reactor::builder("inner")
        .add(
            step("undoable")
                .run_sync(move |_, _| {
                    l1.lock().unwrap().push("run");
                    Ok(())
                })
                .undo(move |_, _, _| {
                    l2.lock().unwrap().push("undo");
                    async { Ok(()) }
                }),
        )
        .returns("undoable")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_later_outer_failure_undoes_the_composed_run() {
    let log: Log = Default::default();
    let outer = Reactor::builder("outer")
        .add(compose("inner", pusher(&log)))
        .add(flunk("oops", "oops").wait_for("inner"))
        .returns("oops")
        .build()
        .unwrap();
    outer.run(Inputs::new()).await.unwrap_err();
    assert_eq!(*log.lock().unwrap(), ["run", "undo"]);

    let log: Log = Default::default();
    let outer = Reactor::builder("outer")
        .add(step("inner").implementation(Compose::new(pusher(&log)).support_undo(false)))
        .add(flunk("oops", "oops").wait_for("inner"))
        .returns("oops")
        .build()
        .unwrap();
    outer.run(Inputs::new()).await.unwrap_err();
    assert_eq!(*log.lock().unwrap(), ["run"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_runs_share_an_exhausted_pool_without_deadlock() {
    let pool = ConcurrencyPool::new(1);
    let mut b = Reactor::builder("outer");
    b.input("name");
    for i in 0..6 {
        b.add(compose(format!("g{i}"), greeter()).argument("name", input("name")));
    }
    b.add(
        step("all")
            .wait_for("g0")
            .wait_for("g1")
            .wait_for("g2")
            .wait_for("g3")
            .wait_for("g4")
            .wait_for("g5")
            .run_sync(|_, _| Ok("done")),
    );
    let outer = b.returns("all").build().unwrap();
    let out = outer
        .run(Inputs::new().with("name", "pool".to_string()))
        .pool(pool.clone())
        .await
        .unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "done");
    assert_eq!(pool.available(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_async_false_runs_the_inner_steps_in_one_task() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let mut b = Reactor::builder("inner");
    for name in ["a", "b"] {
        let ids = ids.clone();
        b.add(step(name).run(move |_, _| {
            let ids = ids.clone();
            async move {
                ids.lock().unwrap().push(tokio::task::try_id());
                Ok(())
            }
        }));
    }
    b.add(
        step("end")
            .wait_for("a")
            .wait_for("b")
            .run_sync(|_, _| Ok(())),
    );
    let inner = b.returns("end").build().unwrap();
    let outer = Reactor::builder("outer")
        .add(step("c").implementation(Compose::new(inner).allow_async(false)))
        .returns("c")
        .build()
        .unwrap();
    outer.run(Inputs::new()).await.unwrap();
    let ids = ids.lock().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_inside_a_compose_inside_a_switch_is_undone_with_the_outer_saga() {
    use reactor::kinds::{element, map, switch};

    let undone = Arc::new(Mutex::new(Vec::new()));
    let u = undone.clone();
    // inner reactor: a map whose elements can be undone
    let inner = Reactor::builder("inner")
        .input("items")
        .add(
            // One element at a time: they complete in source order, so
            // the undo order below is known.
            map("book_all", input("items"))
                .batch_size(1)
                .steps([step("book")
                    .argument("n", element("book_all"))
                    .run_sync(|a, _| Ok(*a.get::<i64>("n")?))
                    .undo(move |v, _, _| {
                        let u = u.clone();
                        async move {
                            u.lock().unwrap().push(*v.get::<i64>()?);
                            Ok(())
                        }
                    })])
                .into_step()
                .unwrap(),
        )
        .returns("book_all")
        .build()
        .unwrap();
    let outer = Reactor::builder("outer")
        .input("items")
        .input("mode")
        .add(
            switch("route", input("mode"))
                .default(
                    [compose("booking", inner).argument("items", input("items"))],
                    Some("booking"),
                )
                .into_step(),
        )
        .add(flunk("later", "payment declined").wait_for("route"))
        .returns("later")
        .build()
        .unwrap();
    let err = outer
        .run(
            Inputs::new()
                .with("items", vec![1_i64, 2, 3])
                .with("mode", "book"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("payment declined"));
    assert_eq!(*undone.lock().unwrap(), [3, 2, 1]);
}
