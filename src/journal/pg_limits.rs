//! [`SharedLimits`] in PostgreSQL: the counts shared pools, keyed limits
//! and rate limits hold across workers.
//!
//! - `reactor_limits(name, key, worker, held, wanted, lease_until)`: one
//!   row per worker holding or wanting slots of a limit's key (a pool's
//!   key is empty). A claim locks the key (an advisory transaction lock
//!   on its hash), reads the live rows (those whose lease has not
//!   expired: a dead worker's slots come back with its lease), grants
//!   what the limit leaves, and writes the worker's row (deleted when it
//!   holds and wants nothing). The store's lease renewal renews the rows
//!   of its worker with its runs, in the same statement.
//! - `reactor_buckets(name, tokens, updated)`: one token bucket per rate
//!   limit, refilled and spent in one statement.
//!
//! Claims go through a connection of their own, one at a time.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::postgres::Conn;
use crate::error::BoxError;
use crate::limit::{Claimed, SharedLimits};

/// The tables [`PgLimits`] uses, created with the store's.
pub(super) fn schema(s: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{s}\".reactor_limits (
             name TEXT NOT NULL,
             key TEXT NOT NULL,
             worker TEXT NOT NULL,
             held INTEGER NOT NULL,
             wanted INTEGER NOT NULL,
             lease_until TIMESTAMPTZ NOT NULL,
             PRIMARY KEY (name, key, worker)
         );
         CREATE INDEX IF NOT EXISTS reactor_limits_by_worker ON \"{s}\".reactor_limits(worker);
         CREATE TABLE IF NOT EXISTS \"{s}\".reactor_buckets (
             name TEXT PRIMARY KEY,
             tokens DOUBLE PRECISION NOT NULL,
             updated TIMESTAMPTZ NOT NULL
         );"
    )
}

/// The shared limits of a [`PgStore`](super::PgStore)'s workers.
pub(super) struct PgLimits {
    pub(super) conn: Arc<Conn>,
    pub(super) client: Mutex<Option<Client>>,
}

impl PgLimits {
    /// Runs `f` in a transaction on the limits' connection, opening it
    /// again if it failed.
    async fn with_client<T>(
        &self,
        f: impl for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    ) -> Result<T, BoxError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = Some(self.conn.open().await?);
        }
        let c = client.as_mut().expect("opened above");
        let out = f(c).await;
        if c.is_closed() {
            *client = None;
        }
        out.map_err(|e| Box::new(super::postgres::backend(e)) as BoxError)
    }
}

#[async_trait]
impl SharedLimits for PgLimits {
    async fn claim(
        &self,
        name: &str,
        key: &str,
        limit: u32,
        held: u32,
        want: u32,
    ) -> Result<Claimed, BoxError> {
        let worker = self.conn.worker.clone();
        let lease_ms = self.conn.lease_ms as f64;
        let (name, key) = (name.to_string(), key.to_string());
        self.with_client(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                    &[&name, &key],
                )
                .await?;
                let rows = tx
                    .query(
                        "SELECT worker, held, wanted FROM reactor_limits
                         WHERE name = $1 AND key = $2 AND lease_until > now()",
                        &[&name, &key],
                    )
                    .await?;
                let mut others_held: i64 = 0;
                let mut active: i64 = 0;
                for row in &rows {
                    let (w, h, wa): (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
                    if w != worker {
                        others_held += i64::from(h);
                        if h > 0 || wa > 0 {
                            active += 1;
                        }
                    }
                }
                let free = (i64::from(limit) - others_held - i64::from(held)).max(0);
                let granted = free.min(i64::from(want)) as i32;
                let now_held = i64::from(held) + i64::from(granted);
                let wanted = i64::from(want) - i64::from(granted);
                if now_held + wanted > 0 {
                    active += 1;
                    tx.execute(
                        "INSERT INTO reactor_limits (name, key, worker, held, wanted, lease_until)
                         VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
                         ON CONFLICT (name, key, worker) DO UPDATE
                         SET held = $4, wanted = $5, lease_until = now() + $6 * interval '1 millisecond'",
                        &[&name, &key, &worker, &(now_held as i32), &(wanted as i32), &lease_ms],
                    )
                    .await?;
                } else {
                    tx.execute(
                        "DELETE FROM reactor_limits WHERE name = $1 AND key = $2 AND worker = $3",
                        &[&name, &key, &worker],
                    )
                    .await?;
                }
                tx.commit().await?;
                let share = (i64::from(limit) + active.max(1) - 1) / active.max(1);
                Ok(Claimed {
                    granted: granted as u32,
                    share: share as u32,
                })
            })
        })
        .await
    }

    async fn take_tokens(
        &self,
        name: &str,
        burst: u32,
        per_second: f64,
        want: u32,
    ) -> Result<u32, BoxError> {
        let name = name.to_string();
        self.with_client(move |c| {
            Box::pin(async move {
                let (burst, want) = (f64::from(burst), f64::from(want));
                c.execute(
                    "INSERT INTO reactor_buckets (name, tokens, updated) VALUES ($1, $2, now())
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &burst],
                )
                .await?;
                let row = c
                    .query_one(
                        "WITH cur AS (
                             SELECT least($2, tokens + extract(epoch FROM now() - updated)::float8 * $3) AS t
                             FROM reactor_buckets WHERE name = $1 FOR UPDATE
                         )
                         UPDATE reactor_buckets b
                         SET tokens = cur.t - least($4, floor(cur.t)), updated = now()
                         FROM cur WHERE b.name = $1
                         RETURNING least($4, floor(cur.t))::int4",
                        &[&name, &burst, &per_second, &want],
                    )
                    .await?;
                let taken: i32 = row.get(0);
                Ok(taken.max(0) as u32)
            })
        })
        .await
    }
}
