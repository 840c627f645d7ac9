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
//!   each caller is answered after the commit. All the appends of a
//!   transaction take three statements, whatever their number: the runs'
//!   rows locked (in id order, so workers never deadlock) with their
//!   owners, every record inserted at once (`unnest`, `ON CONFLICT DO
//!   NOTHING`, so a retried append is harmless), the runs updated at once.
//!   A round trip per write instead kept one process under 1,000 steps a
//!   second.
//! - **Fencing** ([`fence`]) is applied to each append with its run's row
//!   locked (`SELECT ... FOR UPDATE`): two workers claiming one run are
//!   serialized, and the one that lost is refused alone.
//! - A transaction left open by a worker that stalled (stopped, paused
//!   past its lease) would hold its row locks for every other worker:
//!   each connection sets `idle_in_transaction_session_timeout` to the
//!   lease, so the server ends it.
//! - Shared limits ([`PgStore::shared_limits`]) live in `pg_limits`.
//! - Reads use a second connection. A connection that fails is a
//!   transient [`StoreError::Backend`] (the journal retries it) and is
//!   opened again for the next write or read, so a server restart strands
//!   nothing. Nor does an answer it lost: the lease renewal renews only
//!   the runs the store knows it holds (`pg_held`), so a run claimed by a
//!   statement whose answer never came, or one whose hand-back failed,
//!   runs out of lease and is claimed again.
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

use super::pg_held::Held;
use super::record::{now_ms, Entry, Record, RunStatus};
use super::store::{
    ask, commit_measured, decode_record, decode_status, fence, Created, Journal, Leases, NewRun,
    RunSummary, Store, StoreError, Write, SUMMARY_SQL as SUMMARY,
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
    reader: Session,
    conn: Arc<Conn>,
    limits: Arc<super::pg_limits::PgLimits>,
}

/// A connection used one caller at a time, opened again for the next
/// caller once it failed (a server restart strands nothing).
pub(super) struct Session {
    conn: Arc<Conn>,
    client: Mutex<Option<Client>>,
}

impl Session {
    pub(super) fn new(conn: Arc<Conn>, client: Option<Client>) -> Session {
        Session {
            conn,
            client: Mutex::new(client),
        }
    }

    /// Runs `f` on the connection, opening it first if it is closed.
    pub(super) async fn run<T>(
        &self,
        f: impl for<'c> FnOnce(&'c Client) -> OnClient<'c, T>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = Some(self.conn.open().await?);
        }
        let c = client.as_ref().expect("opened above");
        let out = f(c).await;
        if c.is_closed() {
            *client = None;
        }
        out
    }
}

/// What a function given a connection returns: its work on it.
pub(super) type OnClient<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// How to reach the tables, and who this store is among the workers.
pub(super) struct Conn {
    url: String,
    schema: String,
    /// The owner of the runs this store holds.
    pub(super) worker: String,
    /// How long a lease lasts unless renewed, in milliseconds.
    pub(super) lease_ms: i64,
    /// The runs it holds: those its renewal renews.
    held: Held,
}

pub(super) fn backend(e: impl std::fmt::Display + 'static) -> StoreError {
    StoreError::Backend(message(e))
}

/// What went wrong: a server error's own message (the client's Display
/// says only "db error").
fn message(e: impl std::fmt::Display + 'static) -> String {
    let any: &dyn std::any::Any = &e;
    if let Some(db) = any
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        return format!("PostgreSQL: {}", db.message());
    }
    e.to_string()
}

