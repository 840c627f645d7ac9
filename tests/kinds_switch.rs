//! switch: branches chosen by predicates.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use reactor::kinds::switch;
use reactor::{input, result, step, Inputs, Reactor, Value};

fn truthy(v: &Value) -> bool {
    !(v.is::<()>() || v.downcast_ref::<bool>() == Some(&false))
}

fn falsy_switch() -> Reactor {
    Reactor::builder("sw")
        .input("value")
        .add(
            switch("is_falsy", input("value"))
                .branch(
                    |v| !truthy(v),
                    [step("falsy").run_sync(|_, _| Ok("falsy"))],
                    Some("falsy"),
                )
                .default(
                    [step("truthy").run_sync(|_, _| Ok("truthy"))],
                    Some("truthy"),
                )
                .into_step(),
        )
        .returns("is_falsy")
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_first_matching_branch_runs_else_the_default() {
    let r = falsy_switch();
    let out = r.run(Inputs::new().with("value", false)).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "falsy");
    let out = r.run(Inputs::new().with("value", "marty")).await.unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "truthy");
}

#[tokio::test]
async fn no_match_and_no_default_gives_unit() {
    let r = Reactor::builder("sw")
        .input("value")
        .add(
            switch("is_nil", input("value"))
                .branch(
                    |v| v.is::<()>(),
                    [step("nil").run_sync(|_, _| Ok(1))],
                    Some("nil"),
                )
                .into_step(),
        )
        .returns("is_nil")
        .build()
        .unwrap();
    let out = r.run(Inputs::new().with("value", 5_i32)).await.unwrap();
    assert!(out.is::<()>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_steps_read_outer_inputs_and_results_and_preceding_steps_run_once() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let reactor = Reactor::builder("sw")
        .input("code")
        .add(step("create_session_token").run_sync(move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok("token_abc".to_string())
        }))
        .add(step("create_org").run_sync(|_, _| Ok("org_123".to_string())))
        .add(
            switch("route", input("code"))
                .branch(
                    |v| v.downcast_ref::<String>().is_some_and(|s| s == "amscray"),
                    [step("describe")
                        .argument("code", input("code"))
                        .argument("token", result("create_session_token"))
                        .argument("org", result("create_org"))
                        .run(|a, _| async move {
                            tokio::task::yield_now().await;
                            Ok(format!(
                                "{} {} {}",
                                a.get::<String>("code")?,
                                a.get::<String>("token")?,
                                a.get::<String>("org")?
                            ))
                        })],
                    Some("describe"),
                )
                .into_step(),
        )
        .add(
            step("after")
                .argument("routed", result("route"))
                .run_sync(|a, _| Ok(a.get::<String>("routed")?.to_uppercase())),
        )
        .returns("after")
        .build()
        .unwrap();
    for run_async in [true, false] {
        let out = reactor
            .run(Inputs::new().with("code", "amscray".to_string()))
            .run_async(run_async)
            .await
            .unwrap();
        assert_eq!(out.get::<String>().unwrap(), "AMSCRAY TOKEN_ABC ORG_123");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "once per run");
}

#[tokio::test]
async fn dependents_wait_for_a_branch_without_return() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let reactor = Reactor::builder("sw")
        .input("v")
        .add(
            switch("s", input("v"))
                .default(
                    [step("work").run(move |_, _| {
                        let o1 = o1.clone();
                        async move {
                            tokio::task::yield_now().await;
                            o1.lock().unwrap().push("branch");
                            Ok(())
                        }
                    })],
                    None,
                )
                .into_step(),
        )
        .add(step("next").wait_for("s").run_sync(move |_, _| {
            o2.lock().unwrap().push("next");
            Ok(())
        }))
        .returns("next")
        .build()
        .unwrap();
    reactor.run(Inputs::new().with("v", 1)).await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["branch", "next"]);
}
