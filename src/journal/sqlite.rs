//! [`SqliteStore`]: journals in one SQLite file, the embedded default.
//!
//! # Design
//!
//! - WAL mode, `synchronous=FULL` unless told `NORMAL` (which survives a
//!   crash of the process but may lose the last commits on power loss).
//! - **One writer thread does group commit**: it takes every write queued
//!   while the previous commit was syncing (up to 1,024 records), applies
//!   them in one transaction, each in a savepoint of its own (one bad
//!   write fails alone), commits once, then answers each caller. A
//!   transaction per record caps SQLite at about 600 commits a second on
//!   this project's machine; a batch of 100 reaches tens of thousands of
//!   records a second.
//! - Reads go through a second connection on tokio's blocking pool; WAL
//!   lets them run beside the writer.
//! - Tables: `reactor_runs(id, reactor, status, idempotency_key UNIQUE,
//!   created_ms, updated_ms)` and `reactor_journal(run_id, seq, kind,
//!   at_ms, body)`, keyed `(run_id, seq)` `WITHOUT ROWID`; `body` is the
//!   entry as JSON. A record already stored is ignored (`INSERT OR
//!   IGNORE`), so a retried append is harmless.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::record::{now_ms, Record, RunStatus};
use super::store::{
    ask, commit_measured, decode_record, decode_status, fence, Created, Journal, NewRun,
    RunSummary, Store, StoreError, Write, SUMMARY_SQL as SUMMARY,
};

/// How many records one commit takes at most.
const MAX_BATCH_RECORDS: usize = 1024;

/// How SQLite syncs a commit to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit reaches the disk before it is acknowledged (default).
    #[default]
    Full,
    /// Commits survive a crash of the process; the last ones may be lost
    /// on power loss.
    Normal,
}

/// A [`Store`] in a SQLite file.
///
/// # Examples
///
/// ```
/// use reactor::journal::{SqliteStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::journal::StoreError> {
/// let dir = std::env::temp_dir().join(format!("reactor-doc-{}", std::process::id()));
/// let store = SqliteStore::open(dir.join("journal.db"))?;
/// assert!(store.runs(None).await?.is_empty());
/// # drop(store); let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Write>>,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating it and its directory if need be) the journal at
    /// `path`, syncing every commit.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Synchronous::Full)
    }

    /// Opens the journal at `path` with the given sync mode.
    pub fn open_with(
        path: impl AsRef<Path>,
        synchronous: Synchronous,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create `{}`: {e}", dir.display()))
            })?;
        }
        let writer = connect(&path, synchronous)?;
        writer
            .execute_batch(SCHEMA)
            .and_then(|()| migrate(&writer))
            .map_err(|e| StoreError::Backend(format!("cannot create the schema: {e}")))?;
        let reader = connect(&path, synchronous)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("reactor-sqlite-writer".to_string())
            .spawn(move || write_loop(writer, rx))
            .map_err(backend)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(tx),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The file the journal is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(write)
            .map_err(|_| StoreError::Closed)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| StoreError::Backend(format!("the reading thread failed: {e}")))?
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reactor_runs (
    id TEXT PRIMARY KEY,
    reactor TEXT NOT NULL,
    status TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS reactor_runs_by_status ON reactor_runs(status, created_ms);
CREATE TABLE IF NOT EXISTS reactor_journal (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
";

/// Brings a journal made by an earlier version up to the schema: runs
/// without an owner epoch get one (1; a take-up claims a newer one).
/// Checked and changed under the write lock, so that two processes
/// opening the file at once do not both change it.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        let has_epoch = conn
            .prepare("SELECT 1 FROM pragma_table_info('reactor_runs') WHERE name = 'epoch'")?
            .exists([])?;
        if !has_epoch {
            conn.execute_batch(
                "ALTER TABLE reactor_runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;",
            )?;
        }
        Ok(())
    })();
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn connect(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open `{}`: {e}", path.display())))?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;"
    ))
    .map_err(|e| StoreError::Backend(format!("cannot set up `{}`: {e}", path.display())))?;
    Ok(conn)
}

