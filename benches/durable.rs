//! Durable runs: what the journal costs, on a real SQLite file.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench durable [-- --quick]
//! ```
//!
//! 1. **Throughput**: 100 concurrent runs of a 100-step chain (every step a
//!    graph level of its own, the worst case for write-ahead), SQLite WAL
//!    with `synchronous=FULL` and `NORMAL`, beside the naive design (one
//!    transaction per step record, written by one connection) on the same
//!    file system in the same run. Also: journal rows per step.
//! 2. **Latency per level**: one 50-step chain, durable on SQLite FULL
//!    against the same chain without a journal; the median difference per
//!    step.
//! 3. **The memory store**: a 1,000-step fan-out durable on `MemoryStore`
//!    against the same run without a journal.
//! 4. **Recovery**: 1,000 interrupted runs holding 100,000 records, taken
//!    up by a new runtime: the time until every run has ended.
//! 5. **PostgreSQL**: the throughput of (1) through `PgStore` in one
//!    process (`DATABASE_URL`, default the local server).
//!
//! Medians over the samples (5, or 3 with `--quick`).

use std::sync::Arc;
use std::time::Instant;

use reactor::durable::Runtime;
use reactor::journal::{Entry, MemoryStore, NewRun, Record, SqliteStore, Store, Synchronous};
use reactor::{input, result, step, Inputs, Reactor};

fn chain(name: &str, n: usize) -> Reactor {
    let mut b = Reactor::builder(name);
    b.input_as::<u64>("x");
    b.add(
        step("s0")
            .argument("x", input("x"))
            .output::<u64>()
            .run(|a, _| async move { Ok(*a.get::<u64>("x")? + 1) }),
    );
    for i in 1..n {
        b.add(
            step(format!("s{i}"))
                .argument("x", result(format!("s{}", i - 1)))
                .output::<u64>()
                .run(|a, _| async move { Ok(*a.get::<u64>("x")? + 1) }),
        );
    }
    b.returns(format!("s{}", n - 1));
    b.build().unwrap()
}

