//! Store conformance: one suite, run against every store (the promises of
//! `reactor::journal::Store`): in memory, SQLite, and a real PostgreSQL
//! (`DATABASE_URL`, default the local server `.ci/run` starts); plus what
//! only a file can show (a reopened store, a corrupt or truncated
//! journal).

use std::sync::Arc;

use reactor::journal::{
    Created, Entry, MemoryStore, NewRun, Record, RunEnd, RunStatus, SqliteStore, Store, StoreError,
    Synchronous,
};

fn started(reactor: &str) -> Entry {
    Entry::RunStarted {
        reactor: reactor.into(),
        def_hash: "h".into(),
        definition: vec!["step a".into()],
        inputs: [("x".to_string(), serde_json::json!(1))].into(),
        idempotency_key: None,
    }
}

fn new_run(id: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: id.into(),
        reactor: "r".into(),
        idempotency_key: key.map(Into::into),
        first: Record::new(0, started("r")),
        queued: false,
    }
}

fn done(seq: u64, step: &str) -> Record {
    Record::new(
        seq,
        Entry::StepDone {
            step: step.into(),
            attempt: 1,
            value: serde_json::json!(seq),
            skipped: false,
            emitted: Vec::new(),
            nested: Vec::new(),
        },
    )
}

/// Every promise of the `Store` trait, on `store`.
async fn conformance(store: Arc<dyn Store>) {
    // Create, and dedupe on the idempotency key.
    assert_eq!(
        store.create_run(new_run("a", Some("k1"))).await.unwrap(),
        Created::New
    );
    assert_eq!(
        store.create_run(new_run("b", Some("k1"))).await.unwrap(),
        Created::Existing("a".into())
    );
    assert!(matches!(
        store.load("b").await,
        Err(StoreError::UnknownRun(_))
    ));
    store.create_run(new_run("c", None)).await.unwrap();
    store.create_run(new_run("d", None)).await.unwrap();

    // Appends, in order; a retried append changes nothing.
    store
        .append("a", 1, &[done(1, "s1"), done(2, "s2")])
        .await
        .unwrap();
    store
        .append("a", 1, &[done(1, "other"), done(2, "other")])
        .await
        .unwrap();
    store.append("a", 1, &[done(3, "s3")]).await.unwrap();
    let j = store.load("a").await.unwrap();
    let steps: Vec<_> = j
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::StepDone { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["s1", "s2", "s3"]);
    assert_eq!(
        j.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(j.run.idempotency_key.as_deref(), Some("k1"));

    // An append to a run that does not exist.
    assert!(matches!(
        store.append("nope", 1, &[done(1, "x")]).await,
        Err(StoreError::UnknownRun(_))
    ));

    // Status follows the entries.
    store
        .append("c", 1, &[Record::new(1, Entry::Halted)])
        .await
        .unwrap();
    store
        .append(
            "d",
            1,
            &[Record::new(
                1,
                Entry::RunEnded {
                    end: RunEnd::Completed {
                        value: serde_json::json!("ok"),
                    },
                },
            )],
        )
        .await
        .unwrap();
    let ids = |runs: Vec<reactor::journal::RunSummary>| {
        runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.runs(Some(RunStatus::Running)).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        ids(store.runs(Some(RunStatus::Halted)).await.unwrap()),
        ["c"]
    );
    assert_eq!(
        ids(store.runs(Some(RunStatus::Completed)).await.unwrap()),
        ["d"]
    );
    assert_eq!(ids(store.runs(None).await.unwrap()), ["a", "c", "d"]);
    store
        .append("c", 2, &[Record::new(2, Entry::Resumed { epoch: 2 })])
        .await
        .unwrap();
    assert_eq!(
        store.load("c").await.unwrap().run.status,
        RunStatus::Running
    );
    // A retried status change does not move the status back.
    store
        .append("c", 2, &[Record::new(1, Entry::Halted)])
        .await
        .unwrap();
    assert_eq!(
        store.load("c").await.unwrap().run.status,
        RunStatus::Running
    );

    // A gap is reported on load, not panicked on.
    store.create_run(new_run("gap", None)).await.unwrap();
    store.append("gap", 1, &[done(2, "late")]).await.unwrap();
    match store.load("gap").await {
        Err(StoreError::Corrupt { seq: 1, .. }) => {}
        other => panic!("a journal with a gap loaded: {other:?}"),
    }

    // More than 10,000 records in one journal, appended by many writers at
    // once (one per run) and in batches.
    let big = 10_050_u64;
    store.create_run(new_run("big", None)).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..8_u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let id = format!("w{w}");
            store.create_run(new_run(&id, None)).await.unwrap();
            for seq in 1..=200 {
                store.append(&id, 1, &[done(seq, "s")]).await.unwrap();
            }
        }));
    }
    let mut seq = 1;
    while seq <= big {
        let batch: Vec<_> = (seq..(seq + 500).min(big + 1))
            .map(|s| done(s, "s"))
            .collect();
        seq += batch.len() as u64;
        store.append("big", 1, &batch).await.unwrap();
    }
    for h in handles {
        h.await.unwrap();
    }
    let j = store.load("big").await.unwrap();
    assert_eq!(j.records.len() as u64, big + 1);
    for w in 0..8 {
        assert_eq!(
            store.load(&format!("w{w}")).await.unwrap().records.len(),
            201
        );
    }
}

