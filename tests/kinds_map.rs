//! map: nested steps for each element.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::run_error;
use proptest::prelude::*;
use reactor::kinds::{compose, element, map, switch, MapError, MapSource};
use reactor::{input, result, step, value, Inputs, Reactor, Value};

fn ints(v: &Value) -> Vec<i64> {
    v.get::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|x| *x.get::<i64>().unwrap())
        .collect()
}

fn doubler(batch: usize, strict: bool, allow_async: bool, awaiting: bool) -> Reactor {
    let s = step("double")
        .argument("n", element("m"))
        .argument("by", input("multiplier"));
    let s = if awaiting {
        s.run(|a, _| async move {
            tokio::task::yield_now().await;
            Ok(a.get::<i64>("n")? * a.get::<i64>("by")?)
        })
    } else {
        s.run_sync(|a, _| Ok(a.get::<i64>("n")? * a.get::<i64>("by")?))
    };
    Reactor::builder("r")
        .input("numbers")
        .add(step("multiplier").run_sync(|_, _| Ok(2_i64)))
        .add(
            map("m", input("numbers"))
                .steps([s])
                .batch_size(batch)
                .strict_ordering(strict)
                .allow_async(allow_async)
                .into_step()
                .unwrap()
                .argument("multiplier", result("multiplier")),
        )
        .returns("m")
        .build()
        .unwrap()
}

#[tokio::test]
async fn it_maps_over_its_inputs_with_outer_arguments() {
    for awaiting in [false, true] {
        let r = doubler(2, true, true, awaiting);
        let out = r
            .run(Inputs::new().with("numbers", vec![0_i64, 2, 4, 6, 8, 10]))
            .await
            .unwrap();
        assert_eq!(ints(&out), [0, 4, 8, 12, 16, 20]);
    }
}

#[tokio::test]
async fn an_empty_source_gives_an_empty_list() {
    let r = doubler(10, true, false, true);
    let out = r
        .run(Inputs::new().with("numbers", Vec::<i64>::new()))
        .await
        .unwrap();
    assert!(ints(&out).is_empty());
}

#[tokio::test]
async fn streams_and_iterators_are_pulled_lazily() {
    let pulled = Arc::new(AtomicU64::new(0));
    let p = pulled.clone();
    let source = MapSource::from_iterator((0..10_000_i64).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    }));
    let r = doubler(100, true, true, false);
    let out = r.run(Inputs::new().with("numbers", source)).await.unwrap();
    assert_eq!(ints(&out), (0..10_000).map(|n| n * 2).collect::<Vec<_>>());
    assert_eq!(pulled.load(Ordering::SeqCst), 10_000);
}

#[tokio::test]
async fn a_sink_receives_outputs_instead_of_collecting_them() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = Reactor::builder("r")
        .input("lines")
        .add(
            map("upper", input("lines"))
                .steps([step("up")
                    .argument("line", element("upper"))
                    .run_sync(|a, _| Ok(a.get::<String>("line")?.to_uppercase()))])
                .sink(move |v| {
                    s.lock().unwrap().push(v.get::<String>()?.clone());
                    Ok(())
                })
                .into_step()
                .unwrap(),
        )
        .returns("upper")
        .build()
        .unwrap();
    let source = MapSource::from_stream(futures::stream::iter(vec![
        "a".to_string(),
        "b".to_string(),
    ]));
    let out = r.run(Inputs::new().with("lines", source)).await.unwrap();
    assert_eq!(*out.get::<u64>().unwrap(), 2);
    assert_eq!(*seen.lock().unwrap(), ["A", "B"]);
}