fn fan_out(name: &str, n: usize) -> Reactor {
    let mut b = Reactor::builder(name);
    b.input_as::<u64>("x");
    let mut join = step("join").output::<u64>();
    for i in 0..n {
        b.add(
            step(format!("s{i}"))
                .argument("x", input("x"))
                .output::<u64>()
                .run(|a, _| async move { Ok(*a.get::<u64>("x")? + 1) }),
        );
        join = join.argument(format!("s{i}"), result(format!("s{i}")));
    }
    b.add(join.run_sync(|a, _| Ok(a.iter().map(|(_, v)| *v.get::<u64>().unwrap()).sum::<u64>())));
    b.returns("join");
    b.build().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("reactor-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `runs` concurrent runs of the registered `steps`-step chain; seconds.
async fn run_chains(rt: &Runtime, runs: u64, steps: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..runs {
        let rt = rt.clone();
        tasks.spawn(async move {
            let out = rt.start("chain", Inputs::new().with("x", r)).await.unwrap();
            assert_eq!(*out.get::<u64>().unwrap(), r + steps as u64);
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// 100 concurrent runs of a 100-step chain; steps per second.
async fn throughput(sync: Synchronous, tag: &str) -> (f64, f64) {
    const RUNS: u64 = 100;
    const STEPS: usize = 100;
    let d = dir(tag);
    let store = Arc::new(SqliteStore::open_with(d.join("journal.db"), sync).unwrap());
    let rt = Runtime::with_store(store.clone());
    rt.register(chain("chain", STEPS)).unwrap();
    let secs = run_chains(&rt, RUNS, STEPS).await;
    let conn = rusqlite::Connection::open(d.join("journal.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM reactor_journal", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    drop(rt);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
    let steps = (RUNS as usize * STEPS) as f64;
    (steps / secs, rows as f64 / steps)
}

/// The same 100 runs of a 100-step chain on PostgreSQL (`DATABASE_URL`,
/// default the local server), in a schema of their own; steps per second
/// and journal rows per step.
async fn throughput_pg() -> Result<(f64, f64), reactor::journal::StoreError> {
    use reactor::journal::PgStore;
    const RUNS: u64 = 100;
    const STEPS: usize = 100;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("reactor_bench_{}", std::process::id());
    PgStore::connect_in(&url, &schema)
        .await?
        .drop_schema()
        .await?;
    let store = Arc::new(PgStore::connect_in(&url, &schema).await?);
    let rt = Runtime::with_store(store.clone());
    rt.register(chain("chain", STEPS)).unwrap();
    let secs = run_chains(&rt, RUNS, STEPS).await;
    let mut rows = 0;
    for run in store.runs(None).await? {
        rows += store.load(&run.id).await?.records.len();
    }
    drop(rt);
    PgStore::connect_in(&url, &schema)
        .await?
        .drop_schema()
        .await?;
    let steps = (RUNS as usize * STEPS) as f64;
    Ok((steps / secs, rows as f64 / steps))
}

/// The naive design: one transaction per step record.
fn naive(records: usize) -> f64 {
    let d = dir("naive");
    std::fs::create_dir_all(&d).unwrap();
    let conn = rusqlite::Connection::open(d.join("naive.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE j (run_id TEXT, seq INTEGER, body TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let body = serde_json::to_string(&Entry::StepDone {
        step: "s1".into(),
        attempt: 1,
        value: serde_json::json!(42),
        skipped: false,
        emitted: Vec::new(),
        nested: Vec::new(),
    })
    .unwrap();
    let started = Instant::now();
    for i in 0..records {
        conn.execute(
            "INSERT INTO j VALUES (?1, ?2, ?3)",
            rusqlite::params![format!("run-{}", i % 100), i as i64, body],
        )
        .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_dir_all(&d);
    records as f64 / secs
}

/// Added time per level of a 50-step chain, durable (SQLite FULL) against
/// no journal.
async fn per_level(samples: usize) -> (f64, f64, f64) {
    const STEPS: usize = 50;
    let d = dir("level");
    let rt = Runtime::new(SqliteStore::open(d.join("journal.db")).unwrap());
    let r = chain("chain", STEPS);
    rt.register(r.clone()).unwrap();
    let (mut durable, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..samples * 3 {
        let t = Instant::now();
        r.run(Inputs::new().with("x", 1_u64)).await.unwrap();
        plain.push(t.elapsed().as_secs_f64() / STEPS as f64);
        let t = Instant::now();
        rt.start("chain", Inputs::new().with("x", 1_u64))
            .await
            .unwrap();
        durable.push(t.elapsed().as_secs_f64() / STEPS as f64);
    }
    let _ = std::fs::remove_dir_all(&d);
    let (p, du) = (median(plain), median(durable));
    (p * 1e3, du * 1e3, (du - p) * 1e3)
}

/// A 1,000-step fan-out durable on the memory store against no journal.
async fn memory_store(samples: usize) -> (f64, f64) {
    let r = fan_out("fan", 1_000);
    let rt = Runtime::new(MemoryStore::new());
    rt.register(r.clone()).unwrap();
    let (mut durable, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..samples * 5 {
        let t = Instant::now();
        r.run(Inputs::new().with("x", 1_u64)).await.unwrap();
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        rt.start("fan", Inputs::new().with("x", 1_u64))
            .await
            .unwrap();
        durable.push(t.elapsed().as_secs_f64());
    }
    (
        median(plain) * 1e6 / 1_000.0,
        median(durable) * 1e6 / 1_000.0,
    )
}

/// 1,000 interrupted runs of a 101-step chain, 100 steps done each
/// (100,000 records): a new runtime takes them up; seconds until all end.
async fn recovery() -> (f64, usize) {
    const RUNS: usize = 1_000;
    const DONE: usize = 100;
    let d = dir("recover");
    let path = d.join("journal.db");
    let r = chain("chain", DONE + 1);
    {
        let store = SqliteStore::open_with(&path, Synchronous::Normal).unwrap();
        let rt = Runtime::new(MemoryStore::new());
        rt.register(r.clone()).unwrap();
        // The start record as the runtime writes it (taken from a real run).
        rt.start("chain", Inputs::new().with("x", 0_u64))
            .run_id("probe")
            .await
            .unwrap();
        let probe = rt.journal("probe").await.unwrap();
        let first = probe.records[0].entry.clone();
        let mut writes = tokio::task::JoinSet::new();
        let store = Arc::new(store);
        for run in 0..RUNS {
            let store = store.clone();
            let first = first.clone();
            writes.spawn(async move {
                let id = format!("run-{run}");
                store
                    .create_run(NewRun {
                        id: id.clone(),
                        reactor: "chain".into(),
                        idempotency_key: None,
                        first: Record::new(0, first),
                        queued: false,
                    })
                    .await
                    .unwrap();
                let records: Vec<Record> = (0..DONE)
                    .map(|i| {
                        Record::new(
                            i as u64 + 1,
                            Entry::StepDone {
                                step: format!("s{i}"),
                                attempt: 1,
                                value: serde_json::json!(i + 1),
                                skipped: false,
                                emitted: Vec::new(),
                                nested: Vec::new(),
                            },
                        )
                    })
                    .collect();
                store.append(&id, 1, &records).await.unwrap();
            });
        }
        while let Some(w) = writes.join_next().await {
            w.unwrap();
        }
    }
    let started = Instant::now();
    let rt = Runtime::new(SqliteStore::open(&path).unwrap());
    rt.register(r).unwrap();
    let rec = rt.recover().await;
    let secs = started.elapsed().as_secs_f64();
    assert!(rec.skipped.is_empty(), "{:?}", rec.skipped.first());
    for (_, out) in &rec.finished {
        assert_eq!(
            *out.as_ref().unwrap().get::<u64>().unwrap(),
            (DONE + 1) as u64
        );
    }
    let n = rec.finished.len();
    let _ = std::fs::remove_dir_all(&d);
    (secs, n)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 3 } else { 5 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut full = Vec::new();
        let mut normal = Vec::new();
        let mut rows = 0.0;
        for _ in 0..samples {
            let (f, r) = throughput(Synchronous::Full, "full").await;
            full.push(f);
            rows = r;
            normal.push(throughput(Synchronous::Normal, "normal").await.0);
        }
        let mut pg = Vec::new();
        let mut pg_rows = 0.0;
        for _ in 0..samples {
            match throughput_pg().await {
                Ok((rate, rows)) => {
                    pg.push(rate);
                    pg_rows = rows;
                }
                Err(e) => {
                    println!("PostgreSQL not reached (set DATABASE_URL): {e}");
                    break;
                }
            }
        }
        let naive_rate = median((0..samples).map(|_| naive(2_000)).collect());
        let full = median(full);
        println!("durable steps/s, 100 runs x 100-step chain, SQLite FULL:   {full:>9.0}");
        println!(
            "durable steps/s, same, SQLite NORMAL:                      {:>9.0}",
            median(normal)
        );
        if !pg.is_empty() {
            println!(
                "durable steps/s, same, PostgreSQL (one process):          {:>9.0} ({pg_rows:.2} rows a step)",
                median(pg)
            );
        }
        println!("naive, one transaction per step record, FULL:             {naive_rate:>9.0}");
        println!("journal rows per step (run start and end included):       {rows:>9.2}");
        let (plain, durable, added) = per_level(samples).await;
        println!(
            "50-step chain, ms per level: no journal {plain:.3}, SQLite FULL {durable:.3}, added {added:.3}"
        );
        let (plain, durable) = memory_store(samples).await;
        println!(
            "1,000-step fan-out, us per step: no journal {plain:.3}, MemoryStore {durable:.3} ({:+.1}%)",
            (durable / plain - 1.0) * 100.0
        );
        let (secs, n) = recovery().await;
        println!("recovering {n} runs holding 100,000 records: {:.0} ms", secs * 1e3);
        let ok = full >= 10_000.0 && added <= 3.0 && secs < 1.0 && rows <= 1.03;
        println!("targets (>= 10,000 steps/s FULL, <= 3 ms per level, < 1 s recovery, <= 1 row per step): {}",
            if ok { "met" } else { "NOT met" });
    });
}