impl Conn {
    /// A new connection, its driver spawned on the current runtime.
    pub(super) async fn open(&self) -> Result<Client, StoreError> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection of the journal store closed");
            }
        });
        // A worker stalled inside a transaction (stopped, paused) would
        // hold its locks for as long as its connection lives: the server
        // ends such a transaction after the lease, by when its runs are
        // another worker's anyway.
        client
            .batch_execute(&format!(
                "SET search_path TO \"{}\"; SET idle_in_transaction_session_timeout = {}",
                self.schema, self.lease_ms
            ))
            .await
            .map_err(backend)?;
        Ok(client)
    }

    /// Creates the schema and tables if they are missing or older than
    /// [`SCHEMA_VERSION`]. A schema already up to date is left alone: its
    /// DDL (`ALTER TABLE` even when nothing changes) would lock tables the
    /// workers already running on it are using, and could deadlock with
    /// them.
    async fn create_schema(&self, client: &mut Client) -> Result<(), StoreError> {
        let s = &self.schema;
        if schema_version(&*client, s).await? >= SCHEMA_VERSION {
            return Ok(());
        }
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[s])
            .await
            .map_err(backend)?;
        if schema_version(&tx, s).await? >= SCHEMA_VERSION {
            return tx.commit().await.map_err(backend);
        }
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
             ALTER TABLE \"{s}\".reactor_runs
                 ADD COLUMN IF NOT EXISTS owner TEXT,
                 ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ;
             CREATE INDEX IF NOT EXISTS reactor_runs_by_owner
                 ON \"{s}\".reactor_runs(owner) WHERE status IN ('running', 'unwinding');
             CREATE INDEX IF NOT EXISTS reactor_runs_claimable
                 ON \"{s}\".reactor_runs((coalesce(lease_until, '-infinity'::timestamptz)), created_ms)
                 WHERE status IN ('running', 'unwinding') AND strpos(id, '/') = 0;
             CREATE TABLE IF NOT EXISTS \"{s}\".reactor_journal (
                 run_id TEXT NOT NULL,
                 seq BIGINT NOT NULL,
                 kind TEXT NOT NULL,
                 at_ms BIGINT NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (run_id, seq)
             );
             {}
             CREATE TABLE IF NOT EXISTS \"{s}\".reactor_schema (version INTEGER NOT NULL);
             DELETE FROM \"{s}\".reactor_schema;
             INSERT INTO \"{s}\".reactor_schema VALUES ({SCHEMA_VERSION});",
            super::pg_limits::schema(s)
        ))
        .await
        .map_err(|e| {
            StoreError::Backend(format!("cannot create the schema `{s}`: {}", message(e)))
        })?;
        tx.commit().await.map_err(backend)
    }
}

/// The version of the tables [`Conn::create_schema`] makes; raise it with
/// every change to them.
const SCHEMA_VERSION: i32 = 1;

/// The version of schema `s`'s tables: 0 if they predate versions or do
/// not exist.
async fn schema_version(c: &impl GenericClient, s: &str) -> Result<i32, StoreError> {
    let table = format!("\"{s}\".reactor_schema");
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(backend)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    c.query_one(
        &format!("SELECT coalesce(max(version), 0) FROM {table}"),
        &[],
    )
    .await
    .map_err(backend)
    .map(|row| row.get(0))
}

/// How a [`PgStore`] connects: its schema, its worker id, its lease.
///
/// ```no_run
/// use std::time::Duration;
/// use reactor::journal::PgStore;
///
/// # async fn f() -> Result<(), reactor::journal::StoreError> {
/// let store = PgStore::options("postgres://postgres@127.0.0.1:5432/test")
///     .schema("orders")
///     .lease(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgOptions {
    url: String,
    schema: String,
    worker: Option<String>,
    lease: std::time::Duration,
}

impl PgOptions {
    /// Keeps the tables in the schema `schema` (lowercase letters, digits
    /// and `_`, at most 63; default `reactor`): stores in different
    /// schemas of one database share nothing.
    pub fn schema(mut self, schema: &str) -> PgOptions {
        self.schema = schema.to_string();
        self
    }

    /// This worker's id among the processes sharing the store (default:
    /// the host name, the process id and a random suffix).
    pub fn worker(mut self, id: impl Into<String>) -> PgOptions {
        self.worker = Some(id.into());
        self
    }

