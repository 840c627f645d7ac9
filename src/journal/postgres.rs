//! [`PgStore`]: journals in PostgreSQL, so that many worker processes on
//! many machines share runs.
//!
//! # Design
//!
//! - **tokio-postgres**, not sqlx: it runs on the caller's tokio runtime,
//!   pipelines queries on one connection, and needs neither macros nor a
//!   database at build time; sqlx's current releases need a newer Rust
//!   than this crate's MSRV (1.89).
//! - **One writer task does group commit**, as [`SqliteStore`]'s thread
//!   does: every write queued while the previous transaction committed
//!   goes into the next (up to 1,024 records), each in a savepoint of its
//!   own so that one refused write (fenced, unknown run) fails alone, and
//!   each caller is answered after the commit. A write's records go in one
//!   statement (`unnest`), `ON CONFLICT DO NOTHING`, so a retried append
//!   is harmless.
//! - **Fencing** ([`fence`]) is checked with the run's row locked
//!   (`SELECT epoch ... FOR UPDATE`): two workers claiming one run are
//!   serialized, and the one that lost is refused.
//! - Reads use a second connection. A connection that fails is a
//!   transient [`StoreError::Backend`] (the journal retries it) and is
//!   opened again for the next write or read, so a server restart strands
//!   nothing.
//! - Tables live in a schema of the store's own (`reactor` unless told
//!   otherwise), created when the store connects (under an advisory
//!   lock, so workers starting together do not race):
//!   `reactor_runs(id, reactor, status, idempotency_key UNIQUE, created_ms,
//!   updated_ms, epoch)` and `reactor_journal(run_id, seq, kind, at_ms,
//!   body)` keyed `(run_id, seq)`; `body` is the entry as JSON.
//!
//! [`SqliteStore`]: super::SqliteStore

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::{Client, GenericClient, NoTls};

use super::record::{now_ms, Record, RunStatus};
use super::store::{
    decode_record, decode_status, fence, Created, Journal, NewRun, RunSummary, Store, StoreError,
};

/// The most records one transaction commits.
const MAX_BATCH_RECORDS: usize = 1024;

/// A [`Store`] in PostgreSQL.
///
/// # Examples
///
/// ```no_run
/// use reactor::durable::Runtime;
/// use reactor::journal::PgStore;
///
/// # async fn f() -> Result<(), reactor::Error> {
/// let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// let runtime = Runtime::new(store);
/// # Ok(()) }
/// ```
pub struct PgStore {
    writer: mpsc::UnboundedSender<Write>,
    reader: Mutex<Option<Client>>,
    conn: Arc<Conn>,
}

/// How to reach the tables.
struct Conn {
    url: String,
    schema: String,
}

enum Write {
    Create(NewRun, oneshot::Sender<Result<Created, StoreError>>),
    Append(
        String,
        u32,
        Vec<Record>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
}

impl Write {
    fn records(&self) -> usize {
        match self {
            Write::Create(..) => 1,
            Write::Append(_, _, records, _) => records.len().max(1),
        }
    }

    fn refuse(self, e: StoreError) {
        match self {
            Write::Create(_, ack) => drop(ack.send(Err(e))),
            Write::Append(_, _, _, ack) => drop(ack.send(Err(e))),
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Conn {
    /// A new connection, its driver spawned on the current runtime.
    async fn open(&self) -> Result<Client, StoreError> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection of the journal store closed");
            }
        });
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .await
            .map_err(backend)?;
        Ok(client)
    }

