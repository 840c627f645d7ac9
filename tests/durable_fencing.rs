//! One driver per run (SQLite and PostgreSQL): a data directory is used by one runtime at a time,
//! and when a second runtime over the same store takes up a run another
//! still drives, the store's owner epochs fence the old driver off: its
//! next write is refused, it stops without undoing, and the journal ends
//! once, as the new driver wrote it. A run its driver stops driving
//! unended (its journal broke) is handed back at once.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use reactor::durable::Runtime;
use reactor::journal::{Entry, RunStatus, SqliteStore, Store, StoreError};
use reactor::{input, result, step, Error, Inputs, Reactor};
use tokio::sync::Notify;

mod common;
use common::failing_store::FailingStore;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-fencing-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_is_used_by_one_runtime_at_a_time() {
    let dir = temp_dir("lock");
    let first = Runtime::open(&dir).unwrap();
    match Runtime::open(&dir) {
        Err(Error::Store(StoreError::InUse(path))) => assert!(path.contains("lock")),
        other => panic!("a second runtime opened the directory: {other:?}"),
    }
    drop(first);
    Runtime::open(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `a`, then `b`, which the first time tells `reached` and waits for
/// `release`; `a` undoes (counted).
fn job(gate: &Gate) -> Reactor {
    let (g, u) = (gate.clone(), gate.clone());
    Reactor::builder("job")
        .input_as::<u32>("n")
        .add(
            step("a")
                .argument("n", input("n"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("n")? + 1))
                .undo(move |_, _, _| {
                    let u = u.clone();
                    async move {
                        u.undos.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }),
        )
        .add(
            step("b")
                .argument("a", result("a"))
                .output::<u32>()
                .run(move |a, _| {
                    let g = g.clone();
                    async move {
                        g.calls.fetch_add(1, Ordering::SeqCst);
                        if !g.passed.swap(true, Ordering::SeqCst) {
                            g.reached.notify_one();
                            g.release.notified().await;
                        }
                        Ok(*a.get::<u32>("a")? * 2)
                    }
                }),
        )
        .returns("b")
        .build()
        .unwrap()
}

#[derive(Clone, Default)]
struct Gate {
    reached: Arc<Notify>,
    release: Arc<Notify>,
    passed: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
    undos: Arc<AtomicU32>,
}

/// Starts `reactor` (a `job` or an `unwinding_job`) as run `id` on `rt`,
/// in a task of its own, and waits until it holds at `gate`.
async fn held_at_gate(
    rt: &Runtime,
    reactor: &'static str,
    id: &'static str,
    gate: &Gate,
) -> tokio::task::JoinHandle<Result<reactor::Value, Error>> {
    let rt = rt.clone();
    let driving = tokio::spawn(async move {
        rt.start(reactor, Inputs::new().with("n", 1_u32))
            .run_id(id)
            .await
    });
    gate.reached.notified().await;
    driving
}

/// Runtime `old` drives run `r` until `b`; runtime `new` (another
/// handle on the same store) takes it up and finishes it; `old` wakes.
async fn stolen(old_store: Arc<dyn Store>, new_store: Arc<dyn Store>) {
    let gate = Gate::default();
    let old = Runtime::with_store(old_store);
    old.register(job(&gate)).unwrap();
    let driving = held_at_gate(&old, "job", "r", &gate).await;
    // Another runtime over the same store takes the run up (as one that
    // thought its driver dead would) and finishes it.
    let new = Runtime::with_store(new_store);
    new.register(job(&gate)).unwrap();
    let out = new.resume("r").await.unwrap();
    assert_eq!(*out.get::<u32>().unwrap(), 4);
    // The old driver wakes: its write is refused, and it stops without
    // undoing what the new driver completed.
    gate.release.notify_one();
    let err = driving.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("owned by epoch 2"), "{err}");
    assert_eq!(gate.undos.load(Ordering::SeqCst), 0);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 2);
    let journal = new.journal("r").await.unwrap();
    assert_eq!(journal.run.status, RunStatus::Completed);
    let kinds: Vec<&str> = journal.records.iter().map(|r| r.entry.kind()).collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_done",
            "resumed",
            "step_done",
            "run_ended"
        ]
    );
    assert!(journal
        .records
        .iter()
        .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_whose_run_was_taken_up_elsewhere_is_fenced_off() {
    let dir = temp_dir("stolen");
    let path = dir.join("journal.db");
    stolen(
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::new(SqliteStore::open(&path).unwrap()),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local PostgreSQL's address (`DATABASE_URL`).
fn pg_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string())
}

/// The local PostgreSQL, tables in `schema`.
async fn pg(schema: &str) -> reactor::journal::PgStore {
    let url = pg_url();
    reactor::journal::PgStore::connect_in(&url, schema)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set DATABASE_URL): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_fenced_off_on_postgres() {
    let schema = format!("reactor_stolen_{}", std::process::id());
    let connect = || pg(&schema);
    connect().await.drop_schema().await.unwrap();
    stolen(Arc::new(connect().await), Arc::new(connect().await)).await;
    connect().await.drop_schema().await.unwrap();
}

/// `a` then `b`, both undoable (counted; `b`'s first undo tells `reached`
/// and waits for `release`); `c` fails.
fn unwinding_job(gate: &Gate, a_undos: Arc<AtomicU32>) -> Reactor {
    let g = gate.clone();
    Reactor::builder("unwinding")
        .input_as::<u32>("n")
        .add(
            step("a")
                .argument("n", input("n"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("n")?))
                .undo(move |_, _, _| {
                    let a_undos = a_undos.clone();
                    async move {
                        a_undos.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }),
        )
        .add(
            step("b")
                .argument("a", result("a"))
                .output::<u32>()
                .run_sync(|a, _| Ok(*a.get::<u32>("a")?))
                .undo(move |_, _, _| {
                    let g = g.clone();
                    async move {
                        g.undos.fetch_add(1, Ordering::SeqCst);
                        if !g.passed.swap(true, Ordering::SeqCst) {
                            g.reached.notify_one();
                            g.release.notified().await;
                        }
                        Ok(())
                    }
                }),
        )
        .add(
            step("c")
                .argument("b", result("b"))
                .output::<u32>()
                .run_sync(|_, _| Err::<u32, _>("no".into())),
        )
        .returns("c")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_fenced_off_while_unwinding_stops_undoing() {
    let dir = temp_dir("fenced-unwind");
    let path = dir.join("journal.db");
    let gate = Gate::default();
    let a_undos = Arc::new(AtomicU32::new(0));
    let old = Runtime::new(SqliteStore::open(&path).unwrap());
    old.register(unwinding_job(&gate, a_undos.clone())).unwrap();
    let driving = held_at_gate(&old, "unwinding", "u", &gate).await;
    let new = Runtime::new(SqliteStore::open(&path).unwrap());
    new.register(unwinding_job(&gate, a_undos.clone())).unwrap();
    assert!(new.resume("u").await.is_err());
    gate.release.notify_one();
    let err = driving.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("owned by epoch 2"), "{err}");
    // `b`'s undo, cut short by the takeover, ran again; `a` was undone by
    // the new owner only.
    assert_eq!(gate.undos.load(Ordering::SeqCst), 2);
    assert_eq!(a_undos.load(Ordering::SeqCst), 1);
    assert_eq!(new.status("u").await.unwrap().status, RunStatus::Failed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run whose journal broke stops where it is, not ended, and its
/// driver hands it back: another worker can claim it at once, instead
/// of never (the store renewed the lease of every run its worker had
/// owned, driven or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_journal_broke_is_handed_back() {
    use reactor::journal::Leases;
    let schema = format!("reactor_broken_{}", std::process::id());
    let connect = || pg(&schema);
    connect().await.drop_schema().await.unwrap();
    // `a` is journalled; `b`'s end cannot be.
    let rt = Runtime::new(FailingStore::new(Arc::new(connect().await), 1));
    let gate = Gate::default();
    gate.passed.store(true, Ordering::SeqCst);
    rt.register(job(&gate)).unwrap();
    let err = rt
        .start("job", Inputs::new().with("n", 1_u32))
        .run_id("broken-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the journal failed"), "{err}");
    let status = rt.store().load("broken-1").await.unwrap().run.status;
    assert_eq!(status, RunStatus::Running);
    let other = connect().await;
    let claimed = other.claim(1, &["job".to_string()], &[]).await.unwrap();
    assert_eq!(claimed, ["broken-1"]);
    drop(rt);
    connect().await.drop_schema().await.unwrap();
}

/// A worker that claims a run its own runtime already drives (taken up
/// by `start`, its lease run out in a stall) leaves it held: handing it
/// back would let another worker take it up under the live driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaves_a_run_its_runtime_drives_held() {
    use reactor::durable::Worker;
    let schema = format!("reactor_live_{}", std::process::id());
    let connect = || pg(&schema);
    connect().await.drop_schema().await.unwrap();
    let gate = Gate::default();
    let rt = Runtime::new(connect().await);
    rt.register(job(&gate)).unwrap();
    let driving = held_at_gate(&rt, "job", "live-1", &gate).await;
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = format!("\"{schema}\".reactor_runs");
    // A stall: the live run's lease ran out.
    client
        .execute(
            &format!(
                "UPDATE {row} SET lease_until = now() - interval '1 second' WHERE id = 'live-1'"
            ),
            &[],
        )
        .await
        .unwrap();
    let owner = || async {
        client
            .query_one(
                &format!("SELECT owner, lease_until > now() FROM {row} WHERE id = 'live-1'"),
                &[],
            )
            .await
            .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, Option<bool>>(1)))
            .unwrap()
    };
    let report = Worker::new(&rt)
        .unwrap()
        .poll(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(5),
        )
        .run(async {
            // Claimed (its lease renewed by the claim), or handed back
            // already (bounded) ...
            for _ in 0..1000 {
                match owner().await {
                    (None, _) => return,
                    (Some(_), Some(true)) => break,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                }
            }
            // ... and then not handed back (bounded watch).
            for _ in 0..100 {
                if owner().await.0.is_none() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
    assert!(owner().await.0.is_some(), "the live run was handed back");
    assert_eq!(report.finished, 0);
    gate.release.notify_one();
    assert_eq!(*driving.await.unwrap().unwrap().get::<u32>().unwrap(), 4);
    drop(rt);
    connect().await.drop_schema().await.unwrap();
}
