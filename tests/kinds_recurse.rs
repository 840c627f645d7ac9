//! recurse: a reactor run repeatedly on its own result.

mod common;

use common::run_error;
use reactor::kinds::{recurse, RecurseError};
use reactor::{input, step, value, Inputs, Reactor, Value, ValueMap};

fn map(pairs: &[(&str, u64)]) -> ValueMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::new(*v)))
        .collect()
}

fn counter() -> Reactor {
    Reactor::builder("counter")
        .input("counter")
        .add(
            step("inc")
                .argument("counter", input("counter"))
                .run_sync(|a, _| Ok(map(&[("counter", a.get::<u64>("counter")? + 1)]))),
        )
        .returns("inc")
        .build()
        .unwrap()
}

fn count(v: &Value) -> u64 {
    *v.get::<ValueMap>().unwrap()["counter"]
        .get::<u64>()
        .unwrap()
}

async fn run(step: reactor::StepSpec) -> Result<Value, reactor::Error> {
    Reactor::builder("outer")
        .add(step.argument("counter", value(0_u64)))
        .returns("loop")
        .build()
        .unwrap()
        .run(Inputs::new())
        .await
}

#[tokio::test]
async fn it_stops_at_max_iterations_or_the_exit_condition() {
    let out = run(recurse("loop", counter())
        .max_iterations(5)
        .into_step()
        .unwrap())
    .await
    .unwrap();
    assert_eq!(count(&out), 5);
    let out = run(recurse("loop", counter())
        .until(|v| count(v) >= 10)
        .max_iterations(20)
        .into_step()
        .unwrap())
    .await
    .unwrap();
    assert_eq!(count(&out), 10);
}

#[tokio::test]
async fn fibonacci() {
    let fib = Reactor::builder("fib")
        .input("n")
        .input("a")
        .input("b")
        .add(
            step("next")
                .argument("n", input("n"))
                .argument("a", input("a"))
                .argument("b", input("b"))
                .run_sync(|x, _| {
                    let (n, a, b) = (
                        *x.get::<u64>("n")?,
                        *x.get::<u64>("a")?,
                        *x.get::<u64>("b")?,
                    );
                    Ok(map(&[("n", n - 1), ("a", b), ("b", a + b)]))
                }),
        )
        .returns("next")
        .build()
        .unwrap();
    let reactor = Reactor::builder("outer")
        .add(
            recurse("loop", fib)
                .until(|v| *v.get::<ValueMap>().unwrap()["n"].get::<u64>().unwrap() == 0)
                .into_step()
                .unwrap()
                .argument("n", value(5_u64))
                .argument("a", value(0_u64))
                .argument("b", value(1_u64)),
        )
        .returns("loop")
        .build()
        .unwrap();
    let out = reactor.run(Inputs::new()).await.unwrap();
    assert_eq!(
        *out.get::<ValueMap>().unwrap()["b"].get::<u64>().unwrap(),
        8
    );
}

#[test]
fn a_recursion_needs_a_way_to_stop() {
    let err = recurse("loop", counter()).into_step().unwrap_err();
    assert!(matches!(err, RecurseError::MissingConstraints { .. }));
    assert!(err.to_string().contains("`loop`"));
}

#[tokio::test]
async fn a_result_that_is_not_the_inputs_fails_the_step() {
    let bad = Reactor::builder("bad")
        .input("counter")
        .add(
            step("x")
                .argument("counter", input("counter"))
                .run_sync(|_, _| Ok(7_u8)),
        )
        .returns("x")
        .build()
        .unwrap();
    let err = run_error(
        run(recurse("loop", bad).max_iterations(3).into_step().unwrap())
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        err.find_reason::<RecurseError>(),
        Some(RecurseError::NotInputs { iteration: 1, .. })
    ));
}

#[tokio::test]
async fn a_halt_inside_fails_the_step_naming_the_reactor() {
    let halting = Reactor::builder("halting")
        .input("counter")
        .add(
            step("pause")
                .argument("counter", input("counter"))
                .run_sync(|_, _| Ok(reactor::Outcome::Halt(Value::new("later")))),
        )
        .returns("pause")
        .build()
        .unwrap();
    let err = run_error(
        run(recurse("loop", halting)
            .max_iterations(3)
            .into_step()
            .unwrap())
        .await
        .unwrap_err(),
    );
    assert!(matches!(
        err.find_reason::<RecurseError>(),
        Some(RecurseError::Halted { step, reactor }) if step == "loop" && reactor == "halting"
    ));
}
