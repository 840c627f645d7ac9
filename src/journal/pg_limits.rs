//! [`SharedLimits`] in PostgreSQL: the counts shared pools, keyed limits
//! and rate limits hold across workers.
//!
//! - `reactor_limits(name, key, worker, held, wanted, lease_until)`: one
//!   row per worker holding or wanting slots of a limit's key (a pool's
//!   key is empty). A claim is one call of the function `reactor_claim`
//!   (one round trip), which locks the key (an advisory transaction lock
//!   on its hash), reads the live rows (those whose lease has not
//!   expired: a dead worker's slots come back with its lease), grants
//!   what the limit leaves (no more than the worker's fair share while
//!   another worker waits), and writes the worker's row (deleted when it
//!   holds and wants nothing). The store's lease renewal renews the rows
//!   of its worker with its runs, in the same statement, forgetting what
//!   it wants (its waiters state it again with their next claims).
//! - `reactor_buckets(name, tokens, updated)`: one token bucket per rate
//!   limit, refilled and spent in one statement, by the clock when its
//!   row is locked (never backwards: a take that waited for the lock
//!   behind a later one refills nothing).
//!
//! Claims go through a connection of their own, one at a time.

use std::sync::Arc;

use super::postgres::{backend, Conn, Session};
use crate::error::BoxError;
use crate::limit::{Claimed, SharedLimits};
use async_trait::async_trait;

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
             wanting BIGINT;
         BEGIN
             PERFORM pg_advisory_xact_lock(hashtext(p_name), hashtext(p_key));
             SELECT coalesce(sum(held), 0), count(*) FILTER (WHERE held > 0 OR wanted > 0),
                    count(*) FILTER (WHERE wanted > 0)
               INTO others, active, wanting
               FROM \"{s}\".reactor_limits
              WHERE name = p_name AND key = p_key AND worker <> p_worker AND lease_until > now();
             IF p_held::BIGINT + p_want > 0 THEN
                 active := active + 1;
             END IF;
             share := (p_limit + greatest(active, 1) - 1) / greatest(active, 1);
             granted := greatest(0, least(p_want::BIGINT, p_limit - others - p_held::BIGINT));
             -- While others wait, no worker grows past its share.
             IF wanting > 0 THEN
                 granted := greatest(0, least(granted, share - p_held::BIGINT));
             END IF;
             IF p_held::BIGINT + p_want > 0 THEN
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
         END $$;"
    )
}

/// The shared limits of a [`PgStore`](super::PgStore)'s workers, on a
/// connection of their own.
pub(super) struct PgLimits {
    pub(super) conn: Arc<Conn>,
    pub(super) session: Session,
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
        self.session
            .run(move |c| {
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
                        .await
                        .map_err(backend)?;
                    let (granted, share): (i32, i32) = (row.get(0), row.get(1));
                    Ok(Claimed {
                        granted: granted.max(0) as u32,
                        share: share.max(0) as u32,
                    })
                })
            })
            .await
            .map_err(|e| Box::new(e) as BoxError)
    }

    async fn take_tokens(
        &self,
        name: &str,
        burst: u32,
        per_second: f64,
        want: u32,
    ) -> Result<u32, BoxError> {
        let name = name.to_string();
        self.session
            .run(move |c| {
            Box::pin(async move {
                let (burst, want) = (f64::from(burst), f64::from(want));
                c.execute(
                    "INSERT INTO reactor_buckets (name, tokens, updated) VALUES ($1, $2, now())
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &burst],
                )
                .await
                .map_err(backend)?;
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
                    .await
                    .map_err(backend)?;
                let taken: i32 = row.get(0);
                Ok(taken.max(0) as u32)
            })
        })
        .await
        .map_err(|e| Box::new(e) as BoxError)
    }
}