#[tokio::test]
async fn a_failing_element_fails_the_map_and_completed_elements_are_undone() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let u = undone.clone();
    let r = Reactor::builder("r")
        .input("numbers")
        .add(
            map("m", input("numbers"))
                .steps([step("book")
                    .argument("n", element("m"))
                    .run(|a, _| async move {
                        let n = *a.get::<i64>("n")?;
                        if n == 3 {
                            return Err("no seat".into());
                        }
                        Ok(n)
                    })
                    .undo(move |v, _, _| {
                        let u = u.clone();
                        async move {
                            u.lock().unwrap().push(*v.get::<i64>()?);
                            Ok(())
                        }
                    })])
                .batch_size(1)
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap();
    let err = run_error(
        r.run(Inputs::new().with("numbers", vec![0_i64, 1, 2, 3, 4]))
            .await
            .unwrap_err(),
    );
    match err.find_reason::<MapError>() {
        Some(MapError::Element { index, .. }) => assert_eq!(*index, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(*undone.lock().unwrap(), [2, 1, 0]);
}

#[tokio::test]
async fn a_completed_map_is_undone_when_a_later_step_fails() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let u = undone.clone();
    let r = Reactor::builder("r")
        .input("numbers")
        .add(
            map("m", input("numbers"))
                .steps([step("book")
                    .argument("n", element("m"))
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
        .add(reactor::kinds::flunk("later", "later").wait_for("m"))
        .returns("later")
        .build()
        .unwrap();
    r.run(Inputs::new().with("numbers", vec![1_i64, 2]))
        .await
        .unwrap_err();
    assert_eq!(*undone.lock().unwrap(), [2, 1]);
}

#[test]
fn maps_are_checked_when_made() {
    assert!(matches!(
        map("m", input("x")).into_step(),
        Err(MapError::NoSteps { .. })
    ));
    let two = [
        step("a").run_sync(|_, _| Ok(1)),
        step("b").run_sync(|_, _| Ok(2)),
    ];
    assert!(matches!(
        map("m", input("x")).steps(two.clone()).into_step(),
        Err(MapError::MissingReturn { .. })
    ));
    assert!(matches!(
        map("m", input("x")).steps(two).returns("c").into_step(),
        Err(MapError::UnknownReturn { .. })
    ));
}

fn greeter() -> Reactor {
    Reactor::builder("greet")
        .input("item")
        .input("prefix")
        .add(
            step("hello")
                .argument("item", input("item"))
                .argument("prefix", input("prefix"))
                .run_sync(|a, _| {
                    Ok(format!(
                        "{}{}",
                        a.get::<String>("prefix")?,
                        a.get::<i64>("item")?
                    ))
                }),
        )
        .returns("hello")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_inside_a_switch_composing_in_each_element() {
    // switch -> map -> compose, and a map in a map.
    let inner_map = map("inner", element("outer"))
        .steps([step("neg")
            .argument("v", element("inner"))
            .run_sync(|a, _| Ok(-*a.get::<i64>("v")?))])
        .into_step()
        .unwrap();
    let outer_map = map("outer", input("matrix"))
        .steps([inner_map])
        .into_step()
        .unwrap();
    let per_item = map("items", input("numbers"))
        .steps([compose("greet", greeter())
            .argument("item", element("items"))
            .argument("prefix", input("prefix"))])
        .allow_async(true)
        .into_step()
        .unwrap()
        .argument("prefix", value("#".to_string()));
    let r = Reactor::builder("r")
        .input("numbers")
        .input("matrix")
        .input("kind")
        .add(
            switch("choose", input("kind"))
                .branch(
                    |v| v.downcast_ref::<&str>() == Some(&"items"),
                    [per_item],
                    Some("items"),
                )
                .default([outer_map], Some("outer"))
                .into_step(),
        )
        .returns("choose")
        .build()
        .unwrap();
    let out = r
        .run(
            Inputs::new()
                .with("numbers", vec![1_i64, 2])
                .with(
                    "matrix",
                    vec![Value::new(vec![1_i64, 2]), Value::new(vec![3_i64])],
                )
                .with("kind", "items"),
        )
        .await
        .unwrap();
    let greetings: Vec<String> = out
        .get::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap().clone())
        .collect();
    assert_eq!(greetings, ["#1", "#2"]);
    let out = r
        .run(
            Inputs::new()
                .with("numbers", vec![1_i64])
                .with(
                    "matrix",
                    vec![Value::new(vec![1_i64, 2]), Value::new(vec![3_i64])],
                )
                .with("kind", "matrix"),
        )
        .await
        .unwrap();
    let rows: Vec<Vec<i64>> = out.get::<Vec<Value>>().unwrap().iter().map(ints).collect();
    assert_eq!(rows, [vec![-1, -2], vec![-3]]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_map_equals_iter_map(
        items in proptest::collection::vec(-1000_i64..1000, 0..200),
        batch in 1usize..50,
        strict in any::<bool>(),
        awaiting in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let r = doubler(batch, strict, true, awaiting);
        let out = rt.block_on(async { r.run(Inputs::new().with("numbers", items.clone())).await }).unwrap();
        let mut got = ints(&out);
        let mut expected: Vec<i64> = items.iter().map(|n| n * 2).collect();
        if strict {
            prop_assert_eq!(got, expected);
        } else {
            got.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(got, expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_streams_through_a_map_into_a_sink() {
    use std::io::{BufRead, Write};
    use tokio::io::AsyncBufReadExt;

    let dir = std::env::temp_dir().join(format!("reactor-map-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input_path = dir.join("in.txt");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input_path).unwrap());
        for i in 0..10_000 {
            writeln!(w, "line {i}").unwrap();
        }
    }
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let o = out.clone();
    let reactor = Reactor::builder("stream")
        .input("lines")
        .add(
            map("process", input("lines"))
                .batch_size(1_000)
                .strict_ordering(false)
                .steps([step("up")
                    .argument("line", element("process"))
                    .run_sync(|a, _| Ok(a.get::<String>("line")?.to_uppercase()))])
                .sink(move |v| {
                    o.lock().unwrap().push(v.get::<String>()?.clone());
                    Ok(())
                })
                .into_step()
                .unwrap(),
        )
        .returns("process")
        .build()
        .unwrap();
    let file = tokio::fs::File::open(&input_path).await.unwrap();
    let lines = tokio::io::BufReader::new(file).lines();
    let stream = futures::stream::unfold(lines, |mut l| async move {
        l.next_line().await.ok().flatten().map(|line| (line, l))
    });
    let written = reactor
        .run(Inputs::new().with("lines", MapSource::from_stream(stream)))
        .await
        .unwrap();
    assert_eq!(*written.get::<u64>().unwrap(), 10_000);
    let mut got = out.lock().unwrap().clone();
    got.sort();
    let mut want: Vec<String> = std::io::BufReader::new(std::fs::File::open(&input_path).unwrap())
        .lines()
        .map(|l| l.unwrap().to_uppercase())
        .collect();
    want.sort();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn elements_retry_as_steps_do() {
    use reactor::Compensation;
    let tries = Arc::new(AtomicU64::new(0));
    let t = tries.clone();
    let r = Reactor::builder("r")
        .input("numbers")
        .add(
            map("m", input("numbers"))
                .steps([step("flaky")
                    .argument("n", element("m"))
                    .max_retries(2)
                    .run(move |a, ctx| {
                        t.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if ctx.current_try() == 0 {
                                return Err("transient".into());
                            }
                            Ok(*a.get::<i64>("n")?)
                        }
                    })
                    .compensate(|_, _, _| async { Compensation::Retry(None) })])
                .allow_async(true)
                .into_step()
                .unwrap(),
        )
        .returns("m")
        .build()
        .unwrap();
    let out = r
        .run(Inputs::new().with("numbers", vec![5_i64, 6]))
        .await
        .unwrap();
    assert_eq!(ints(&out), [5, 6]);
    assert_eq!(tries.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_steps_read_outer_results_directly() {
    let r = Reactor::builder("r")
        .input("items")
        .add(
            step("get_config").run_sync(|_, _| Ok(("item_".to_string(), "_processed".to_string()))),
        )
        .add(
            map("format", input("items"))
                .steps([step("format_item")
                    .argument("item", element("format"))
                    .argument("config", result("get_config"))
                    .run(|a, _| async move {
                        let (prefix, suffix) = a.get::<(String, String)>("config")?;
                        Ok(format!("{prefix}{}{suffix}", a.get::<i64>("item")?))
                    })])
                .allow_async(true)
                .into_step()
                .unwrap(),
        )
        .returns("format")
        .build()
        .unwrap();
    for run_async in [true, false] {
        let out = r
            .run(Inputs::new().with("items", vec![1_i64, 2, 3]))
            .run_async(run_async)
            .await
            .unwrap();
        let got: Vec<String> = out
            .get::<Vec<Value>>()
            .unwrap()
            .iter()
            .map(|v| v.get::<String>().unwrap().clone())
            .collect();
        assert_eq!(
            got,
            ["item_1_processed", "item_2_processed", "item_3_processed"]
        );
    }
}

#[tokio::test]
async fn elements_of_several_plain_steps_run_in_dependency_order() {
    let r = Reactor::builder("r")
        .input("numbers")
        .add(
            map("m", input("numbers"))
                .steps([
                    // declared before the step it reads
                    step("shout")
                        .argument("v", result("add"))
                        .argument("suffix", value("!".to_string()))
                        .run_sync(|a, _| {
                            Ok(format!(
                                "{}{}",
                                a.get::<i64>("v")?,
                                a.get::<String>("suffix")?
                            ))
                        }),
                    step("add")
                        .argument("n", element("m"))
                        .argument("k", input("k"))
                        .run_sync(|a, _| {
                            let n = *a.get::<i64>("n")?;
                            if n < 0 {
                                return Err("negative".into());
                            }
                            Ok(n + a.get::<i64>("k")?)
                        }),
                ])
                .returns("shout")
                .into_step()
                .unwrap()
                .argument("k", value(10_i64)),
        )
        .returns("m")
        .build()
        .unwrap();
    let out = r
        .run(Inputs::new().with("numbers", vec![1_i64, 2]))
        .await
        .unwrap();
    let got: Vec<String> = out
        .get::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap().clone())
        .collect();
    assert_eq!(got, ["11!", "12!"]);
    let err = run_error(
        r.run(Inputs::new().with("numbers", vec![1_i64, -1]))
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        err.find_reason::<MapError>(),
        Some(MapError::Element { index: 1, .. })
    ));
}
