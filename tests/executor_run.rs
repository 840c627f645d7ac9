//! Running reactors: inputs, arguments, concurrency, sync mode, CPU-bound steps.

mod common;

use common::run_error;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::Gauge;
use reactor::{
    input, result, step, value, Error, Inputs, Navigate, PathKey, Reactor, StepErrorKind, Value,
    ValueMap,
};

#[tokio::test]
async fn the_guides_data_processor_combines_three_concurrent_fetches() {
    // Three fetches meet at a barrier: they only finish if they run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut b = Reactor::builder("DataProcessor");
    b.input("user_ids");
    for name in ["fetch_profiles", "fetch_preferences", "fetch_activity"] {
        let barrier = barrier.clone();
        b.add(
            step(name)
                .argument("user_ids", input("user_ids"))
                .run(move |args, ctx| {
                    let barrier = barrier.clone();
                    async move {
                        barrier.wait().await;
                        let ids = args.get::<Vec<u32>>("user_ids")?;
                        Ok(format!("{}:{}", ctx.step_name(), ids.len()))
                    }
                }),
        );
    }
    b.add(
        step("combine_data")
            .argument("profiles", result("fetch_profiles"))
            .argument("preferences", result("fetch_preferences"))
            .argument("activity", result("fetch_activity"))
            .run_sync(|args, _| {
                let parts: Vec<String> = args
                    .iter()
                    .map(|(_, v)| v.get::<String>().unwrap().clone())
                    .collect();
                Ok(parts.join(","))
            }),
    );
    let reactor = b.returns("combine_data").build().unwrap();
    let out = reactor
        .run(Inputs::new().with("user_ids", vec![1_u32, 2, 3, 4, 5]))
        .max_concurrency(10)
        .await
        .unwrap();
    assert_eq!(
        out.get::<String>().unwrap(),
        "fetch_profiles:5,fetch_preferences:5,fetch_activity:5"
    );
}

#[tokio::test]
async fn missing_inputs_are_all_named_and_nothing_runs() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let reactor = Reactor::builder("r")
        .input("a")
        .input("b")
        .input("c")
        .add(step("s").run_sync(move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }))
        .returns("s")
        .build()
        .unwrap();
    let err = reactor.run(Inputs::new().with("b", 1)).await.unwrap_err();
    match &err {
        Error::MissingInputs { inputs } => assert_eq!(inputs, &["a", "c"]),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("`a`, `c`"));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn extra_inputs_are_ignored_and_transforms_apply_to_every_consumer() {
    let reactor = Reactor::builder("r")
        .input_with("name", |s: &String| s.to_uppercase())
        .add(
            step("a")
                .argument("n", input("name"))
                .run_sync(|a, _| Ok(a.get::<String>("n")?.clone())),
        )
        .add(
            step("b")
                .argument("n", input("name"))
                .argument("a", result("a"))
                .run_sync(|a, _| {
                    Ok(format!(
                        "{}/{}",
                        a.get::<String>("n")?,
                        a.get::<String>("a")?
                    ))
                }),
        )
        .returns("b")
        .build()
        .unwrap();
    let out = reactor
        .run(
            Inputs::new()
                .with("name", "marty".to_string())
                .with("extra", 5),
        )
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "MARTY/MARTY");
    let completed = reactor
        .run(Inputs::new().with("name", "x".to_string()).with("extra", 5))
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert!(!completed.state().inputs.contains_key("extra"));
}

#[tokio::test]
async fn a_failing_input_transform_names_the_input() {
    let reactor = Reactor::builder("r")
        .try_input_with("n", |s: &String| s.parse::<i64>().map_err(Into::into))
        .add(
            step("a")
                .argument("n", input("n"))
                .run_sync(|a, _| Ok(*a.get::<i64>("n")?)),
        )
        .returns("a")
        .build()
        .unwrap();
    let err = reactor
        .run(Inputs::new().with("n", "abc".to_string()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InputTransform { input, .. } if input == "n"),
        "{err}"
    );
    let ok = reactor
        .run(Inputs::new().with("n", "41".to_string()))
        .await
        .unwrap();
    assert_eq!(*ok.get::<i64>().unwrap(), 41);
}