/// The writer thread: one transaction per batch of queued writes, until
/// the store is dropped.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut records = batch[0].records();
        while records < MAX_BATCH_RECORDS {
            match rx.try_recv() {
                Ok(w) => {
                    records += w.records();
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        commit(&mut conn, batch);
        commit_measured("sqlite", records, started.elapsed());
    }
}

enum Answer {
    Create(
        oneshot::Sender<Result<Created, StoreError>>,
        Result<Created, StoreError>,
    ),
    Append(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

fn commit(conn: &mut Connection, batch: Vec<Write>) {
    let mut answers = Vec::with_capacity(batch.len());
    let mut pending = batch.into_iter();
    let committed = (|| -> Result<(), rusqlite::Error> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for write in pending.by_ref() {
            let mut sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => {
                    answers.push(refused(write));
                    return Err(e);
                }
            };
            let answer = match write {
                Write::Create(run, ack) => {
                    let done = create(&sp, &run);
                    Answer::Create(ack, done)
                }
                Write::Append(run_id, epoch, records, ack) => {
                    let done = append(&sp, &run_id, epoch, &records);
                    Answer::Append(ack, done)
                }
            };
            let ok = match &answer {
                Answer::Create(_, r) => r.is_ok(),
                Answer::Append(_, r) => r.is_ok(),
            };
            // Answered whatever happens next: the answer waits for the commit.
            answers.push(answer);
            if ok {
                sp.commit()?;
            } else {
                sp.rollback()?;
            }
        }
        tx.commit()
    })();
    // Writes the failure left untried get its error too.
    answers.extend(pending.map(refused));
    for answer in answers {
        match (answer, &committed) {
            (Answer::Create(ack, r), Ok(())) => drop(ack.send(r)),
            (Answer::Append(ack, r), Ok(())) => drop(ack.send(r)),
            (Answer::Create(ack, _), Err(e)) => drop(ack.send(Err(backend(e)))),
            (Answer::Append(ack, _), Err(e)) => drop(ack.send(Err(backend(e)))),
        }
    }
}

/// The answer to a write that was not tried (the transaction failed
/// first): it gets the transaction's error.
fn refused(write: Write) -> Answer {
    let untried = || StoreError::Backend("the transaction failed".to_string());
    match write {
        Write::Create(_, ack) => Answer::Create(ack, Err(untried())),
        Write::Append(_, _, _, ack) => Answer::Append(ack, Err(untried())),
    }
}

fn create(conn: &Connection, run: &NewRun) -> Result<Created, StoreError> {
    if let Some(key) = &run.idempotency_key {
        let existing: Option<String> = conn
            .query_row(
                "SELECT id FROM reactor_runs WHERE idempotency_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if let Some(id) = existing {
            return Ok(Created::Existing(id));
        }
    }
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM reactor_runs WHERE id = ?1", [&run.id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    if exists.is_some() {
        return Err(StoreError::RunExists(run.id.clone()));
    }
    let now = now_ms() as i64;
    let status = run.first.entry.status().unwrap_or(RunStatus::Running);
    conn.execute(
        "INSERT INTO reactor_runs (id, reactor, status, idempotency_key, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![
            run.id,
            run.reactor,
            status.as_str(),
            run.idempotency_key,
            now
        ],
    )
    .map_err(|e| StoreError::Backend(format!("cannot store run `{}`: {e}", run.id)))?;
    insert_records(conn, &run.id, std::slice::from_ref(&run.first))?;
    Ok(Created::New)
}

