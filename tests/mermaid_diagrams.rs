//! Mermaid diagrams: what a reactor's diagram holds, run-annotated
//! diagrams, and every diagram checked by the real Mermaid parser.

mod common;

use std::sync::Arc;

use reactor::kinds::{around, compose, element, group, map, recurse, switch, template, transform};
use reactor::{
    input, result, step, value, Direction, Inputs, MermaidOptions, Reactor, Recording, Value,
    ValueMap,
};

fn inner() -> Reactor {
    Reactor::builder("inner")
        .input("n")
        .add(
            step("plus_one")
                .argument("n", input("n"))
                .run_sync(|a, _| Ok(a.get::<i64>("n")? + 1)),
        )
        .returns("plus_one")
        .build()
        .unwrap()
}

fn counter() -> Reactor {
    Reactor::builder("counter")
        .input("n")
        .add(step("next").argument("n", input("n")).run_sync(|a, _| {
            let mut m = ValueMap::new();
            m.insert("n".into(), Value::new(a.get::<i64>("n")? + 1));
            Ok(m)
        }))
        .returns("next")
        .build()
        .unwrap()
}

/// One of every kind, with names that need escaping.
fn kitchen_sink() -> Reactor {
    let doubled = map("double \"all\"", input("items"))
        .steps([step("twice")
            .argument("x", element("double \"all\""))
            .argument("k", result("offset"))
            .run_sync(|a, _| Ok(a.get::<i64>("x")? * 2 + a.get::<i64>("k")?))])
        .into_step()
        .unwrap();
    let picked = switch("pick", result("offset"))
        .branch(
            |v| v.get::<i64>().is_ok_and(|n| *n > 0),
            [step("positive")
                .argument("v", result("offset"))
                .run_sync(|_, _| Ok("+"))],
            Some("positive"),
        )
        .default([step("other").run_sync(|_, _| Ok("0"))], Some("other"))
        .into_step();
    let grouped = group("grouped")
        .steps([step("g1")
            .argument("a", input("a"))
            .run_sync(|_, _| Ok(1_i64))])
        .into_step()
        .unwrap()
        .argument("a", result("offset"));
    let wrapped = around(
        "wrapped",
        [step("w1").run_sync(|_, _| Ok(2_i64))],
        |args, _ctx, steps, nested| async move {
            let results = nested.run(&args, steps).await?;
            Ok::<_, reactor::BoxError>(results.len() as i64)
        },
    )
    .unwrap();
    let looped = recurse("looped", counter())
        .max_iterations(3)
        .into_step()
        .unwrap()
        .argument("n", value(0_i64));
    Reactor::builder("kitchen <sink> & #1")
        .input("items")
        .input("start")
        .add(
            step("offset")
                .argument("start", input("start"))
                .description("a \"start\"\nvalue")
                .run_sync(|a, _| Ok(*a.get::<i64>("start")?)),
        )
        .add(doubled)
        .add(compose("composed", inner()).argument("n", result("offset")))
        .add(picked)
        .add(grouped)
        .add(wrapped)
        .add(looped)
        .add(transform(
            "len",
            result("double \"all\""),
            |v: &Vec<Value>| v.len() as i64,
        ))
        .add(
            template("summary", "{{ n }} items")
                .argument("n", result("len"))
                .wait_for("pick")
                .wait_for("grouped"),
        )
        .returns("summary")
        .build()
        .unwrap()
}