    /// How long a worker's hold on a run lasts unless renewed (default
    /// 10 s, at least 100 ms; saturates at a year): the store renews it
    /// every fifth of that while open, so a run of a worker that died is
    /// claimed by another within this time and one poll.
    pub fn lease(mut self, lease: std::time::Duration) -> PgOptions {
        self.lease = lease.clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(365 * 24 * 3600),
        );
        self
    }

    /// Connects: creates the schema and tables if they are missing, and
    /// starts the writer and the lease renewal.
    pub async fn connect(self) -> Result<PgStore, StoreError> {
        let schema = self.schema;
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
        let worker = self.worker.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_string());
            let random = uuid::Uuid::new_v4().simple().to_string();
            format!("{host}-{}-{}", std::process::id(), &random[..8])
        });
        let conn = Arc::new(Conn {
            url: self.url,
            schema,
            worker,
            lease_ms: self.lease.as_millis() as i64,
            held: Held::default(),
        });
        let mut writer = conn.open().await?;
        conn.create_schema(&mut writer).await?;
        let reader = conn.open().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(conn.clone(), Some(writer), rx));
        tokio::spawn(renew_loop(Arc::downgrade(&conn), self.lease / 5));
        let limits = Arc::new(super::pg_limits::PgLimits {
            conn: conn.clone(),
            session: Session::new(conn.clone(), None),
        });
        Ok(PgStore {
            writer: tx,
            reader: Session::new(conn.clone(), Some(reader)),
            conn,
            limits,
        })
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or
    /// key=value settings), keeping its tables in the schema `reactor`.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::options(url).connect().await
    }

    /// Connects, keeping the tables in the schema `schema` (see
    /// [`PgOptions::schema`]).
    pub async fn connect_in(url: &str, schema: &str) -> Result<PgStore, StoreError> {
        PgStore::options(url).schema(schema).connect().await
    }

    /// Options to connect with.
    pub fn options(url: &str) -> PgOptions {
        PgOptions {
            url: url.to_string(),
            schema: "reactor".to_string(),
            worker: None,
            lease: std::time::Duration::from_secs(10),
        }
    }

    /// The counts this store's workers share, for
    /// [`ConcurrencyPool::shared`](crate::ConcurrencyPool::shared) and
    /// [`Limit::shared`](crate::Limit::shared): held under this worker's
    /// lease, renewed with its runs'.
    pub fn shared_limits(&self) -> Arc<dyn crate::limit::SharedLimits> {
        self.limits.clone()
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

    /// Runs `f` on the reading connection.
    async fn read<T>(
        &self,
        f: impl for<'c> FnOnce(&'c Client) -> OnClient<'c, T>,
    ) -> Result<T, StoreError> {
        self.reader.run(f).await
    }
}

/// Renews the leases of the runs this store holds ([`Held`]: not every
/// run the table gives its worker), one statement every `tick`, until
/// the store is dropped. Runs a write has locked are
/// skipped (the write renews them): waiting for them, in another order
/// than the writer locks them, would deadlock with it. Shared limits'
/// holdings are renewed; what a worker wants is forgotten (a waiter
/// states it again with its next claim, so a waiter that gave up does
/// not hold other workers to their shares). A failed renewal is tried again
/// at the next tick (on a new connection if the old one closed).
async fn renew_loop(conn: std::sync::Weak<Conn>, tick: std::time::Duration) {
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(tick).await;
        let Some(conn) = conn.upgrade() else {
            return;
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = conn.open().await.ok();
        }
        let Some(c) = client.as_ref() else {
            continue;
        };
        let renewed = c
            .execute(
                "WITH runs AS (
                     UPDATE reactor_runs SET lease_until = now() + $2 * interval '1 millisecond'
                     WHERE id IN (
                         SELECT id FROM reactor_runs
                         WHERE owner = $1 AND status IN ('running', 'unwinding')
                           AND id = ANY($3)
                         FOR UPDATE SKIP LOCKED)
                 ),
                 idle AS (DELETE FROM reactor_limits WHERE worker = $1 AND held = 0)
                 UPDATE reactor_limits
                 SET lease_until = now() + $2 * interval '1 millisecond', wanted = 0
                 WHERE worker = $1 AND held > 0",
                &[&conn.worker, &(conn.lease_ms as f64), &conn.held.ids()],
            )
            .await;
        if let Err(e) = renewed {
            tracing::warn!(worker = %conn.worker, error = %backend(e), "renewing the leases failed");
        }
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
        let started = std::time::Instant::now();
        if let Err(e) = commit(c, &conn, batch).await {
            tracing::warn!(error = %e, "a journal transaction failed");
        }
        commit_measured("postgres", records, started.elapsed());
        if c.is_closed() {
            client = None;
        }
    }
}