    /// Creates the schema and tables if they are missing.
    async fn create_schema(&self, client: &mut Client) -> Result<(), StoreError> {
        let s = &self.schema;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[s])
            .await
            .map_err(backend)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\";
             CREATE TABLE IF NOT EXISTS \"{s}\".reactor_runs (
                 id TEXT PRIMARY KEY,
                 reactor TEXT NOT NULL,
                 status TEXT NOT NULL,
                 idempotency_key TEXT UNIQUE,
                 created_ms BIGINT NOT NULL,
                 updated_ms BIGINT NOT NULL,
                 epoch INTEGER NOT NULL DEFAULT 1
             );
             CREATE INDEX IF NOT EXISTS reactor_runs_by_status
                 ON \"{s}\".reactor_runs(status, created_ms);
             CREATE TABLE IF NOT EXISTS \"{s}\".reactor_journal (
                 run_id TEXT NOT NULL,
                 seq BIGINT NOT NULL,
                 kind TEXT NOT NULL,
                 at_ms BIGINT NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (run_id, seq)
             );"
        ))
        .await
        .map_err(|e| StoreError::Backend(format!("cannot create the schema `{s}`: {e}")))?;
        tx.commit().await.map_err(backend)
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or
    /// key=value settings), keeping its tables in the schema `reactor`.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_in(url, "reactor").await
    }

    /// Connects, keeping the tables in the schema `schema` (letters,
    /// digits and `_`, starting with a letter or `_`): stores in different
    /// schemas of one database share nothing.
    pub async fn connect_in(url: &str, schema: &str) -> Result<PgStore, StoreError> {
        let valid = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(StoreError::Backend(format!(
                "`{schema}` is not a schema name this store uses: lowercase letters, digits and `_`, at most 63"
            )));
        }
        let conn = Arc::new(Conn {
            url: url.to_string(),
            schema: schema.to_string(),
        });
        let mut writer = conn.open().await?;
        conn.create_schema(&mut writer).await?;
        let reader = conn.open().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(conn.clone(), Some(writer), rx));
        Ok(PgStore {
            writer: tx,
            reader: Mutex::new(Some(reader)),
            conn,
        })
    }

    /// Drops the store's schema and everything in it (for tests and
    /// tools; runs in it are gone).
    pub async fn drop_schema(self) -> Result<(), StoreError> {
        let client = self.conn.open().await?;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.conn.schema
            ))
            .await
            .map_err(backend)
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        self.writer.send(write).map_err(|_| StoreError::Closed)
    }

    /// Runs `f` on the reading connection, opening it again if it failed.
    async fn read<T>(
        &self,
        f: impl for<'c> FnOnce(
            &'c Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>,
        >,
    ) -> Result<T, StoreError> {
        let mut reader = self.reader.lock().await;
        if reader.as_ref().is_none_or(Client::is_closed) {
            *reader = Some(self.conn.open().await?);
        }
        let client = reader.as_ref().expect("opened above");
        let out = f(client).await;
        if client.is_closed() {
            *reader = None;
        }
        out
    }
}

