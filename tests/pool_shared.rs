//! Shared concurrency pools: many runs, one limit; nested runs never deadlock.

mod common;

use std::sync::Arc;

use common::Gauge;
use reactor::{result, step, ConcurrencyPool, Inputs, Reactor};

/// W1-shaped: n independent steps and a sum; each step yields so runs overlap.
fn fanout(n: usize, gauge: Arc<Gauge>) -> Reactor {
    let mut b = Reactor::builder("fanout");
    b.input("x");
    let mut sum = step("sum");
    for i in 1..=n {
        let gauge = gauge.clone();
        let name = format!("s{i}");
        b.add(
            step(name.clone())
                .argument("x", reactor::input("x"))
                .run(move |a, _| {
                    let gauge = gauge.clone();
                    async move {
                        gauge.enter();
                        tokio::task::yield_now().await;
                        let v = a.get::<i64>("x")? + i as i64;
                        gauge.exit();
                        Ok(v)
                    }
                }),
        );
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run_sync(|a, _| Ok(a.iter().map(|(_, v)| *v.get::<i64>().unwrap()).sum::<i64>())));
    b.returns("sum").build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_runs_sharing_a_pool_never_exceed_its_limit() {
    let gauge = Arc::new(Gauge::default());
    let pool = ConcurrencyPool::new(16);
    let reactor = fanout(10, gauge.clone());
    let mut runs = Vec::new();
    for _ in 0..100 {
        let reactor = reactor.clone();
        let pool = pool.clone();
        runs.push(tokio::spawn(async move {
            reactor
                .run(Inputs::new().with("x", 1_i64))
                .max_concurrency(16)
                .pool(pool)
                .await
        }));
    }
    for run in runs {
        let value = run.await.unwrap().unwrap();
        assert_eq!(*value.get::<i64>().unwrap(), 10 + 55);
    }
    assert!(gauge.max() <= 16, "saw {} at once", gauge.max());
    assert!(gauge.max() > 1, "runs should overlap");
    assert_eq!(pool.available(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_serialises_concurrent_runs() {
    let gauge = Arc::new(Gauge::default());
    let pool = ConcurrencyPool::new(1);
    let reactor = fanout(5, gauge.clone());
    let a = reactor
        .run(Inputs::new().with("x", 0_i64))
        .pool(pool.clone());
    let b = reactor
        .run(Inputs::new().with("x", 0_i64))
        .pool(pool.clone());
    let (a, b) = tokio::join!(a, b);
    a.unwrap();
    b.unwrap();
    assert_eq!(gauge.max(), 1);
}

fn inner() -> Reactor {
    Reactor::builder("inner")
        .input("n")
        .add(
            step("work")
                .argument("n", reactor::input("n"))
                .run(|a, _| async move {
                    tokio::task::yield_now().await;
                    Ok(*a.get::<u64>("n")? * 2)
                }),
        )
        .returns("work")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_runs_on_an_exhausted_shared_pool_do_not_deadlock() {
    let pool = ConcurrencyPool::new(2);
    let inner = inner();
    let mut b = Reactor::builder("outer");
    let mut sum = step("sum");
    for i in 0..17_u64 {
        let inner = inner.clone();
        let name = format!("outer{i}");
        b.add(step(name.clone()).run(move |_, ctx| {
            let inner = inner.clone();
            async move {
                let v = inner
                    .run(Inputs::new().with("n", i))
                    .pool(ctx.pool().clone())
                    .await?;
                Ok(*v.get::<u64>()?)
            }
        }));
        sum = sum.argument(name.clone(), result(name));
    }
    b.add(sum.run_sync(|a, _| Ok(a.iter().map(|(_, v)| *v.get::<u64>().unwrap()).sum::<u64>())));
    let outer = b.returns("sum").build().unwrap();
    // Many outer runs at once, all on one small pool.
    let mut runs = Vec::new();
    for _ in 0..17 {
        let outer = outer.clone();
        let pool = pool.clone();
        runs.push(tokio::spawn(async move {
            outer.run(Inputs::new()).max_concurrency(8).pool(pool).await
        }));
    }
    for run in runs {
        let v = run.await.unwrap().unwrap();
        assert_eq!(
            *v.get::<u64>().unwrap(),
            (0..17).map(|i| i * 2).sum::<u64>()
        );
    }
    assert_eq!(pool.available(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_runs_given_the_pools_own_handle_do_not_deadlock() {
    let pool = ConcurrencyPool::new(1);
    let inner = inner();
    for nested_async in [true, false] {
        let (inner, handle) = (inner.clone(), pool.clone());
        let outer = Reactor::builder("outer")
            .add(step("outer").run(move |_, _| {
                let (inner, handle) = (inner.clone(), handle.clone());
                async move {
                    // The pool the user has, not the step's context's.
                    let v = inner
                        .run(Inputs::new().with("n", 21_u64))
                        .pool(handle)
                        .run_async(nested_async)
                        .await?;
                    Ok(*v.get::<u64>()?)
                }
            }))
            .returns("outer")
            .build()
            .unwrap();
        let v = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            outer.run(Inputs::new()).pool(pool.clone()),
        )
        .await
        .expect("no deadlock")
        .unwrap();
        assert_eq!(*v.get::<u64>().unwrap(), 42);
        assert_eq!(pool.available(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_given_a_pool_may_use_all_of_its_slots() {
    let slots = 8;
    let pool = ConcurrencyPool::new(slots);
    let meet = Arc::new(tokio::sync::Barrier::new(slots));
    let mut b = Reactor::builder("wide");
    let mut end = step("end");
    for i in 0..slots {
        let m = meet.clone();
        b.add(step(format!("s{i}")).run(move |_, _| {
            let m = m.clone();
            async move {
                // Passes only if all of them run at once.
                m.wait().await;
                Ok(())
            }
        }));
        end = end.wait_for(format!("s{i}"));
    }
    b.add(end.run_sync(|_, _| Ok(())));
    let reactor = b.returns("end").build().unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reactor.run(Inputs::new()).pool(pool.clone()),
    )
    .await
    .expect("all slots used")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_runs_borrowing_their_callers_slot_keep_the_limit() {
    let gauge = Arc::new(Gauge::default());
    let pool = ConcurrencyPool::new(3);
    let leaf = fanout(4, gauge.clone());
    let mut b = Reactor::builder("outer");
    let mut end = step("end");
    for i in 0..6 {
        let leaf = leaf.clone();
        b.add(step(format!("o{i}")).run(move |_, ctx| {
            let leaf = leaf.clone();
            async move {
                leaf.run(Inputs::new().with("x", 1_i64))
                    .pool(ctx.pool().clone())
                    .await?;
                Ok(())
            }
        }));
        end = end.wait_for(format!("o{i}"));
    }
    b.add(end.run_sync(|_, _| Ok(())));
    let outer = b.returns("end").build().unwrap();
    outer.run(Inputs::new()).pool(pool.clone()).await.unwrap();
    // The outer steps only wait for their nested runs: the leaves, which
    // run on the outer steps' slots, never exceed the pool.
    assert!(gauge.max() <= 3, "{}", gauge.max());
    assert_eq!(pool.available(), 3);
}
