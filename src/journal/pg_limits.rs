//! [`SharedLimits`] in PostgreSQL: the counts shared pools, keyed limits
//! and rate limits hold across workers.
//!
//! - `reactor_limits(name, key, worker, held, wanted, lease_until)`: one
//!   row per worker holding or wanting slots of a limit's key (a pool's
//!   key is empty). A claim is one call of the function `reactor_claim`
//!   (one round trip), which locks the key (an advisory transaction lock
//!   on its hash), reads the live rows (those whose lease has not
//!   expired: a dead worker's slots come back with its lease), grants
//!   what the limit leaves, and writes the worker's row (deleted when it
//!   holds and wants nothing). The store's lease renewal renews the rows
//!   of its worker with its runs, in the same statement.
//! - `reactor_buckets(name, tokens, updated)`: one token bucket per rate
//!   limit, refilled and spent in one statement, by the clock when its
//!   row is locked (never backwards: a take that waited for the lock
//!   behind a later one refills nothing).
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
         );
         CREATE OR REPLACE FUNCTION \"{s}\".reactor_claim(
             p_name TEXT, p_key TEXT, p_worker TEXT, p_limit INTEGER, p_held INTEGER,
             p_want INTEGER, p_lease_ms DOUBLE PRECISION, OUT granted INTEGER, OUT share INTEGER)
         LANGUAGE plpgsql AS $$
         DECLARE
             others BIGINT;
             active BIGINT;
         BEGIN
             PERFORM pg_advisory_xact_lock(hashtext(p_name), hashtext(p_key));
             SELECT coalesce(sum(held), 0), count(*) FILTER (WHERE held > 0 OR wanted > 0)
               INTO others, active
               FROM \"{s}\".reactor_limits
              WHERE name = p_name AND key = p_key AND worker <> p_worker AND lease_until > now();
             granted := greatest(0, least(p_want::BIGINT, p_limit - others - p_held::BIGINT));
             IF p_held::BIGINT + p_want > 0 THEN
                 active := active + 1;
                 INSERT INTO \"{s}\".reactor_limits AS l (name, key, worker, held, wanted, lease_until)
                 VALUES (p_name, p_key, p_worker, least(p_held::BIGINT + granted, 2147483647),
                         p_want - granted,
                         now() + p_lease_ms * interval '1 millisecond')
                 ON CONFLICT (name, key, worker) DO UPDATE
                 SET held = EXCLUDED.held, wanted = EXCLUDED.wanted, lease_until = EXCLUDED.lease_until;
             ELSE
                 DELETE FROM \"{s}\".reactor_limits
                  WHERE name = p_name AND key = p_key AND worker = p_worker;
             END IF;
             share := (p_limit + greatest(active, 1) - 1) / greatest(active, 1);
         END $$;"
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
                let row = c
                    .query_one(
                        "SELECT granted, share FROM reactor_claim($1, $2, $3, $4, $5, $6, $7)",
                        &[
                            &name,
                            &key,
                            &worker,
                            &(limit.min(i32::MAX as u32) as i32),
                            &(held.min(i32::MAX as u32) as i32),
                            &(want.min(i32::MAX as u32) as i32),
                            &lease_ms,
                        ],
                    )
                    .await?;
                let (granted, share): (i32, i32) = (row.get(0), row.get(1));
                Ok(Claimed {
                    granted: granted.max(0) as u32,
                    share: share.max(0) as u32,
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
                             SELECT least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - updated))::float8 * $3) AS t,
                                    greatest(updated, clock_timestamp()) AS at
                             FROM reactor_buckets WHERE name = $1 FOR UPDATE
                         )
                         UPDATE reactor_buckets b
                         SET tokens = cur.t - greatest(0, least($4, floor(cur.t))), updated = cur.at
                         FROM cur WHERE b.name = $1
                         RETURNING greatest(0, least($4, floor(cur.t)))::int4",
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
