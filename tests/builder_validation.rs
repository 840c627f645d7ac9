//! Planning rejects bad reactors before anything runs, naming the problem.

use reactor::{input, result, step, Error, ErrorClass, Reactor, StepSpec};

fn noop(name: &str) -> StepSpec {
    step(name.to_string()).run_sync(|_, _| Ok(()))
}

#[test]
fn duplicate_step_names_are_rejected_with_the_name() {
    let err = Reactor::builder("dup")
        .add(noop("a"))
        .add(noop("a"))
        .returns("a")
        .build()
        .unwrap_err();
    match &err {
        Error::Duplicate { what, name, count } => {
            assert_eq!((*what, name.as_str(), *count), ("steps", "a", 2));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("`a`"));
}

#[test]
fn duplicate_inputs_are_rejected() {
    let err = Reactor::builder("dup")
        .input("x")
        .input("x")
        .add(noop("a"))
        .returns("a")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Duplicate { what: "inputs", .. }),
        "{err}"
    );
}

#[test]
fn unknown_input_names_step_argument_and_input() {
    let err = Reactor::builder("r")
        .add(noop("a").argument("who", input("nobody")))
        .returns("a")
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownInput { .. }));
    for part in ["`a`", "`who`", "`nobody`"] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }
}

#[test]
fn unknown_step_in_argument_or_wait_for_is_rejected() {
    let err = Reactor::builder("r")
        .add(noop("a").argument("v", result("ghost")))
        .returns("a")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`ghost`"), "{err}");
    let err = Reactor::builder("r")
        .add(noop("a").wait_for("phantom"))
        .returns("a")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownStep { step, dependency } if step == "a" && dependency == "phantom")
    );
}

#[test]
fn cycles_name_their_steps() {
    let err = Reactor::builder("r")
        .add(noop("start"))
        .add(noop("a").argument("x", result("c")).wait_for("start"))
        .add(noop("b").argument("x", result("a")))
        .add(noop("c").argument("x", result("b")))
        .add(noop("end").argument("x", result("c")))
        .returns("end")
        .build()
        .unwrap_err();
    let Error::Cycle { cycle, .. } = &err else {
        panic!("expected a cycle, got {err:?}")
    };
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    assert_eq!(cycle.first(), cycle.last());
    let mut members: Vec<&str> = cycle[..3].iter().map(String::as_str).collect();
    members.sort();
    assert_eq!(members, ["a", "b", "c"]);
    assert!(err.to_string().contains("cyclic"));
    // The cycle is listed in data-flow order: each feeds the next.
    let pos = |s: &str| cycle.iter().position(|c| c == s).unwrap();
    let next = |s: &str| cycle[pos(s) + 1].clone();
    assert_eq!(next("a"), "b");
    assert_eq!(next("b"), "c");
}

#[test]
fn a_step_reading_itself_is_a_cycle() {
    let err = Reactor::builder("r")
        .add(noop("a").argument("x", result("a")))
        .returns("a")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Cycle { .. }), "{err}");
}

#[test]
fn return_step_must_be_named_and_exist() {
    let err = Reactor::builder("r").add(noop("a")).build().unwrap_err();
    assert!(matches!(err, Error::MissingReturn { .. }));
    assert_eq!(err.class(), ErrorClass::Validation);
    let err = Reactor::builder("r")
        .add(noop("a"))
        .returns("b")
        .build()
        .unwrap_err();
    assert!(matches!(&err, Error::UnknownReturn { step } if step == "b"));
}

#[test]
fn a_reactor_needs_steps() {
    let err = Reactor::builder("empty").returns("a").build().unwrap_err();
    assert!(matches!(err, Error::NoSteps { .. }));
}

#[test]
fn steps_need_exactly_one_implementation() {
    let err = Reactor::builder("r")
        .add(step("bare"))
        .returns("bare")
        .build()
        .unwrap_err();
    assert!(matches!(&err, Error::NoImplementation { step } if step == "bare"));

    struct Custom;
    #[reactor::async_trait]
    impl reactor::Step for Custom {
        async fn run(&self, _: reactor::Arguments, _: reactor::Context) -> reactor::Outcome {
            reactor::Outcome::ok(())
        }
    }
    let err = Reactor::builder("r")
        .add(step("both").implementation(Custom).run_sync(|_, _| Ok(())))
        .returns("both")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::ConflictingImplementation { step, callback: "run" } if step == "both"),
        "{err:?}"
    );
}

#[test]
fn large_reactors_plan() {
    let n = 100_000;
    let mut b = Reactor::builder("wide");
    b.input("x");
    let mut sum = step("sum");
    for i in 0..n {
        let name = format!("s{i}");
        b.add(noop(&name).argument("x", input("x")));
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run_sync(|args, _| Ok(args.len())));
    b.returns("sum");
    let reactor = b.build().unwrap();
    assert_eq!(reactor.step_count(), n + 1);
    assert_eq!(reactor.return_step(), "sum");
}

#[test]
fn large_reactors_report_their_first_planning_error() {
    // Large enough to be planned on all cores: the error is still the one a
    // step-by-step pass would meet first.
    let n = 60_000;
    let mut b = Reactor::builder("wide");
    for i in 0..n {
        let mut s = noop(&format!("s{i}"));
        if i == 55_000 {
            s = s.argument("v", result("nowhere_a"));
        }
        if i == 58_000 {
            s = s.argument("v", result("nowhere_b"));
        }
        b.add(s);
    }
    b.returns("s0");
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, Error::UnknownStep { step, dependency } if step == "s55000" && dependency == "nowhere_a"),
        "{err}"
    );
}