struct Date {
    year: i32,
}

impl Navigate for Date {
    fn field(&self, key: &PathKey) -> Option<Value> {
        match key.as_key()? {
            "year" => Some(Value::new(self.year)),
            _ => None,
        }
    }
}

#[tokio::test]
async fn arguments_read_sub_paths_of_json_maps_and_structs() {
    let reactor = Reactor::builder("paths")
        .add(step("json").run_sync(|_, _| {
            Ok(Value::json(
                serde_json::json!({"level_two": {"level_three": "deep_value"}, "list": [1, 2, 3]}),
            ))
        }))
        .add(step("map").run_sync(|_, _| {
            let mut m = ValueMap::new();
            m.insert("nested_value".into(), Value::new("hello".to_string()));
            Ok(m)
        }))
        .add(step("date").run_sync(|_, _| Ok(Value::navigable(Date { year: 1985 }))))
        .add(
            step("read")
                .argument("deep", result("json").path(["level_two", "level_three"]))
                .argument("second", result("json").at("list").at(1))
                .argument("nested", result("map").at("nested_value"))
                .argument("year", result("date").at("year"))
                .argument("constant", value(3_i64))
                .run_sync(|a, _| {
                    Ok(format!(
                        "{} {} {} {} {}",
                        a.get::<serde_json::Value>("deep")?,
                        a.get::<serde_json::Value>("second")?,
                        a.get::<String>("nested")?,
                        a.get::<i32>("year")?,
                        a.get::<i64>("constant")?
                    ))
                }),
        )
        .returns("read")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(
        out.get::<String>().unwrap(),
        "\"deep_value\" 2 hello 1985 3"
    );
}

#[tokio::test]
async fn a_missing_sub_path_fails_the_step_without_running_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let reactor = Reactor::builder("paths")
        .add(step("year").run_sync(|_, _| Ok(1985_i64)))
        .add(
            step("use")
                .argument("current_year", result("year").at("year"))
                .run_sync(move |_, _| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        )
        .returns("use")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let e = &err.errors[0];
    assert_eq!(e.step, "use");
    assert_eq!(e.phase, reactor::Phase::Arguments);
    assert!(
        matches!(&e.kind, StepErrorKind::ArgumentPath { argument, value_type, .. } if argument == "current_year" && value_type.contains("i64")),
        "{e}"
    );
}

#[tokio::test]
async fn argument_transforms_are_typed_and_errors_name_both_types() {
    let reactor = Reactor::builder("t")
        .input("whom")
        .add(
            step("greet")
                .argument("len", input("whom").map(|s: &String| s.len()))
                .run_sync(|a, _| Ok(*a.get::<usize>("len")?)),
        )
        .returns("greet")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new().with("whom", "Marty".to_string()))
        .await
        .unwrap();
    assert_eq!(*out.get::<usize>().unwrap(), 5);
    let err = run_error(
        reactor
            .run(Inputs::new().with("whom", 5_i32))
            .await
            .unwrap_err(),
    );
    let msg = err.errors[0].to_string();
    assert!(
        msg.contains("`len`") && msg.contains("i32") && msg.contains("String"),
        "{msg}"
    );
}

#[tokio::test]
async fn reading_an_argument_as_the_wrong_type_names_argument_step_and_types() {
    let reactor = Reactor::builder("t")
        .add(step("n").run_sync(|_, _| Ok(1_u8)))
        .add(
            step("consumer")
                .argument("number", result("n"))
                .run_sync(|a, _| Ok(a.get::<String>("number")?.clone())),
        )
        .returns("consumer")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    let msg = err.errors[0].to_string();
    for part in ["`number`", "`consumer`", "u8", "String"] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
}