/// Fencing: a run's owner epoch; two takers of one run, one wins; a
/// driver that lost its run cannot write to it.
async fn fencing(store: Arc<dyn Store>) {
    store.create_run(new_run("f", None)).await.unwrap();
    store.append("f", 1, &[done(1, "s1")]).await.unwrap();
    let fenced = |r: Result<(), StoreError>, epoch: u32, owner: u32| match r {
        Err(StoreError::Fenced {
            epoch: e, owner: o, ..
        }) => assert_eq!((e, o), (epoch, owner)),
        other => panic!("not fenced: {other:?}"),
    };
    // An epoch that does not own the run cannot write.
    fenced(store.append("f", 2, &[done(2, "s2")]).await, 2, 1);
    // Two takers claim epoch 2 at the same place: the first wins, and the
    // second is refused even though its record's place is taken.
    let claim = |seq| Record::new(seq, Entry::Resumed { epoch: 2 });
    store.append("f", 2, &[claim(2)]).await.unwrap();
    fenced(store.append("f", 2, &[claim(2)]).await, 2, 2);
    // The old driver is fenced off; nothing it sent was stored.
    fenced(store.append("f", 1, &[done(3, "late")]).await, 1, 2);
    assert_eq!(store.load("f").await.unwrap().records.len(), 3);
    // A claim must be made by the epoch it claims.
    fenced(
        store
            .append("f", 2, &[Record::new(3, Entry::Resumed { epoch: 3 })])
            .await,
        2,
        2,
    );
    // The owner goes on; a later taker claims a newer epoch.
    store.append("f", 2, &[done(3, "s3")]).await.unwrap();
    store
        .append("f", 3, &[Record::new(4, Entry::Resumed { epoch: 3 })])
        .await
        .unwrap();
    fenced(store.append("f", 2, &[done(5, "s5")]).await, 2, 3);
    // A fenced write changes nothing, status included.
    store
        .append("f", 3, &[Record::new(5, Entry::Halted)])
        .await
        .unwrap();
    fenced(
        store
            .append("f", 2, &[Record::new(6, Entry::Resumed { epoch: 2 })])
            .await,
        2,
        3,
    );
    let j = store.load("f").await.unwrap();
    assert_eq!((j.records.len(), j.run.status), (6, RunStatus::Halted));
    // A claim made from a journal its old driver has written to since (at
    // the place the claim meant to take) is refused, not swallowed; a
    // claim at the run's next place is taken.
    store.create_run(new_run("g", None)).await.unwrap();
    store.append("g", 1, &[done(1, "s1")]).await.unwrap();
    store.append("g", 1, &[done(2, "s2")]).await.unwrap();
    fenced(
        store
            .append("g", 2, &[Record::new(2, Entry::Resumed { epoch: 2 })])
            .await,
        2,
        1,
    );
    store.append("g", 1, &[done(3, "s3")]).await.unwrap();
    store
        .append("g", 2, &[Record::new(4, Entry::Resumed { epoch: 2 })])
        .await
        .unwrap();
    assert_eq!(store.load("g").await.unwrap().records.len(), 5);
    assert!(!StoreError::Fenced {
        run_id: "f".into(),
        epoch: 1,
        owner: 2
    }
    .is_transient());
}