/// One transaction for the batch: each new run in a savepoint of its
/// own, then every append of the batch in three statements (lock the
/// runs, insert all records, update the runs), the fencing rule applied
/// per append in between. Answers are sent once it has committed.
async fn commit(client: &mut Client, conn: &Conn, batch: Vec<Write>) -> Result<(), StoreError> {
    let mut creates = Vec::new();
    let mut appends = Vec::new();
    for write in batch {
        match write {
            Write::Create(run, ack) => creates.push((run, ack)),
            Write::Append(run_id, epoch, records, ack) => {
                appends.push((run_id, epoch, records, ack))
            }
        }
    }
    let mut created = Vec::with_capacity(creates.len());
    let mut appended: Vec<Result<(), StoreError>> = Vec::with_capacity(appends.len());
    let mut written = Vec::new();
    let committed: Result<(), StoreError> = async {
        let mut tx = client.transaction().await.map_err(backend)?;
        for (run, _) in &creates {
            let sp = tx.savepoint("new_run").await.map_err(backend)?;
            let done = create(&sp, conn, run).await;
            if done.is_ok() {
                sp.commit().await.map_err(backend)?;
            } else {
                sp.rollback().await.map_err(backend)?;
            }
            created.push(done);
        }
        if !appends.is_empty() {
            (appended, written) = append_all(&tx, conn, &appends).await?;
        }
        tx.commit().await.map_err(backend)
    }
    .await;
    if committed.is_ok() {
        let new = creates
            .iter()
            .zip(&created)
            .filter(|((run, _), done)| !run.queued && matches!(done, Ok(Created::New)));
        conn.held.take(new.map(|((run, _), _)| run.id.as_str()));
        for w in written {
            conn.held.wrote(w.run, w.status, w.resumed);
        }
    }
    fn answer<T>(
        committed: &Result<(), StoreError>,
        r: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match committed {
            Ok(()) => r,
            Err(e) => Err(e.clone()),
        }
    }
    let mut created = created.into_iter();
    for (_, ack) in creates {
        let r = created
            .next()
            .unwrap_or_else(|| Err(StoreError::Backend("the transaction failed".to_string())));
        drop(ack.send(answer(&committed, r)));
    }
    let mut appended = appended.into_iter();
    for (.., ack) in appends {
        let r = appended
            .next()
            .unwrap_or_else(|| Err(StoreError::Backend("the transaction failed".to_string())));
        drop(ack.send(answer(&committed, r)));
    }
    committed
}

/// A run an append was accepted for: its status now, and whether the
/// append took it up (a new epoch).
struct Written<'a> {
    run: &'a str,
    status: RunStatus,
    resumed: bool,
}

type Append = (
    String,
    u32,
    Vec<Record>,
    oneshot::Sender<Result<(), StoreError>>,
);

