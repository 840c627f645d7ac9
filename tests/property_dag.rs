//! Property tests of the executor over random DAGs and random failures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use reactor::{result, step, Inputs, Reactor};

const MOD: u64 = 1_000_000_007;

/// A DAG as, for each step, the earlier steps it reads.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..30).prop_flat_map(|n| {
        (0..n)
            .map(|i| proptest::collection::vec(0..i.max(1), 0..=i.min(4)))
            .collect::<Vec<_>>()
            .prop_map(|deps| {
                deps.into_iter()
                    .enumerate()
                    .map(|(i, mut d)| {
                        d.retain(|&j| j < i);
                        d.sort_unstable();
                        d.dedup();
                        d
                    })
                    .collect()
            })
    })
}

/// Each step returns (i + 1) * 31 + the sum of what it reads, mod MOD.
fn reference(deps: &[Vec<usize>]) -> u64 {
    let mut values = Vec::with_capacity(deps.len());
    for (i, d) in deps.iter().enumerate() {
        let v = d
            .iter()
            .fold((i as u64 + 1) * 31, |acc, &j| (acc + values[j]) % MOD);
        values.push(v);
    }
    values.iter().fold(0, |acc, v| (acc + v) % MOD)
}

type Log = Arc<Mutex<Vec<usize>>>;

fn build(deps: &[Vec<usize>], failing: &HashSet<usize>, completed: &Log, undone: &Log) -> Reactor {
    let mut b = Reactor::builder("random");
    let mut total = step("total");
    for (i, d) in deps.iter().enumerate() {
        let fails = failing.contains(&i);
        let completed = completed.clone();
        let undone = undone.clone();
        let mut s = step(format!("s{i}"));
        for &j in d {
            s = s.argument(format!("a{j}"), result(format!("s{j}")));
        }
        let value_of = move |args: &reactor::Arguments| {
            args.iter().fold((i as u64 + 1) * 31, |acc, (_, v)| {
                (acc + *v.get::<u64>().unwrap()) % MOD
            })
        };
        // Even steps await (their own tasks); odd ones are plain closures
        // (run in chunks, or in the coordinator when alone).
        let s = if i % 2 == 0 {
            s.run(move |args, _| {
                let completed = completed.clone();
                async move {
                    tokio::task::yield_now().await;
                    if fails {
                        return Err(format!("s{i} fails").into());
                    }
                    let v = value_of(&args);
                    completed.lock().unwrap().push(i);
                    Ok(v)
                }
            })
        } else {
            s.run_sync(move |args, _| {
                if fails {
                    return Err(format!("s{i} fails").into());
                }
                let v = value_of(args);
                completed.lock().unwrap().push(i);
                Ok(v)
            })
        };
        let s = s.undo(move |_, _, _| {
            let undone = undone.clone();
            async move {
                undone.lock().unwrap().push(i);
                Ok(())
            }
        });
        b.add(s);
        total = total.argument(format!("s{i}"), result(format!("s{i}")));
    }
    b.add(total.run_sync(|args, _| {
        Ok(args
            .iter()
            .fold(0u64, |acc, (_, v)| (acc + *v.get::<u64>().unwrap()) % MOD))
    }));
    b.returns("total").build().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `conc` steps at once, or default options for 0 (CPU work on the
/// cores, awaiting steps unheld).
fn limited(run: reactor::RunRequest, conc: usize) -> reactor::RunRequest {
    if conc == 0 {
        run
    } else {
        run.max_concurrency(conc)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn async_and_sync_runs_match_the_sequential_reference(deps in dag(), conc in 0usize..6) {
        let rt = runtime();
        let expected = reference(&deps);
        let none = HashSet::new();
        for run_async in [true, false] {
            let (c, u): (Log, Log) = Default::default();
            let reactor = build(&deps, &none, &c, &u);
            let out = rt.block_on(async {
                limited(reactor.run(Inputs::new()), conc).run_async(run_async).await
            }).unwrap();
            prop_assert_eq!(*out.get::<u64>().unwrap(), expected);
            prop_assert_eq!(c.lock().unwrap().len(), deps.len());
            prop_assert!(u.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn every_completed_step_is_undone_exactly_once_in_reverse_order(
        deps in dag(),
        failing in proptest::collection::hash_set(0usize..30, 1..3),
        conc in 0usize..6,
    ) {
        let failing: HashSet<usize> = failing.into_iter().filter(|&f| f < deps.len()).collect();
        prop_assume!(!failing.is_empty());
        let rt = runtime();
        for run_async in [true, false] {
            let (completed, undone): (Log, Log) = Default::default();
            let reactor = build(&deps, &failing, &completed, &undone);
            let err = rt.block_on(async {
                limited(reactor.run(Inputs::new()), conc).run_async(run_async).await
            }).unwrap_err();
            let run = err.as_run_error().expect("a run error");
            prop_assert!(run.errors.iter().all(|e| failing.contains(&e.step[1..].parse::<usize>().unwrap())));
            let completed = completed.lock().unwrap().clone();
            let undone = undone.lock().unwrap().clone();
            // Exactly once each.
            let mut a = completed.clone();
            a.sort_unstable();
            let mut b = undone.clone();
            b.sort_unstable();
            prop_assert_eq!(&a, &b);
            // A step is undone before everything it depends on.
            let pos: HashMap<usize, usize> = undone.iter().enumerate().map(|(p, &s)| (s, p)).collect();
            for &s in &undone {
                for &d in &deps[s] {
                    prop_assert!(pos[&s] < pos[&d], "{} undone after its dependency {}", s, d);
                }
            }
            if !run_async {
                // One at a time: undo is exactly the reverse of completion.
                let mut reversed = completed.clone();
                reversed.reverse();
                prop_assert_eq!(&undone, &reversed);
            }
        }
    }
}