/// Purging ended runs: with their journals and nested runs; never an
/// unfinished one, nor one that ended after the cutoff.
async fn purging(store: Arc<dyn Store>) {
    let ended = Record::new(
        1,
        Entry::RunEnded {
            end: RunEnd::Cancelled,
        },
    );
    for id in [
        "done",
        "done/c.1.0",
        "done/c.1.0/d.1.0",
        "done2",
        "live",
        "live/c.1.0",
    ] {
        store.create_run(new_run(id, Some(id))).await.unwrap();
    }
    for id in ["done", "done/c.1.0/d.1.0", "live/c.1.0"] {
        store
            .append(id, 1, std::slice::from_ref(&ended))
            .await
            .unwrap();
    }
    // Nothing ended before the epoch.
    assert_eq!(store.purge(0).await.unwrap(), 0);
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    // `done` and its nested runs (one still marked running); `done2` and
    // `live` run on, and a nested run goes only with its parent.
    assert_eq!(store.purge(cutoff).await.unwrap(), 3);
    let left: Vec<String> = store
        .runs(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ["done2", "live", "live/c.1.0"]);
    assert!(matches!(
        store.load("done").await,
        Err(StoreError::UnknownRun(_))
    ));
    // Its idempotency key is free again.
    assert_eq!(
        store
            .create_run(new_run("again", Some("done")))
            .await
            .unwrap(),
        Created::New
    );
    assert_eq!(store.load("live").await.unwrap().records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::new())).await;
    fencing(Arc::new(MemoryStore::new())).await;
    purging(Arc::new(MemoryStore::new())).await;
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = temp_dir("conform");
    conformance(Arc::new(SqliteStore::open(dir.join("j.db")).unwrap())).await;
    fencing(Arc::new(SqliteStore::open(dir.join("f.db")).unwrap())).await;
    purging(Arc::new(SqliteStore::open(dir.join("p.db")).unwrap())).await;
    conformance(Arc::new(
        SqliteStore::open_with(dir.join("normal.db"), Synchronous::Normal).unwrap(),
    ))
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The test server: `DATABASE_URL`, or the local one `.ci/run` starts.
fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string())
}

/// A store in an empty schema of its own (one an earlier run left is
/// dropped first).
async fn fresh_pg(url: &str, schema: &str) -> reactor::journal::PgStore {
    use reactor::journal::PgStore;
    let connect = || async {
        PgStore::connect_in(url, schema)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set DATABASE_URL): {e}"))
    };
    connect().await.drop_schema().await.unwrap();
    connect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let url = database_url();
    let base = format!("reactor_conform_{}", std::process::id());
    let schemas = [
        base.clone(),
        format!("{base}_fence"),
        format!("{base}_purge"),
    ];
    conformance(Arc::new(fresh_pg(&url, &schemas[0]).await)).await;
    fencing(Arc::new(fresh_pg(&url, &schemas[1]).await)).await;
    purging(Arc::new(fresh_pg(&url, &schemas[2]).await)).await;
    for s in &schemas {
        fresh_pg(&url, s).await.drop_schema().await.unwrap();
    }
}

/// A store joining a schema already in use takes no table lock: its
/// tables are up to date, so it runs no DDL (an `ALTER TABLE` would wait
/// for every transaction of the workers already there, and could
/// deadlock with them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_joins_a_busy_schema_without_locking_it() {
    let url = database_url();
    let schema = format!("reactor_busy_{}", std::process::id());
    let first = fresh_pg(&url, &schema).await;
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "LOCK TABLE \"{schema}\".reactor_runs IN ROW EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reactor::journal::PgStore::connect_in(&url, &schema),
    )
    .await
    .expect("the second store waited on the busy table")
    .unwrap();
    tx.rollback().await.unwrap();
    drop(second);
    first.drop_schema().await.unwrap();
}