/// Every append of a batch, in three statements: the runs' rows locked
/// (in id order, so that workers never deadlock) and their owners read,
/// the fencing rule applied to each append in turn, the accepted records
/// inserted at once, and the runs' status and owner updated at once. Each
/// append's answer (refused ones fail alone), and each run written.
async fn append_all<'a>(
    c: &impl GenericClient,
    conn: &Conn,
    appends: &'a [Append],
) -> Result<(Vec<Result<(), StoreError>>, Vec<Written<'a>>), StoreError> {
    let mut ids: Vec<&str> = appends.iter().map(|(id, ..)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = c
        .query(
            "SELECT id, epoch, status FROM reactor_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids],
        )
        .await
        .map_err(backend)?;
    let mut owners: std::collections::HashMap<String, u32> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1).max(0) as u32))
        .collect();
    // Each run's status before this batch (a retried append stores
    // nothing new, and leaves it as it was).
    let before: std::collections::HashMap<String, RunStatus> = rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            let status = RunStatus::parse(r.get::<_, &str>(2))?;
            Some((id, status))
        })
        .collect();
    // The next place of each run that a claim of this batch takes (a
    // claim must take it), kept up as the batch's appends are accepted.
    let claimed: Vec<&str> = appends
        .iter()
        .filter(|(_, _, records, _)| {
            records
                .iter()
                .any(|r| matches!(r.entry, Entry::Resumed { .. }))
        })
        .map(|(id, ..)| id.as_str())
        .collect();
    let mut next: std::collections::HashMap<String, u64> = if claimed.is_empty() {
        Default::default()
    } else {
        c.query(
            "SELECT run_id, MAX(seq) + 1 FROM reactor_journal WHERE run_id = ANY($1) GROUP BY run_id",
            &[&claimed],
        )
        .await
        .map_err(backend)?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
        .collect()
    };
    let mut answers = Vec::with_capacity(appends.len());
    let (mut runs, mut seqs, mut kinds, mut ats, mut bodies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (run_id, epoch, records, _) in appends {
        let Some(owner) = owners.get_mut(run_id) else {
            answers.push(Err(StoreError::UnknownRun(run_id.clone())));
            continue;
        };
        let at = next.get(run_id).copied().unwrap_or(0);
        match fence(run_id, *owner, *epoch, records, || Ok(at)) {
            Ok(now) => *owner = now,
            Err(e) => {
                answers.push(Err(e));
                continue;
            }
        }
        if let Some(last) = records.iter().map(|r| r.seq + 1).max() {
            let n = next.entry(run_id.clone()).or_default();
            *n = (*n).max(last);
        }
        for r in records {
            runs.push(run_id.as_str());
            seqs.push(i64::try_from(r.seq).map_err(backend)?);
            kinds.push(r.entry.kind());
            ats.push(r.at_ms as i64);
            bodies.push(serde_json::to_string(&r.entry).map_err(backend)?);
        }
        answers.push(Ok(()));
    }
    let inserted: std::collections::HashSet<(String, i64)> = c
        .query(
            "INSERT INTO reactor_journal (run_id, seq, kind, at_ms, body)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])
             ON CONFLICT DO NOTHING RETURNING run_id, seq",
            &[&runs, &seqs, &kinds, &ats, &bodies],
        )
        .await
        .map_err(backend)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Each run's new status: that of its last record stored now (a
    // retried append does not move it).
    let mut status: std::collections::HashMap<&'a str, RunStatus> = Default::default();
    for ((run_id, _, records, _), answer) in appends.iter().zip(&answers) {
        if answer.is_err() {
            continue;
        }
        for r in records {
            if let (Some(st), true) = (
                r.entry.status(),
                inserted.contains(&(run_id.clone(), r.seq as i64)),
            ) {
                status.insert(run_id, st);
            }
        }
    }
    let (mut u_ids, mut u_status, mut u_epochs) = (Vec::new(), Vec::new(), Vec::new());
    let accepted: std::collections::HashSet<&str> = appends
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_ok())
        .map(|((id, ..), _)| id.as_str())
        .collect();
    for (id, owner) in owners
        .iter()
        .filter(|(id, _)| accepted.contains(id.as_str()))
    {
        u_ids.push(id.as_str());
        u_status.push(status.get(id.as_str()).map(|s| s.as_str()));
        u_epochs.push(i32::try_from(*owner).unwrap_or(i32::MAX));
    }
    // A driver whose write was accepted holds its run: its lease is
    // renewed with it.
    c.execute(
        "UPDATE reactor_runs AS r
         SET updated_ms = $1, status = COALESCE(u.status, r.status), epoch = u.epoch,
             owner = $5, lease_until = now() + $6 * interval '1 millisecond'
         FROM unnest($2::TEXT[], $3::TEXT[], $4::INT[]) AS u(id, status, epoch)
         WHERE r.id = u.id",
        &[
            &(now_ms() as i64),
            &u_ids,
            &u_status,
            &u_epochs,
            &conn.worker,
            &(conn.lease_ms as f64),
        ],
    )
    .await
    .map_err(backend)?;
    let written = accepted
        .into_iter()
        .filter_map(|id| {
            let now = status.get(id).or_else(|| before.get(id)).copied()?;
            Some(Written {
                run: id,
                status: now,
                resumed: claimed.contains(&id),
            })
        })
        .collect();
    Ok((answers, written))
}

/// The run holding idempotency key `key`, if any.
async fn keyed(
    c: &impl GenericClient,
    key: &Option<String>,
) -> Result<Option<Created>, StoreError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let row = c
        .query_opt(
            "SELECT id FROM reactor_runs WHERE idempotency_key = $1",
            &[key],
        )
        .await
        .map_err(backend)?;
    Ok(row.map(|r| Created::Existing(r.get(0))))
}

