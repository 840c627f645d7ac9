//! Limits shared by workers through a real PostgreSQL (`DATABASE_URL`,
//! by default the local server `.ci/run` starts): shared pools, keyed
//! limits and rate limits, each worker here a store of its own (its own
//! worker id and connections), as separate processes would be.

use std::sync::Arc;
use std::time::Duration;

use reactor::journal::PgStore;
use reactor::limit::SharedLimits;
use reactor::{step, value, ConcurrencyPool, Inputs, Limit, Reactor};

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string())
}

async fn worker(schema: &str, name: &str, lease: Duration) -> PgStore {
    PgStore::options(&url())
        .schema(schema)
        .worker(name)
        .lease(lease)
        .connect()
        .await
        .unwrap()
}

fn schema(tag: &str) -> String {
    format!("limits_{tag}_{}", std::process::id())
}

/// Waits (bounded: a limit that never frees fails the test) for `f`.
async fn eventually<T>(mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pool_holds_its_limit_across_workers_and_shares_it() {
    let s = schema("pool");
    let (a, b) = (
        worker(&s, "a", Duration::from_secs(10)).await,
        worker(&s, "b", Duration::from_secs(10)).await,
    );
    let pa = ConcurrencyPool::shared("slots", 3, a.shared_limits()).unwrap();
    let pb = ConcurrencyPool::shared("slots", 3, b.shared_limits()).unwrap();
    assert_eq!(pb.limit(), 3);
    let held: Vec<_> = vec![pa.acquire().await, pa.acquire().await, pa.acquire().await];
    // All three are a's: b waits as long as a holds them...
    let waiting = tokio::spawn({
        let pb = pb.clone();
        async move {
            let p = pb.acquire().await;
            drop(p);
        }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), pb.acquire())
            .await
            .is_err(),
        "b got a fourth slot"
    );
    // ... and gets one once a gives them back (idle slots return).
    drop(held);
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("b never got a slot a gave back")
        .unwrap();
    a.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_gives_a_starving_one_its_share() {
    let s = schema("share");
    let (a, b) = (
        worker(&s, "a", Duration::from_secs(10)).await,
        worker(&s, "b", Duration::from_secs(10)).await,
    );
    let pa = ConcurrencyPool::shared("slots", 4, a.shared_limits()).unwrap();
    let pb = ConcurrencyPool::shared("slots", 4, b.shared_limits()).unwrap();
    // a never stops wanting slots: 8 tasks taking and releasing them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut busy = Vec::new();
    for _ in 0..8 {
        let (pa, stop) = (pa.clone(), stop.clone());
        busy.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _p = pa.acquire().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    eventually(async || (pa.available() == 0).then_some(())).await;
    // b starves until a keeps back its surplus over its share (2 of 4).
    let got: Vec<_> = vec![
        tokio::time::timeout(Duration::from_secs(30), pb.acquire())
            .await
            .expect("b starved"),
        tokio::time::timeout(Duration::from_secs(30), pb.acquire())
            .await
            .expect("b starved"),
    ];
    assert_eq!(got.len(), 2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(got);
    for t in busy {
        t.await.unwrap();
    }
    a.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slots_of_a_worker_that_died_come_back_with_its_lease() {
    let s = schema("dead");
    let a = worker(&s, "a", Duration::from_millis(300)).await;
    let b = worker(&s, "b", Duration::from_secs(10)).await;
    let la = a.shared_limits();
    let lb = b.shared_limits();
    assert_eq!(la.claim("slots", "", 2, 0, 2).await.unwrap().granted, 2);
    assert_eq!(lb.claim("slots", "", 2, 0, 1).await.unwrap().granted, 0);
    // a dies: its lease is no longer renewed.
    drop((a, la));
    let granted = eventually(async || {
        let c = lb.claim("slots", "", 2, 0, 2).await.unwrap();
        (c.granted > 0).then_some(c.granted)
    })
    .await;
    assert_eq!(granted, 2);
    b.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_keyed_limit_counts_every_workers_steps() {
    let s = schema("keyed");
    let (a, b) = (
        worker(&s, "a", Duration::from_secs(10)).await,
        worker(&s, "b", Duration::from_secs(10)).await,
    );
    let key = |args: &reactor::Arguments| Ok(args.get::<String>("customer")?.clone());
    let local = Limit::per_key("per_customer", 1, key);
    let (ka, kb) = (
        local.shared(a.shared_limits()),
        local.shared(b.shared_limits()),
    );
    // A step of ada's on a, held open until told.
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let held = {
        let (release, started) = (release.clone(), started.clone());
        Reactor::builder("held")
            .add(
                step("charge")
                    .argument("customer", value("ada".to_string()))
                    .limit(ka.clone())
                    .run(move |_, _| {
                        let (release, started) = (release.clone(), started.clone());
                        async move {
                            started.notify_one();
                            release.notified().await;
                            Ok(())
                        }
                    }),
            )
            .returns("charge")
            .build()
            .unwrap()
    };
    let on_a = tokio::spawn(async move { held.run(Inputs::new()).await });
    started.notified().await;
    let charge = |customer: &str| {
        Reactor::builder("charge")
            .add(
                step("charge")
                    .argument("customer", value(customer.to_string()))
                    .limit(kb.clone())
                    .run(|_, _| async { Ok(()) }),
            )
            .returns("charge")
            .build()
            .unwrap()
    };
    // bob's step runs on b at once; ada's waits for a's to finish.
    charge("bob").run(Inputs::new()).await.unwrap();
    let ada = charge("ada");
    let on_b = tokio::spawn(async move { ada.run(Inputs::new()).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), async {
            while kb.running("ada") == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err(),
        "ada ran on two workers at once"
    );
    release.notify_one();
    on_a.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), on_b)
        .await
        .expect("ada's second step never ran")
        .unwrap()
        .unwrap();
    a.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_rate_limit_spends_one_bucket() {
    let s = schema("rate");
    let (a, b) = (
        worker(&s, "a", Duration::from_secs(10)).await,
        worker(&s, "b", Duration::from_secs(10)).await,
    );
    let (la, lb): (Arc<dyn SharedLimits>, Arc<dyn SharedLimits>) =
        (a.shared_limits(), b.shared_limits());
    let per_second = 10.0 / 3600.0;
    let mut taken = 0;
    for l in [&la, &lb, &la, &lb] {
        taken += l.take_tokens("hourly", 10, per_second, 4).await.unwrap();
    }
    // 10 in the bucket, whoever takes them (a token refills in 6 min).
    assert_eq!(taken, 10);
    // Steps on both workers under one shared limit of 20 an hour: the
    // first 20 start (10 on each), within the bucket.
    let limit = Limit::rate("steps", 20, Duration::from_secs(3600));
    for store in [&a, &b] {
        let shared = limit.shared(store.shared_limits());
        let mut builder = Reactor::builder("rated");
        for i in 0..10 {
            builder.add(
                step(format!("s{i}"))
                    .limit(shared.clone())
                    .run(|_, _| async { Ok(()) }),
            );
        }
        let r = builder.returns("s0").build().unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            r.run(Inputs::new()).max_concurrency(10),
        )
        .await
        .expect("the bucket held 20")
        .unwrap();
    }
    let left = la
        .take_tokens("steps", 20, 20.0 / 3600.0, 20)
        .await
        .unwrap();
    assert!(left <= 1, "{left} tokens left of 20 after 20 starts");
    a.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_run_borrows_its_steps_slot_of_a_shared_pool() {
    // One slot across the cluster: the composing step holds it, and its
    // nested run borrows it rather than waiting for a second.
    let s = schema("nested");
    let a = worker(&s, "a", Duration::from_secs(10)).await;
    let pool = ConcurrencyPool::shared("one", 1, a.shared_limits()).unwrap();
    let inner = Reactor::builder("inner")
        .add(step("x").run(|_, _| async { Ok(2_u32) }))
        .add(step("y").run(|_, _| async { Ok(3_u32) }))
        .add(
            step("sum")
                .argument("x", reactor::result("x"))
                .argument("y", reactor::result("y"))
                .run_sync(|a, _| Ok(*a.get::<u32>("x")? + *a.get::<u32>("y")?)),
        )
        .returns("sum")
        .build()
        .unwrap();
    let outer = Reactor::builder("outer")
        .add(reactor::kinds::compose("inner", inner))
        .returns("inner")
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        outer.run(Inputs::new()).pool(pool.clone()),
    )
    .await
    .expect("the nested run waited for a slot its caller held")
    .unwrap();
    assert_eq!(*out.get::<u32>().unwrap(), 5);
    a.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pool_grows_block_by_block_until_its_waiters_all_hold_slots() {
    // Blocks of 2 (a limit of 16): 10 runs waiting at once, each holding
    // its slot until all 10 hold one, need five grants; the waiters left
    // after each grant keep the pool asking.
    let s = schema("grow");
    let a = worker(&s, "a", Duration::from_secs(10)).await;
    let pool = ConcurrencyPool::shared("wide", 16, a.shared_limits()).unwrap();
    let all = Arc::new(tokio::sync::Barrier::new(10));
    let mut holders = Vec::new();
    for _ in 0..10 {
        let (pool, all) = (pool.clone(), all.clone());
        holders.push(tokio::spawn(async move {
            let _slot = pool.acquire().await;
            all.wait().await;
        }));
    }
    for h in holders {
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("waiters were left without slots the cluster had free")
            .unwrap();
    }
    a.drop_schema().await.unwrap();
}
