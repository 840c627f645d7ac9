//! A map element's steps obey exactly the rules of a reactor's steps:
//! retries, re-emitting to poll, switches, concurrency, `cpu_bound`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::{run_error, Gauge};
use reactor::kinds::{element, map, switch, MapError};
use reactor::{input, result, step, value, Inputs, Outcome, Reactor, Value};

fn outputs<T: Clone + 'static>(v: &Value) -> Vec<T> {
    v.get::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|x| x.get::<T>().unwrap().clone())
        .collect()
}

fn one_step_map(nested: reactor::StepSpec) -> Reactor {
    Reactor::builder("r")
        .input("items")
        .add(
            map("m", input("items"))
                .steps([nested])
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_nested_plain_step_retries_up_to_its_max_retries() {
    for plain in [true, false] {
        let tries = Arc::new(AtomicUsize::new(0));
        let t = tries.clone();
        let s = step("flaky").argument("n", element("m")).max_retries(2);
        let s = if plain {
            s.run_sync(move |a, ctx| {
                t.fetch_add(1, Ordering::SeqCst);
                if ctx.current_try() < 2 {
                    return Ok(Outcome::Retry(None));
                }
                Ok(Outcome::ok(*a.get::<i64>("n")? * 10))
            })
        } else {
            s.run(move |a, ctx| {
                t.fetch_add(1, Ordering::SeqCst);
                async move {
                    if ctx.current_try() < 2 {
                        return Ok(Outcome::Retry(None));
                    }
                    Ok(Outcome::ok(*a.get::<i64>("n")? * 10))
                }
            })
        };
        let out = one_step_map(s)
            .run(Inputs::new().with("items", vec![1_i64, 2, 3]))
            .await
            .unwrap();
        assert_eq!(outputs::<i64>(&out), [10, 20, 30], "plain {plain}");
        assert_eq!(tries.load(Ordering::SeqCst), 9);
    }
    // One retry too many fails the element, naming it.
    let s = step("flaky")
        .argument("n", element("m"))
        .max_retries(1)
        .run_sync(|_, _| Ok(Outcome::Retry(None)));
    let err = run_error(
        one_step_map(s)
            .run(Inputs::new().with("items", vec![1_i64]))
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        err.find_reason::<MapError>(),
        Some(MapError::Element { index: 0, .. })
    ));
}

#[tokio::test]
async fn a_nested_step_re_emits_itself_to_poll() {
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let poll = step("poll")
        .argument("n", element("m"))
        .run_sync(move |a, ctx| {
            p.fetch_add(1, Ordering::SeqCst);
            let n = *a.get::<i64>("n")?;
            // Each element polls n times: the replacement reads its own
            // previous value.
            let seen = a.value("seen").map_or(0, |v| *v.get::<i64>().unwrap());
            if seen + 1 < n {
                let again = ctx
                    .current_step()
                    .argument("seen", result("poll").map(|s: &i64| *s));
                return Ok(Outcome::with_steps(seen + 1, vec![again]));
            }
            Ok(Outcome::ok(n * 100))
        });
    let out = one_step_map(poll)
        .run(Inputs::new().with("items", vec![1_i64, 3, 2]))
        .await
        .unwrap();
    assert_eq!(outputs::<i64>(&out), [100, 300, 200]);
    assert_eq!(polls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_switch_inside_a_map_runs_its_branch_and_reads_outer_results() {
    let reactor = Reactor::builder("r")
        .input("items")
        .add(step("label").run_sync(|_, _| Ok("big".to_string())))
        .add(
            map("m", input("items"))
                .items::<i64>()
                .steps([
                    switch("size", element("m"))
                        .branch(
                            |v| *v.get::<i64>().unwrap() >= 10,
                            [step("big")
                                .argument("n", element("m"))
                                .argument("label", result("label"))
                                .run_sync(|a, _| {
                                    Ok(format!(
                                        "{} {}",
                                        a.get::<String>("label")?,
                                        a.get::<i64>("n")?
                                    ))
                                })],
                            Some("big"),
                        )
                        .default(
                            [step("small")
                                .argument("n", element("m"))
                                .run_sync(|a, _| Ok(format!("small {}", a.get::<i64>("n")?)))],
                            Some("small"),
                        )
                        .into_step(),
                    step("after")
                        .argument("s", result("size"))
                        .run_sync(|a, _| Ok(format!("<{}>", a.get::<String>("s")?))),
                ])
                .returns("after")
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap();
    for run_async in [true, false] {
        let out = reactor
            .run(Inputs::new().with("items", vec![1_i64, 20]))
            .run_async(run_async)
            .await
            .unwrap();
        assert_eq!(outputs::<String>(&out), ["<small 1>", "<big 20>"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_run_concurrently_up_to_the_batch_and_the_limit() {
    for (batch, limit) in [(4, 8), (8, 3)] {
        let gauge = Arc::new(Gauge::default());
        let meet = Arc::new(tokio::sync::Barrier::new(batch.min(limit)));
        let (g, m) = (gauge.clone(), meet.clone());
        let s = step("wait").argument("n", element("m")).run(move |a, _| {
            let (g, m) = (g.clone(), m.clone());
            async move {
                g.enter();
                // Only passes if that many elements run at once.
                m.wait().await;
                g.exit();
                Ok(*a.get::<i64>("n")?)
            }
        });
        let reactor = Reactor::builder("r")
            .input("items")
            .add(
                map("m", input("items"))
                    .steps([s])
                    .batch_size(batch)
                    .into_step()
                    .unwrap(),
            )
            .returns("m")
            .build()
            .unwrap();
        let items: Vec<i64> = (0..24).collect();
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            reactor
                .run(Inputs::new().with("items", items.clone()))
                .max_concurrency(limit),
        )
        .await
        .expect("elements meet")
        .unwrap();
        assert_eq!(outputs::<i64>(&out), items);
        assert_eq!(
            gauge.max(),
            batch.min(limit),
            "batch {batch}, limit {limit}"
        );
    }
}

#[test]
fn cpu_bound_elements_run_on_the_blocking_pool_side_by_side() {
    // One worker thread: two blocking elements can only meet if they run
    // on the blocking pool, two at once.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let meet = Arc::new(Barrier::new(2));
    let m = meet.clone();
    let s = step("crunch")
        .argument("n", element("m"))
        .cpu_bound()
        .run_sync(move |a, _| {
            m.wait();
            Ok(*a.get::<i64>("n")? * 2)
        });
    let reactor = one_step_map(s);
    let out = rt
        .block_on(async {
            reactor
                .run(Inputs::new().with("items", vec![1_i64, 2, 3, 4]))
                .max_concurrency(2)
                .await
        })
        .unwrap();
    assert_eq!(outputs::<i64>(&out), [2, 4, 6, 8]);
}

#[tokio::test]
async fn a_map_iterates_a_vec_of_any_declared_type() {
    #[derive(Clone, Debug)]
    struct Record {
        id: u64,
    }
    let ids = step("id")
        .argument("r", element("m"))
        .run_sync(|a, _| Ok(a.get::<Record>("r")?.id));
    let declared = Reactor::builder("r")
        .input("records")
        .add(
            map("m", input("records"))
                .items::<Record>()
                .steps([ids.clone()])
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap();
    let records = vec![Record { id: 7 }, Record { id: 9 }];
    let out = declared
        .run(Inputs::new().with("records", records.clone()))
        .await
        .unwrap();
    assert_eq!(outputs::<u64>(&out), [7, 9]);
    // Undeclared, the error says what to do, without contradicting itself.
    let undeclared = one_step_map(ids);
    let err = run_error(
        undeclared
            .run(Inputs::new().with("items", records))
            .await
            .unwrap_err(),
    );
    let text = err.to_string();
    assert!(text.contains("Record"), "{text}");
    assert!(text.contains(".items::<T>()"), "{text}");
}

#[tokio::test]
async fn elements_share_the_runs_context_middleware_and_limit() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = one_step_map(
        step("ctx")
            .argument("n", element("m"))
            .run_sync(move |_, ctx| {
                s.lock()
                    .unwrap()
                    .push((ctx.run_id().to_string(), ctx.get::<String>("who").cloned()));
                Ok(())
            }),
    );
    r.run(Inputs::new().with("items", vec![1_i64, 2]))
        .run_id("run-1")
        .context("who", "me".to_string())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|(id, who)| id == "run-1" && who.as_deref() == Some("me")));
    let _ = value(0_i64);
}
