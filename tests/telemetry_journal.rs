//! The journal's metrics, recorded through the `metrics` facade whether or
//! not the middleware is installed (a test binary of its own: it installs
//! the global recorder): commits of the store's writer, runs recovered,
//! writes fenced off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use reactor::durable::Runtime;
use reactor::journal::SqliteStore;
use reactor::{input, step, Inputs, Reactor};
use tokio::sync::Notify;

/// `wait`: the first time, tells `reached` and waits for `go`.
fn waiting(first: Arc<AtomicBool>, reached: Arc<Notify>, go: Arc<Notify>) -> Reactor {
    Reactor::builder("waiting")
        .input_as::<u32>("n")
        .add(
            step("wait")
                .argument("n", input("n"))
                .output::<u32>()
                .run(move |a, _| {
                    let (first, reached, go) = (first.clone(), reached.clone(), go.clone());
                    async move {
                        if !first.swap(true, Ordering::SeqCst) {
                            reached.notify_one();
                            go.notified().await;
                        }
                        Ok(*a.get::<u32>("n")?)
                    }
                }),
        )
        .returns("wait")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_recoveries_and_fenced_writes_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let dir = std::env::temp_dir().join(format!("reactor-jmetrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("journal.db");
    let (first, reached, go) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let reactor = || waiting(first.clone(), reached.clone(), go.clone());
    // A run driven by `old` waits in its step; `new` takes it up (as a
    // recovery after a crash would) and finishes it; `old` is fenced off.
    let old = Runtime::new(SqliteStore::open(&path).unwrap());
    old.register(reactor()).unwrap();
    let driving = {
        let old = old.clone();
        tokio::spawn(async move {
            old.start("waiting", Inputs::new().with("n", 5_u32))
                .run_id("m")
                .await
        })
    };
    reached.notified().await;
    let new = Runtime::new(SqliteStore::open(&path).unwrap());
    new.register(reactor()).unwrap();
    let recovery = new.recover().await;
    assert_eq!(recovery.finished.len(), 1);
    go.notify_one();
    assert!(driving.await.unwrap().is_err());

    let snapshot = snapshots.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .map(|(key, _, _, value)| {
                (
                    key.key()
                        .labels()
                        .map(|l| l.value().to_string())
                        .collect::<Vec<_>>(),
                    value,
                )
            })
            .collect::<Vec<_>>()
    };
    let batches = find("reactor_journal_batch_records");
    assert!(
        batches.iter().any(|(labels, v)| labels == &["sqlite"]
            && matches!(v, DebugValue::Histogram(h) if !h.is_empty())),
        "{batches:?}"
    );
    assert!(!find("reactor_journal_commit_seconds").is_empty());
    assert!(matches!(
        find("reactor_runs_recovered_total").as_slice(),
        [(_, DebugValue::Counter(1))]
    ));
    // Its step's completion, and then its end: both refused.
    assert!(
        matches!(find("reactor_journal_fenced_total").as_slice(), [(_, DebugValue::Counter(n))] if *n >= 1),
        "{:?}",
        find("reactor_journal_fenced_total")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