/// A store renews the runs it drives, not every run the table gives its
/// worker: a run whose claim committed but whose answer was lost (the
/// connection broke, a server restart) runs out of lease and another
/// worker takes it up, while the run it did claim stays its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_renews_only_the_runs_its_worker_drives() {
    use reactor::journal::{Leases, PgStore};
    let url = database_url();
    let schema = format!("reactor_held_{}", std::process::id());
    fresh_pg(&url, &schema).await.drop_schema().await.unwrap();
    let lease = std::time::Duration::from_millis(1000);
    let open = || async {
        PgStore::options(&url)
            .schema(&schema)
            .lease(lease)
            .connect()
            .await
            .unwrap()
    };
    let (a, b) = (open().await, open().await);
    let queued = |id: &str| NewRun {
        queued: true,
        ..new_run(id, None)
    };
    let reactors = ["r".to_string()];
    a.create_run(queued("kept")).await.unwrap();
    assert_eq!(a.claim(1, &reactors, &[]).await.unwrap(), ["kept"]);
    // Claimed by `a` as far as the table knows; `a` never heard of it.
    a.create_run(queued("lost")).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let lost = client
        .execute(
            &format!(
                "UPDATE \"{schema}\".reactor_runs SET owner = $1,
                     lease_until = now() + interval '1 second' WHERE id = 'lost'"
            ),
            &[&a.worker()],
        )
        .await
        .unwrap();
    assert_eq!(lost, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let claimed = b.claim(10, &reactors, &[]).await.unwrap();
        assert!(!claimed.contains(&"kept".to_string()), "{claimed:?}");
        if claimed.contains(&"lost".to_string()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run `a` does not drive is renewed by it forever"
        );
        tokio::time::sleep(lease / 4).await;
    }
    drop((a, b));
    fresh_pg(&url, &schema).await.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_refuses_a_schema_name_it_would_have_to_quote() {
    let err = reactor::journal::PgStore::connect_in(&database_url(), "Robert\"; DROP")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a schema name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journal_survives_reopening() {
    let dir = temp_dir("reopen");
    let path = dir.join("nested/dirs/j.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_run(new_run("a", Some("key"))).await.unwrap();
        store.append("a", 1, &[done(1, "s1")]).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let j = store.load("a").await.unwrap();
    assert_eq!(j.records.len(), 2);
    assert_eq!(
        store.create_run(new_run("z", Some("key"))).await.unwrap(),
        Created::Existing("a".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_an_earlier_schema_gains_owner_epochs() {
    let dir = temp_dir("migrate");
    let path = dir.join("j.db");
    std::fs::create_dir_all(&dir).unwrap();
    {
        // The schema before owner epochs.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE reactor_runs (id TEXT PRIMARY KEY, reactor TEXT NOT NULL,
                 status TEXT NOT NULL, idempotency_key TEXT UNIQUE,
                 created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
             CREATE TABLE reactor_journal (run_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 kind TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (run_id, seq)) WITHOUT ROWID;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    store.create_run(new_run("old", None)).await.unwrap();
    store.append("old", 1, &[done(1, "s1")]).await.unwrap();
    store
        .append("old", 2, &[Record::new(2, Entry::Resumed { epoch: 2 })])
        .await
        .unwrap();
    assert!(matches!(
        store.append("old", 1, &[done(3, "s")]).await,
        Err(StoreError::Fenced { .. })
    ));
    drop(store);
    // Opening it again leaves it as it is.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load("old").await.unwrap().records.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_and_truncated_journals_are_reported() {
    let dir = temp_dir("corrupt");
    let path = dir.join("j.db");
    let store = SqliteStore::open(&path).unwrap();
    for id in ["bad", "short", "fine"] {
        store.create_run(new_run(id, None)).await.unwrap();
        store
            .append(id, 1, &[done(1, "s1"), done(2, "s2")])
            .await
            .unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE reactor_journal SET body = '{not json' WHERE run_id = 'bad' AND seq = 2",
        [],
    )
    .unwrap();
    raw.execute(
        "DELETE FROM reactor_journal WHERE run_id = 'short' AND seq = 1",
        [],
    )
    .unwrap();
    drop(raw);
    match store.load("bad").await {
        Err(e @ StoreError::Corrupt { seq: 2, .. }) => {
            assert!(e.to_string().contains("bad"), "{e}")
        }
        other => panic!("a corrupt record loaded: {other:?}"),
    }
    assert!(matches!(
        store.load("short").await,
        Err(StoreError::Corrupt { seq: 1, .. })
    ));
    assert_eq!(store.load("fine").await.unwrap().records.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