/// The writer task: one transaction per batch of queued writes, until
/// the store is dropped.
async fn write_loop(
    conn: Arc<Conn>,
    mut client: Option<Client>,
    mut rx: mpsc::UnboundedReceiver<Write>,
) {
    while let Some(first) = rx.recv().await {
        let mut records = first.records();
        let mut batch = vec![first];
        while records < MAX_BATCH_RECORDS {
            match rx.try_recv() {
                Ok(w) => {
                    records += w.records();
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match conn.open().await {
                Ok(c) => Some(c),
                Err(e) => {
                    for w in batch {
                        w.refuse(e.clone());
                    }
                    continue;
                }
            };
        }
        let c = client.as_mut().expect("opened above");
        if let Err(e) = commit(c, batch).await {
            tracing::warn!(error = %e, "a journal transaction failed");
        }
        if c.is_closed() {
            client = None;
        }
    }
}

/// One answer, sent once the transaction has committed.
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

async fn commit(client: &mut Client, batch: Vec<Write>) -> Result<(), StoreError> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut pending = batch.into_iter();
    let committed: Result<(), StoreError> = async {
        let mut tx = client.transaction().await.map_err(backend)?;
        for write in pending.by_ref() {
            let sp = match tx.savepoint("write").await {
                Ok(sp) => sp,
                Err(e) => {
                    write.refuse(backend(&e));
                    return Err(backend(e));
                }
            };
            let (answer, ok) = match write {
                Write::Create(run, ack) => {
                    let done = create(&sp, &run).await;
                    let ok = done.is_ok();
                    (Answer::Create(ack, done), ok)
                }
                Write::Append(run_id, epoch, records, ack) => {
                    let done = append(&sp, &run_id, epoch, &records).await;
                    let ok = done.is_ok();
                    (Answer::Append(ack, done), ok)
                }
            };
            answers.push(answer);
            if ok {
                sp.commit().await.map_err(backend)?;
            } else {
                sp.rollback().await.map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)
    }
    .await;
    for w in pending {
        w.refuse(StoreError::Backend("the transaction failed".to_string()));
    }
    for answer in answers {
        match (answer, &committed) {
            (Answer::Create(ack, r), Ok(())) => drop(ack.send(r)),
            (Answer::Append(ack, r), Ok(())) => drop(ack.send(r)),
            (Answer::Create(ack, _), Err(e)) => drop(ack.send(Err(e.clone()))),
            (Answer::Append(ack, _), Err(e)) => drop(ack.send(Err(e.clone()))),
        }
    }
    committed
}

async fn create(c: &impl GenericClient, run: &NewRun) -> Result<Created, StoreError> {
    if let Some(key) = &run.idempotency_key {
        let existing = c
            .query_opt(
                "SELECT id FROM reactor_runs WHERE idempotency_key = $1",
                &[key],
            )
            .await
            .map_err(backend)?;
        if let Some(row) = existing {
            return Ok(Created::Existing(row.get(0)));
        }
    }
    let now = now_ms() as i64;
    let status = run.first.entry.status().unwrap_or(RunStatus::Running);
    let inserted = c
        .execute(
            "INSERT INTO reactor_runs (id, reactor, status, idempotency_key, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            &[&run.id, &run.reactor, &status.as_str(), &run.idempotency_key, &now],
        )
        .await
        .map_err(|e| StoreError::Backend(format!("cannot store run `{}`: {e}", run.id)))?;
    if inserted == 0 {
        // Taken meanwhile: by a run of the same key, or of the same id.
        if let Some(key) = &run.idempotency_key {
            let existing = c
                .query_opt(
                    "SELECT id FROM reactor_runs WHERE idempotency_key = $1",
                    &[key],
                )
                .await
                .map_err(backend)?;
            if let Some(row) = existing {
                return Ok(Created::Existing(row.get(0)));
            }
        }
        return Err(StoreError::RunExists(run.id.clone()));
    }
    insert_records(c, &run.id, std::slice::from_ref(&run.first)).await?;
    Ok(Created::New)
}

async fn append(
    c: &impl GenericClient,
    run_id: &str,
    epoch: u32,
    records: &[Record],
) -> Result<(), StoreError> {
    let owner: i32 = c
        .query_opt(
            "SELECT epoch FROM reactor_runs WHERE id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?
        .get(0);
    let owner = fence(run_id, owner.max(0) as u32, epoch, records)?;
    let inserted = insert_records(c, run_id, records).await?;
    // Only what was stored now moves the status (a retried append does not).
    let status = records
        .iter()
        .rev()
        .filter(|r| inserted.contains(&(r.seq as i64)))
        .find_map(|r| r.entry.status());
    let owner = i32::try_from(owner).unwrap_or(i32::MAX);
    c.execute(
        "UPDATE reactor_runs SET updated_ms = $1, status = COALESCE($2, status), epoch = $3 WHERE id = $4",
        &[&(now_ms() as i64), &status.map(RunStatus::as_str), &owner, &run_id],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// Inserts the records not stored yet, in one statement; returns their
/// `seq`s.
async fn insert_records(
    c: &impl GenericClient,
    run_id: &str,
    records: &[Record],
) -> Result<Vec<i64>, StoreError> {
    let mut seqs = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let mut ats = Vec::with_capacity(records.len());
    let mut bodies = Vec::with_capacity(records.len());
    for r in records {
        seqs.push(i64::try_from(r.seq).map_err(backend)?);
        kinds.push(r.entry.kind());
        ats.push(r.at_ms as i64);
        bodies.push(serde_json::to_string(&r.entry).map_err(backend)?);
    }
    let rows = c
        .query(
            "INSERT INTO reactor_journal (run_id, seq, kind, at_ms, body)
             SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
             ON CONFLICT DO NOTHING RETURNING seq",
            &[&run_id, &seqs, &kinds, &ats, &bodies],
        )
        .await
        .map_err(backend)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

const SUMMARY: &str =
    "SELECT id, reactor, status, idempotency_key, created_ms, updated_ms FROM reactor_runs";

fn summary(row: &tokio_postgres::Row) -> Result<RunSummary, StoreError> {
    let id: String = row.get(0);
    let status: String = row.get(2);
    Ok(RunSummary {
        status: decode_status(&id, &status)?,
        id,
        reactor: row.get(1),
        idempotency_key: row.get(3),
        created_ms: row.get::<_, i64>(4) as u64,
        updated_ms: row.get::<_, i64>(5) as u64,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Write::Create(run, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Write::Append(
            run_id.to_string(),
            epoch,
            records.to_vec(),
            tx,
        ))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn load(&self, run_id: &str) -> Result<Journal, StoreError> {
        let id = run_id.to_string();
        self.read(move |c| {
            Box::pin(async move {
                let run = c
                    .query_opt(&format!("{SUMMARY} WHERE id = $1"), &[&id])
                    .await
                    .map_err(backend)?
                    .ok_or_else(|| StoreError::UnknownRun(id.clone()))?;
                let run = summary(&run)?;
                let rows = c
                    .query(
                        "SELECT seq, at_ms, body FROM reactor_journal WHERE run_id = $1 ORDER BY seq",
                        &[&id],
                    )
                    .await
                    .map_err(backend)?;
                let records = rows
                    .iter()
                    .map(|r| decode_record(&id, r.get(0), r.get(1), r.get::<_, &str>(2)))
                    .collect::<Result<Vec<_>, _>>()?;
                Journal::checked(run, records)
            })
        })
        .await
    }

    async fn purge(&self, ended_before_ms: u64) -> Result<u64, StoreError> {
        let cutoff = i64::try_from(ended_before_ms).unwrap_or(i64::MAX);
        self.read(move |c| {
            Box::pin(async move {
                let purged = "SELECT r.id FROM reactor_runs r JOIN reactor_runs p
                     ON r.id = p.id OR left(r.id, length(p.id) + 1) = p.id || '/'
                     WHERE p.status IN ('completed', 'failed', 'cancelled')
                       AND p.updated_ms < $1 AND strpos(p.id, '/') = 0";
                // One statement: the runs and their journals go together.
                let row = c
                    .query_one(
                        &format!(
                            "WITH gone AS (DELETE FROM reactor_runs WHERE id IN ({purged}) RETURNING id),
                                  records AS (DELETE FROM reactor_journal WHERE run_id IN (SELECT id FROM gone))
                             SELECT count(*) FROM gone"
                        ),
                        &[&cutoff],
                    )
                    .await
                    .map_err(backend)?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            })
        })
        .await
    }

    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        self.read(move |c| {
            Box::pin(async move {
                let rows = match status {
                    Some(st) => {
                        c.query(
                            &format!("{SUMMARY} WHERE status = $1 ORDER BY created_ms, id"),
                            &[&st.as_str()],
                        )
                        .await
                    }
                    None => {
                        c.query(&format!("{SUMMARY} ORDER BY created_ms, id"), &[])
                            .await
                    }
                }
                .map_err(backend)?;
                rows.iter().map(summary).collect()
            })
        })
        .await
    }
}