async fn create(c: &impl GenericClient, conn: &Conn, run: &NewRun) -> Result<Created, StoreError> {
    if let Some(existing) = keyed(c, &run.idempotency_key).await? {
        return Ok(existing);
    }
    let now = now_ms() as i64;
    let status = run.first.entry.status().unwrap_or(RunStatus::Running);
    // Held by this worker, unless queued for any to claim.
    let owner = (!run.queued).then_some(conn.worker.as_str());
    let inserted = c
        .execute(
            "INSERT INTO reactor_runs
                 (id, reactor, status, idempotency_key, created_ms, updated_ms, owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $5, $6,
                     CASE WHEN $6::TEXT IS NULL THEN NULL
                          ELSE now() + $7 * interval '1 millisecond' END)
             ON CONFLICT DO NOTHING",
            &[
                &run.id,
                &run.reactor,
                &status.as_str(),
                &run.idempotency_key,
                &now,
                &owner,
                &(conn.lease_ms as f64),
            ],
        )
        .await
        .map_err(|e| StoreError::Backend(format!("cannot store run `{}`: {e}", run.id)))?;
    if inserted == 0 {
        // Taken meanwhile: by a run of the same key, or of the same id.
        if let Some(existing) = keyed(c, &run.idempotency_key).await? {
            return Ok(existing);
        }
        return Err(StoreError::RunExists(run.id.clone()));
    }
    insert_records(c, &run.id, std::slice::from_ref(&run.first)).await?;
    Ok(Created::New)
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
impl Leases for PgStore {
    fn worker(&self) -> &str {
        &self.conn.worker
    }

    async fn claim(
        &self,
        n: usize,
        reactors: &[String],
        skip: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let (worker, lease) = (self.conn.worker.clone(), self.conn.lease_ms as f64);
        let (reactors, skip) = (reactors.to_vec(), skip.to_vec());
        let claimed = self
            .read(move |c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "UPDATE reactor_runs SET owner = $1,
                             lease_until = now() + $3 * interval '1 millisecond'
                         WHERE id IN (
                             SELECT id FROM reactor_runs
                             WHERE status IN ('running', 'unwinding') AND strpos(id, '/') = 0
                               AND coalesce(lease_until, '-infinity'::timestamptz) < now()
                               AND reactor = ANY($4) AND NOT id = ANY($5)
                             ORDER BY coalesce(lease_until, '-infinity'::timestamptz), created_ms
                             LIMIT $2
                             FOR UPDATE SKIP LOCKED)
                         RETURNING id, created_ms",
                            &[&worker, &n, &lease, &reactors, &skip],
                        )
                        .await
                        .map_err(backend)?;
                    let mut claimed: Vec<(i64, String)> =
                        rows.iter().map(|r| (r.get(1), r.get(0))).collect();
                    claimed.sort();
                    Ok(claimed.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
                })
            })
            .await?;
        self.conn.held.take(claimed.iter().map(String::as_str));
        Ok(claimed)
    }

    async fn release(&self, runs: &[String]) -> Result<(), StoreError> {
        // Not renewed from now on, even if the hand-back fails: its lease
        // runs out instead. Runs whose end this store committed need no
        // statement.
        let runs = self.conn.held.let_go(runs.iter().map(String::as_str));
        if runs.is_empty() {
            return Ok(());
        }
        let worker = self.conn.worker.clone();
        self.read(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE reactor_runs SET owner = NULL, lease_until = NULL
                     WHERE id = ANY($1) AND owner = $2",
                    &[&runs, &worker],
                )
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}

#[async_trait]
impl Store for PgStore {
    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }

    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        ask(|tx| self.send(Write::Create(run, tx))).await
    }

    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        let records = records.to_vec();
        ask(|tx| self.send(Write::Append(run_id.to_string(), epoch, records, tx))).await
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
                // Joined on the top-level id: each run finds its top-level
                // run by its key.
                let purged = "SELECT r.id FROM reactor_runs r JOIN reactor_runs p
                     ON p.id = split_part(r.id, '/', 1)
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