fn append(
    conn: &Connection,
    run_id: &str,
    epoch: u32,
    records: &[Record],
) -> Result<(), StoreError> {
    let owner: u32 = conn
        .query_row(
            "SELECT epoch FROM reactor_runs WHERE id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
    let owner = fence(run_id, owner, epoch, records, || {
        conn.query_row(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM reactor_journal WHERE run_id = ?1",
            [run_id],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(backend)
    })?;
    let inserted = insert_records(conn, run_id, records)?;
    // Only what was stored now moves the status (a retried append does not).
    let status = inserted
        .iter()
        .rev()
        .find_map(|&i| records[i].entry.status());
    let changed = conn
        .execute(
            "UPDATE reactor_runs SET updated_ms = ?1, status = COALESCE(?2, status), epoch = ?3 WHERE id = ?4",
            params![now_ms() as i64, status.map(RunStatus::as_str), owner, run_id],
        )
        .map_err(backend)?;
    if changed == 0 {
        return Err(StoreError::UnknownRun(run_id.to_string()));
    }
    Ok(())
}

/// Inserts the records not stored yet; returns their indexes.
fn insert_records(
    conn: &Connection,
    run_id: &str,
    records: &[Record],
) -> Result<Vec<usize>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO reactor_journal (run_id, seq, kind, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend)?;
    let mut inserted = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let body = serde_json::to_string(&r.entry).map_err(backend)?;
        let seq = i64::try_from(r.seq).map_err(backend)?;
        let n = stmt
            .execute(params![run_id, seq, r.entry.kind(), r.at_ms as i64, body])
            .map_err(backend)?;
        if n == 1 {
            inserted.push(i);
        }
    }
    Ok(inserted)
}

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<(RunSummary, String)> {
    let status: String = row.get(2)?;
    Ok((
        RunSummary {
            id: row.get(0)?,
            reactor: row.get(1)?,
            status: RunStatus::Running,
            idempotency_key: row.get(3)?,
            created_ms: row.get::<_, i64>(4)? as u64,
            updated_ms: row.get::<_, i64>(5)? as u64,
        },
        status,
    ))
}

fn with_status((mut s, status): (RunSummary, String)) -> Result<RunSummary, StoreError> {
    s.status = decode_status(&s.id, &status)?;
    Ok(s)
}

/// Fills `reactor_purged` with the runs ended runs `p` (filtered by what
/// follows) are, and their nested runs.
/// (The join is on the top-level id, so each run finds its top-level run
/// by its key.)
const PURGED: &str = "INSERT OR IGNORE INTO reactor_purged SELECT r.id FROM reactor_runs r
     JOIN reactor_runs p ON p.id = CASE WHEN instr(r.id, '/') > 0
         THEN substr(r.id, 1, instr(r.id, '/') - 1) ELSE r.id END";

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        ask(|tx| self.send(Write::Create(run, tx))).await
    }

    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        let records = records.to_vec();
        ask(|tx| self.send(Write::Append(run_id.to_string(), epoch, records, tx))).await
    }

    async fn load(&self, run_id: &str) -> Result<Journal, StoreError> {
        let run_id = run_id.to_string();
        self.read(move |conn| {
            let run = conn
                .query_row(&format!("{SUMMARY} WHERE id = ?1"), [&run_id], summary)
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::UnknownRun(run_id.clone()))?;
            let run = with_status(run)?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at_ms, body FROM reactor_journal WHERE run_id = ?1 ORDER BY seq",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&run_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(backend)?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, at_ms, body) = row.map_err(|e| StoreError::Corrupt {
                    run_id: run_id.clone(),
                    seq: records.len() as u64,
                    problem: e.to_string(),
                })?;
                records.push(decode_record(&run_id, seq, at_ms, &body)?);
            }
            Journal::checked(run, records)
        })
        .await
    }

    async fn purge(&self, ended_before_ms: u64) -> Result<u64, StoreError> {
        // Rare, and not in the way of the journal's writes: on the reading
        // connection, which waits for the writer's lock like any other.
        self.read(move |conn| {
            // Immediate: a deferred transaction's snapshot goes stale when
            // the writer commits, and could not become a write.
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(backend)?;
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS reactor_purged (id TEXT PRIMARY KEY);
                 DELETE FROM reactor_purged;",
            )
            .map_err(backend)?;
            tx.execute(&format!("{PURGED} WHERE p.status IN ('completed', 'failed', 'cancelled') AND p.updated_ms < ?1 AND instr(p.id, '/') = 0"), [ended_before_ms as i64])
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM reactor_journal WHERE run_id IN (SELECT id FROM reactor_purged)",
                [],
            )
            .map_err(backend)?;
            let n = tx
                .execute(
                    "DELETE FROM reactor_runs WHERE id IN (SELECT id FROM reactor_purged)",
                    [],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        self.read(move |conn| {
            let (sql, arg) = match status {
                Some(st) => (
                    format!("{SUMMARY} WHERE status = ?1 ORDER BY created_ms, id"),
                    Some(st.as_str()),
                ),
                None => (format!("{SUMMARY} ORDER BY created_ms, id"), None),
            };
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = match arg {
                Some(a) => stmt.query_map([a], summary),
                None => stmt.query_map([], summary),
            }
            .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(with_status))
                .collect()
        })
        .await
    }
}