#[tokio::test]
async fn the_whole_argument_map_can_be_transformed() {
    let reactor = Reactor::builder("t")
        .input("first")
        .input("last")
        .add(
            step("name")
                .argument("first", input("first"))
                .argument("last", input("last"))
                .transform_arguments(|args| {
                    let full = format!(
                        "{} {}",
                        args.get::<String>("first")?,
                        args.get::<String>("last")?
                    );
                    Ok(reactor::Arguments::from_pairs(
                        args.step(),
                        [("whom", Value::new(full))],
                    ))
                })
                .run_sync(|a, _| {
                    assert!(!a.contains("first"));
                    Ok(a.get::<String>("whom")?.clone())
                }),
        )
        .returns("name")
        .build()
        .unwrap();
    let out = reactor
        .run(
            Inputs::new()
                .with("first", "Marty".to_string())
                .with("last", "McFly".to_string()),
        )
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "Marty McFly");
}

#[tokio::test]
async fn wait_for_orders_steps_without_passing_data() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut b = Reactor::builder("w");
    for name in ["a", "b"] {
        let order = order.clone();
        b.add(step(name).run(move |_, ctx| {
            let order = order.clone();
            async move {
                tokio::task::yield_now().await;
                order.lock().unwrap().push(ctx.step_name().to_string());
                Ok(())
            }
        }));
    }
    let o = order.clone();
    b.add(
        step("c")
            .argument("name", value("c".to_string()))
            .wait_for("a")
            .wait_for("b")
            .run_sync(move |a, _| {
                assert_eq!(a.len(), 1);
                o.lock().unwrap().push(a.get::<String>("name")?.clone());
                Ok(())
            }),
    );
    let reactor = b.returns("c").build().unwrap();
    reactor.run(Inputs::new()).await.unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.last().unwrap(), "c");
    assert_eq!(order.len(), 3);
}