#[test]
fn a_diagram_holds_inputs_steps_edges_and_the_return() {
    let text = kitchen_sink().to_mermaid(&MermaidOptions::new());
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    assert!(
        text.contains(r#"[/"items"/]"#),
        "inputs are parallelograms: {text}"
    );
    assert!(text.contains(r#"["offset"]"#), "{text}");
    assert!(
        text.contains(r#"-->|"start"|"#),
        "argument edges are labelled: {text}"
    );
    assert!(text.contains(" -.-> "), "wait_for edges are dotted: {text}");
    assert!(text.contains(r#"(["return"])"#), "{text}");
    assert!(
        text.contains(r#"["summary<br/><i>template</i>"]"#),
        "{text}"
    );
    assert!(text.contains("{{\"0\"}}"), "constants are hexagons: {text}");
    // Names are escaped, not cut.
    assert!(text.contains("double #quot;all#quot;"), "{text}");
    assert!(text.contains("kitchen #lt;sink#gt; #amp; #35;1"), "{text}");
}

#[test]
fn nested_kinds_are_subgraphs_when_expanded() {
    let text = kitchen_sink().to_mermaid(&MermaidOptions::new());
    for (name, kind) in [
        ("double #quot;all#quot;", "map"),
        ("composed", "compose"),
        ("pick", "switch"),
        ("grouped", "group"),
        ("wrapped", "around"),
        ("looped", "recurse"),
    ] {
        let line = format!("[\"{name}<br/><i>{kind}</i>\"]");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("subgraph") && l.ends_with(&line)),
            "{name} is a subgraph: {text}"
        );
    }
    for nested in ["twice", "plus_one", "positive", "other", "g1", "w1", "next"] {
        assert!(
            text.contains(&format!("[\"{nested}\"]")),
            "{nested}: {text}"
        );
    }
    assert!(
        text.contains(r#"subgraph b"#)
            && text.contains(r#"["branch 1"]"#)
            && text.contains(r#"["default"]"#),
        "{text}"
    );
    assert!(text.contains(r#"[/"element"/]"#), "{text}");
    // An outer result read inside the map is an edge into it.
    assert!(text.contains(r#"-->|"k"|"#), "{text}");
    // The kinds' own plumbing is not drawn.
    assert!(!text.contains("__"), "{text}");
}

#[test]
fn collapsed_kinds_are_single_nodes_and_edges_unlabelled() {
    let options = MermaidOptions::new()
        .expand(false)
        .arguments(false)
        .direction(Direction::LeftRight);
    let text = kitchen_sink().to_mermaid(&options);
    assert!(text.starts_with("flowchart LR\n"));
    assert!(!text.contains("subgraph"), "{text}");
    assert!(
        text.contains(r#"[["composed<br/><i>compose</i>"]]"#),
        "{text}"
    );
    assert!(!text.contains("twice"), "{text}");
    assert!(!text.contains("-->|"), "{text}");
    let edges: Vec<&str> = text.lines().filter(|l| l.contains(" --> ")).collect();
    let unique: std::collections::HashSet<&&str> = edges.iter().collect();
    assert_eq!(edges.len(), unique.len(), "edges are drawn once: {text}");
}

#[test]
fn descriptions_and_depth_are_options() {
    let text = kitchen_sink().to_mermaid(&MermaidOptions::new().descriptions(true).max_depth(0));
    assert!(text.contains("a #quot;start#quot; value"), "{text}");
    assert!(
        !text.contains("subgraph"),
        "depth 0 expands nothing: {text}"
    );
}

async fn recorded(reactor: &Reactor, inputs: Inputs) -> (Recording, bool) {
    let recording = Recording::new();
    let ok = reactor
        .run(inputs)
        .middleware(Arc::new(recording.clone()))
        .outcome()
        .await
        .is_ok();
    (recording, ok)
}

fn saga() -> Reactor {
    Reactor::builder("saga")
        .input("fail")
        .add(
            step("reserve")
                .run_sync(|_, _| Ok(1_i64))
                .undo(|_, _, _| async { Ok(()) }),
        )
        .add(
            step("charge")
                .argument("r", result("reserve"))
                .argument("fail", input("fail"))
                .run_sync(|a, _| {
                    if *a.get::<bool>("fail")? {
                        Err("card declined".into())
                    } else {
                        Ok(2_i64)
                    }
                }),
        )
        .add(
            step("ship")
                .argument("c", result("charge"))
                .run_sync(|_, _| Ok(3_i64)),
        )
        .add(
            step("audit")
                .run_if(|_, _| false)
                .run_sync(|_, _| Ok(0_i64)),
        )
        .returns("ship")
        .build()
        .unwrap()
}

fn class_of(text: &str, step: &str) -> String {
    let id = text
        .lines()
        .find(|l| l.contains(&format!("[\"{step}<br/>")))
        .and_then(|l| l.trim().split('[').next())
        .unwrap_or_else(|| panic!("no node for {step}: {text}"))
        .to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("class {id} ")))
        .unwrap_or_else(|| panic!("no class for {step}: {text}"))
        .to_string()
}

#[tokio::test]
async fn a_failed_run_shows_done_undone_failed_skipped_and_never_ran() {
    let reactor = saga();
    let (recording, ok) = recorded(&reactor, Inputs::new().with("fail", true)).await;
    assert!(!ok);
    let text = reactor.to_mermaid_run(&recording, &MermaidOptions::new());
    assert_eq!(class_of(&text, "reserve"), "undone");
    assert_eq!(class_of(&text, "charge"), "failed");
    assert_eq!(class_of(&text, "ship"), "neverRan");
    assert_eq!(class_of(&text, "audit"), "skipped");
    assert!(text.contains("classDef undone"), "{text}");
    assert!(
        text.contains("reserve<br/>undone · "),
        "durations are shown: {text}"
    );
    assert!(recording.timeline().contains("run failed after"));
}

#[tokio::test]
async fn a_completed_run_shows_counts_for_map_elements_and_added_steps() {
    let reactor = kitchen_sink();
    let inputs = Inputs::new()
        .with(
            "items",
            vec![Value::new(1_i64), Value::new(2_i64), Value::new(3_i64)],
        )
        .with("start", 5_i64);
    let (recording, ok) = recorded(&reactor, inputs).await;
    assert!(ok);
    let text = reactor.to_mermaid_run(&recording, &MermaidOptions::new());
    assert!(
        text.contains("twice<br/>done 3 · "),
        "one record per nested step: {text}"
    );
    assert_eq!(class_of(&text, "summary"), "done");
    assert_eq!(class_of(&text, "other"), "neverRan");
    assert_eq!(class_of(&text, "positive"), "done");
    assert!(
        !text.contains("added while running"),
        "branch steps are known: {text}"
    );
}

#[tokio::test]
async fn a_halted_run_shows_the_halting_step() {
    let reactor = Reactor::builder("halts")
        .add(step("a").run_sync(|_, _| Ok(1_i64)))
        .add(
            step("stop")
                .argument("a", result("a"))
                .run_sync(|_, _| Ok(reactor::Outcome::Halt(Value::new(0_i64)))),
        )
        .add(
            step("after")
                .argument("s", result("stop"))
                .run_sync(|_, _| Ok(2_i64)),
        )
        .returns("after")
        .build()
        .unwrap();
    let (recording, ok) = recorded(&reactor, Inputs::new()).await;
    assert!(ok, "a halt is not a failure");
    let text = reactor.to_mermaid_run(&recording, &MermaidOptions::new());
    assert_eq!(class_of(&text, "stop"), "halted");
    assert_eq!(class_of(&text, "a"), "done");
    assert_eq!(class_of(&text, "after"), "neverRan");
    assert!(recording.timeline().contains("run halted"));
}

#[tokio::test]
async fn steps_added_while_running_get_a_subgraph() {
    let reactor = Reactor::builder("emits")
        .add(step("spawner").run_sync(|_, _| {
            Ok(reactor::Outcome::OkWithSteps(
                Value::unit(),
                vec![step("spawned").run_sync(|_, _| Ok(1_i64))],
            ))
        }))
        .returns("spawner")
        .build()
        .unwrap();
    let (recording, ok) = recorded(&reactor, Inputs::new()).await;
    assert!(ok);
    let text = reactor.to_mermaid_run(&recording, &MermaidOptions::new());
    assert!(text.contains(r#"["added while running"]"#), "{text}");
    assert_eq!(class_of(&text, "spawned"), "done");
}

/// Every diagram of this file, in every direction and option, and
/// annotated, parsed by Mermaid itself.
#[tokio::test]
async fn mermaid_parses_every_diagram() {
    let mut diagrams = Vec::new();
    let reactors = [kitchen_sink(), saga(), inner(), counter()];
    for r in &reactors {
        for (k, direction) in [
            Direction::TopDown,
            Direction::LeftRight,
            Direction::BottomUp,
            Direction::RightLeft,
        ]
        .into_iter()
        .enumerate()
        {
            let expand = k % 2 == 0;
            let options = MermaidOptions::new()
                .direction(direction)
                .expand(expand)
                .arguments(k < 2)
                .descriptions(true);
            diagrams.push((format!("{}-{k}", r.name()), r.to_mermaid(&options)));
        }
    }
    let (failed, _) = recorded(&saga(), Inputs::new().with("fail", true)).await;
    diagrams.push((
        "saga-failed".into(),
        saga().to_mermaid_run(&failed, &MermaidOptions::new()),
    ));
    let inputs = Inputs::new()
        .with("items", vec![Value::new(1_i64)])
        .with("start", 0_i64);
    let (done, _) = recorded(&kitchen_sink(), inputs).await;
    for expand in [true, false] {
        let options = MermaidOptions::new().expand(expand);
        diagrams.push((
            format!("sink-run-{expand}"),
            kitchen_sink().to_mermaid_run(&done, &options),
        ));
    }
    common::mermaid::assert_parses("kinds", &diagrams);
}
