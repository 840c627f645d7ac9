//! group and around: nested steps as an inner reactor.

mod common;

use common::run_error;
use reactor::kinds::{around, group, EmptyNesting};
use reactor::{input, result, step, Inputs, Reactor, ValueMap};

#[tokio::test]
async fn before_all_chooses_the_steps_and_after_all_makes_the_result() {
    let g = group("g")
        .steps([
            step("a").run_sync(|_, _| Ok("a")),
            step("b").run_sync(|_, _| Ok("b")),
        ])
        .before_all(|args, steps| {
            Ok((
                args,
                steps.into_iter().filter(|s| s.name() == "b").collect(),
            ))
        })
        .after_all(|results| Ok(results.keys().cloned().collect::<Vec<_>>().join(",")))
        .into_step()
        .unwrap();
    let r = Reactor::builder("r").add(g).returns("g").build().unwrap();
    let out = r.run(Inputs::new()).await.unwrap();
    assert_eq!(out.get::<String>().unwrap(), "b");
}

#[tokio::test]
async fn nested_steps_read_outer_values_through_the_group_arguments() {
    let g = group("g")
        .steps([step("inner_step")
            .argument("v", input("parent_value"))
            .run_sync(|a, _| Ok(format!("inner processed: {}", a.get::<String>("v")?)))])
        .into_step()
        .unwrap()
        .argument("parent_value", result("parent_step").at("parent_data"));
    let r = Reactor::builder("r")
        .add(step("parent_step").run_sync(|_, _| {
            let mut m = ValueMap::new();
            m.insert(
                "parent_data".into(),
                reactor::Value::new("from_parent".to_string()),
            );
            Ok(m)
        }))
        .add(g)
        .returns("g")
        .build()
        .unwrap();
    let out = r.run(Inputs::new()).await.unwrap();
    let map = out.get::<ValueMap>().unwrap();
    assert_eq!(
        map["inner_step"].get::<String>().unwrap(),
        "inner processed: from_parent"
    );
}

#[tokio::test]
async fn a_nested_step_reading_an_input_the_group_lacks_fails() {
    let g = group("g")
        .steps([step("s")
            .argument("arg", input("arg"))
            .run_sync(|_, _| Ok(()))])
        .into_step()
        .unwrap();
    let r = Reactor::builder("r").add(g).returns("g").build().unwrap();
    let err = run_error(r.run(Inputs::new()).await.unwrap_err());
    assert!(err.to_string().contains("`arg`"), "{err}");
}

#[test]
fn groups_and_arounds_need_steps() {
    assert!(group("g").into_step().is_err());
    let err = around("a", Vec::new(), |_, _, _, _| async { Ok(()) }).unwrap_err();
    assert_eq!(
        err.to_string(),
        EmptyNesting { step: "a".into() }.to_string()
    );
}

#[tokio::test]
async fn around_wraps_the_nested_run() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    let wrapped = around(
        "tx",
        [
            step("a").run_sync(|_, _| Ok("a")),
            step("b").run_sync(|_, _| Ok("b")),
        ],
        move |args, _ctx, steps, nested| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push("begin");
                let only_b: Vec<_> = steps.into_iter().filter(|s| s.name() == "b").collect();
                let results = nested.run(&args, only_b).await?;
                l.lock().unwrap().push("commit");
                let empty = nested.run(&args, Vec::new()).await?;
                assert!(empty.is_empty());
                Ok(results.keys().cloned().collect::<Vec<_>>())
            }
        },
    )
    .unwrap();
    let r = Reactor::builder("r")
        .add(wrapped)
        .returns("tx")
        .build()
        .unwrap();
    let out = r.run(Inputs::new()).await.unwrap();
    assert_eq!(*out.get::<Vec<String>>().unwrap(), ["b"]);
    assert_eq!(*log.lock().unwrap(), ["begin", "commit"]);
}