fn fan(n: usize, gauge: Arc<Gauge>) -> Reactor {
    let mut b = Reactor::builder("fan");
    let mut collect = step("collect");
    for i in 0..n {
        let gauge = gauge.clone();
        let name = format!("s{i}");
        b.add(step(name.clone()).run(move |_, _| {
            let gauge = gauge.clone();
            async move {
                gauge.enter();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                gauge.exit();
                Ok(i)
            }
        }));
        collect = collect.argument(name.clone(), result(name));
    }
    b.add(collect.run_sync(|a, _| {
        Ok(a.iter()
            .map(|(_, v)| *v.get::<usize>().unwrap())
            .sum::<usize>())
    }));
    b.returns("collect").build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_bounds_the_steps_running_at_once() {
    let gauge = Arc::new(Gauge::default());
    let reactor = fan(40, gauge.clone());
    let out = reactor.run(Inputs::new()).max_concurrency(3).await.unwrap();
    assert_eq!(*out.get::<usize>().unwrap(), (0..40).sum::<usize>());
    assert!(gauge.max() <= 3, "saw {}", gauge.max());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_run_runs_every_step_one_at_a_time_in_the_callers_task() {
    let gauge = Arc::new(Gauge::default());
    let reactor = fan(10, gauge.clone());
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let t = tasks.clone();
    let reactor2 = {
        let mut b = Reactor::builder("ids");
        for i in 0..4 {
            let t = t.clone();
            b.add(step(format!("s{i}")).run_sync(move |_, _| {
                t.lock().unwrap().push(tokio::task::try_id());
                Ok(())
            }));
        }
        b.add(
            step("end")
                .wait_for("s0")
                .wait_for("s1")
                .wait_for("s2")
                .wait_for("s3")
                .run_sync(|_, _| Ok(())),
        );
        b.returns("end").build().unwrap()
    };
    tokio::spawn(async move {
        reactor.run(Inputs::new()).run_async(false).await.unwrap();
        let caller = tokio::task::id();
        reactor2.run(Inputs::new()).run_async(false).await.unwrap();
        let ids = tasks.lock().unwrap().clone();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| *id == Some(caller)));
        tasks.lock().unwrap().clear();
        reactor2.run(Inputs::new()).await.unwrap();
        let ids = tasks.lock().unwrap().clone();
        assert!(
            ids.iter().all(|id| *id != Some(caller)),
            "async steps run in their own tasks"
        );
    })
    .await
    .unwrap();
    assert_eq!(gauge.max(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn cpu_bound_steps_do_not_block_the_async_workers() {
    // One worker thread: if the blocking step ran on it, the async step that
    // unblocks it could never run.
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let rx = Arc::new(Mutex::new(rx));
    let tx = Arc::new(Mutex::new(tx));
    let reactor = Reactor::builder("mixed")
        .add(step("crunch").cpu_bound().run_sync(move |_, _| {
            let got = rx
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(20))
                .map_err(|_| "the I/O step never ran")?;
            Ok(got * 2)
        }))
        .add(step("io").run(move |_, _| {
            let tx = tx.clone();
            async move {
                tokio::task::yield_now().await;
                tx.lock().unwrap().send(21).unwrap();
                Ok(())
            }
        }))
        .add(
            step("end")
                .argument("c", result("crunch"))
                .wait_for("io")
                .run_sync(|a, _| Ok(*a.get::<u32>("c")?)),
        )
        .returns("end")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).max_concurrency(2).await.unwrap();
    assert_eq!(*out.get::<u32>().unwrap(), 42);
}

#[tokio::test]
async fn a_panicking_step_becomes_its_error_and_the_saga_unwinds() {
    let undone = Arc::new(AtomicUsize::new(0));
    let u = undone.clone();
    let reactor = Reactor::builder("p")
        .add(step("ok").run_sync(|_, _| Ok(1)).undo(move |_, _, _| {
            let u = u.clone();
            async move {
                u.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }))
        .add(
            step("boom")
                .wait_for("ok")
                .run_sync(|_, _| -> Result<(), reactor::BoxError> {
                    panic!("Not enough plutonium!")
                }),
        )
        .returns("boom")
        .build()
        .unwrap();
    let err = run_error(reactor.run(Inputs::new()).await.unwrap_err());
    assert_eq!(undone.load(Ordering::SeqCst), 1);
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].step, "boom");
    assert!(matches!(&err.errors[0].kind, StepErrorKind::Panicked(m) if m.contains("plutonium")));
}

#[tokio::test]
async fn context_values_reach_steps_and_the_run_context_wins() {
    let reactor = Reactor::builder("ctx")
        .add(
            step("read")
                .context("who", "step".to_string())
                .context("only_step", 7_i32)
                .run_sync(|_, ctx| {
                    Ok(format!(
                        "{} {} {} {:?}",
                        ctx.get::<String>("who").unwrap(),
                        ctx.get::<i32>("only_step").unwrap(),
                        ctx.reactor_name(),
                        ctx.retries_remaining()
                    ))
                }),
        )
        .returns("read")
        .build()
        .unwrap();
    let out = reactor
        .run(Inputs::new())
        .context("who", "run".to_string())
        .run_id("fixed-id")
        .await
        .unwrap();
    assert_eq!(out.get::<String>().unwrap(), "run 7 ctx Some(100)");
    let done = reactor
        .run(Inputs::new())
        .run_id("fixed-id")
        .outcome()
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert_eq!(done.state().run_id, "fixed-id");
}

#[tokio::test]
async fn an_async_run_rejects_zero_concurrency() {
    let reactor = Reactor::builder("z")
        .add(step("a").run_sync(|_, _| Ok(())))
        .returns("a")
        .build()
        .unwrap();
    let err = reactor
        .run(Inputs::new())
        .max_concurrency(0)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "max_concurrency",
            ..
        }
    ));
    // A sync run needs no slots.
    reactor
        .run(Inputs::new())
        .max_concurrency(0)
        .run_async(false)
        .await
        .unwrap();
}

