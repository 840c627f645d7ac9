//! W1 with steps that await: each of the 10,000 async closures awaits
//! once (`yield_now`) before answering, as the tokio baseline's tasks do.
//! A step that awaits cannot end in the coordinator's first poll, so this
//! measures the task-per-step path itself (W1's own async closures answer
//! at once, and need no task). Reported beside W1; not one of its targets.

use std::sync::Arc;

use super::baseline::{self, get, val, Dag, Node, Src, Val, Work};
use super::{check_eq, ours, ratio, sum_args, timed, variant, w1_expected, x_input, x_val, Bench};
use reactor::{input, result, step, Reactor};

const N: i64 = 10_000;

fn reactor() -> Reactor {
    let mut b = Reactor::builder("w1_awaiting");
    b.input("x");
    let mut sum = step("sum");
    for i in 1..=N {
        let name: Arc<str> = format!("s{i}").into();
        b.add(
            step(name.clone())
                .argument("x", input("x"))
                .run(move |args, _| async move {
                    tokio::task::yield_now().await;
                    Ok(args.get::<i64>("x")? + i)
                }),
        );
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run_sync(|args, _| sum_args(args)));
    b.returns("sum");
    b.build().expect("W1 awaiting plans")
}

fn dag() -> Dag {
    let mut nodes: Vec<Node> = (1..=N)
        .map(|i| Node {
            args: vec![Src::Input(0)],
            work: Work::Async(Arc::new(move |a: Vec<Val>| {
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    val(*get::<i64>(&a[0]) + i)
                })
            })),
        })
        .collect();
    nodes.push(Node {
        args: (0..N as usize).map(Src::Step).collect(),
        work: Work::Sync(Arc::new(|a: &[Val]| {
            val(a.iter().map(|v| *get::<i64>(v)).sum::<i64>())
        })),
    });
    Dag::new(nodes, N as usize)
}

pub(super) fn w1_awaiting(bench: &mut Bench) {
    let cores = bench.cores;
    let expected = w1_expected(N);
    let r = reactor();
    let d = Arc::new(dag());
    let variants = vec![
        variant("ours, awaiting closures", move || {
            let r = r.clone();
            timed(
                async move { r.run(x_input()).max_concurrency(cores).await },
                move |out| check_eq("W1 awaiting", ours::<i64>(out, "W1 awaiting"), &expected),
            )
        }),
        variant("tokio baseline", move || {
            let d = d.clone();
            timed(
                async move { baseline::run_tokio(d, x_val(), cores).await },
                move |v| check_eq("W1 awaiting baseline", *get::<i64>(&v), &expected),
            )
        }),
    ];
    let s = bench.measure(&variants);
    let title = "W1 fanout n=10000, each async closure awaiting once";
    bench.print_table(title, N as usize, &variants, &s);
    println!(
        "  awaiting closures / tokio baseline = {:.2}x (the task-per-step path; reported beside W1)",
        ratio(s[0].median, s[1].median)
    );
}