#[tokio::test]
async fn results_of_many_consumers_are_shared_not_copied() {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut b = Reactor::builder("share");
    b.add(step("big").run_sync(|_, _| Ok(vec![0_u8; 1024])));
    for i in 0..5 {
        let seen = seen.clone();
        b.add(
            step(format!("c{i}"))
                .argument("big", result("big"))
                .run_sync(move |a, _| {
                    let ptr = a.get::<Vec<u8>>("big")?.as_ptr() as usize;
                    seen.lock().unwrap().insert(i, ptr);
                    Ok(())
                }),
        );
    }
    b.add(
        step("end")
            .wait_for("c0")
            .wait_for("c1")
            .wait_for("c2")
            .wait_for("c3")
            .wait_for("c4")
            .run_sync(|_, _| Ok(())),
    );
    b.returns("end")
        .build()
        .unwrap()
        .run(Inputs::new())
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let first = seen[&0];
    assert!(seen.values().all(|p| *p == first));
}

/// Plain closures (`run_sync`), which the executor runs in chunks.
fn plain_fan(
    n: usize,
    gauge: Arc<Gauge>,
    runs: Arc<Vec<AtomicUsize>>,
    spin: std::time::Duration,
) -> Reactor {
    let mut b = Reactor::builder("plain_fan");
    let mut collect = step("collect");
    for i in 0..n {
        let gauge = gauge.clone();
        let runs = runs.clone();
        let name = format!("p{i}");
        b.add(step(name.clone()).run_sync(move |_, _| {
            gauge.enter();
            runs[i].fetch_add(1, Ordering::SeqCst);
            // Busy work (not synchronisation): long enough, when asked, to
            // use up a chunk's time budget.
            let started = std::time::Instant::now();
            while started.elapsed() < spin {
                std::hint::spin_loop();
            }
            gauge.exit();
            Ok(i)
        }));
        collect = collect.argument(name.clone(), result(name));
    }
    b.add(collect.run_sync(|a, _| {
        Ok(a.iter()
            .map(|(_, v)| *v.get::<usize>().unwrap())
            .collect::<Vec<_>>())
    }));
    b.returns("collect").build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_steps_run_in_chunks_within_the_concurrency_limit() {
    let n = 300;
    let gauge = Arc::new(Gauge::default());
    let runs = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let reactor = plain_fan(n, gauge.clone(), runs.clone(), std::time::Duration::ZERO);
    let out = reactor.run(Inputs::new()).max_concurrency(2).await.unwrap();
    assert_eq!(
        *out.get::<Vec<usize>>().unwrap(),
        (0..n).collect::<Vec<_>>()
    );
    assert!(gauge.max() <= 2, "saw {}", gauge.max());
    assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_out_of_time_hands_back_its_steps_and_each_runs_once() {
    let n = 64;
    let gauge = Arc::new(Gauge::default());
    let runs = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    // 100 µs each: a chunk's 200 µs budget runs out after a few steps.
    let reactor = plain_fan(
        n,
        gauge.clone(),
        runs.clone(),
        std::time::Duration::from_micros(100),
    );
    let out = reactor.run(Inputs::new()).max_concurrency(2).await.unwrap();
    assert_eq!(
        *out.get::<Vec<usize>>().unwrap(),
        (0..n).collect::<Vec<_>>()
    );
    assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    assert!(gauge.max() <= 2, "saw {}", gauge.max());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_steps_on_a_shared_pool_hold_its_slots() {
    let n = 100;
    let gauge = Arc::new(Gauge::default());
    let runs = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let reactor = plain_fan(
        n,
        gauge.clone(),
        runs.clone(),
        std::time::Duration::from_micros(20),
    );
    let pool = reactor::ConcurrencyPool::new(3);
    let mut handles = Vec::new();
    for _ in 0..4 {
        let r = reactor.clone();
        let p = pool.clone();
        handles.push(tokio::spawn(async move {
            r.run(Inputs::new()).max_concurrency(8).pool(p).await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert!(gauge.max() <= 3, "saw {}", gauge.max());
    assert_eq!(pool.available(), 3);
}
