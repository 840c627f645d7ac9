//! Rate limits: a token bucket holding at most `burst` tokens, refilled
//! at `per_second`; a start spends one. Local buckets live in this
//! process; shared ones in the store, from which a worker takes a block
//! of tokens at a time and spends them within [`FRESH`] or not at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::SharedLimits;

/// How long tokens taken from a shared bucket stay usable here.
const FRESH: Duration = Duration::from_millis(100);

pub(super) struct Rate {
    pub(super) burst: u32,
    pub(super) per_second: f64,
    bucket: Mutex<Bucket>,
    shared: Option<Arc<dyn SharedLimits>>,
    /// Serializes this process's takes from the store.
    taking: tokio::sync::Mutex<()>,
}

/// Local tokens: the bucket itself, or a block taken from the store.
struct Bucket {
    tokens: f64,
    /// When `tokens` was last refilled (local) or taken (shared).
    at: Instant,
}

impl Rate {
    pub(super) fn new(burst: u32, per_second: f64) -> Rate {
        Rate::with(burst, per_second, None)
    }

    fn with(burst: u32, per_second: f64, shared: Option<Arc<dyn SharedLimits>>) -> Rate {
        Rate {
            burst,
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: if shared.is_some() {
                    0.0
                } else {
                    f64::from(burst)
                },
                at: Instant::now(),
            }),
            shared,
            taking: tokio::sync::Mutex::new(()),
        }
    }

    /// The same limit, its bucket in `shared`.
    pub(super) fn shared(&self, shared: Arc<dyn SharedLimits>) -> Rate {
        Rate::with(self.burst, self.per_second, Some(shared))
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spends a local token if there is one; else how long until one.
    fn spend_local(&self) -> Result<(), Duration> {
        let mut b = self.bucket();
        let now = Instant::now();
        let refilled = now.duration_since(b.at).as_secs_f64() * self.per_second;
        b.tokens = (b.tokens + refilled).min(f64::from(self.burst));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - b.tokens) / self.per_second;
        Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)))
    }

    /// Spends a token of a block taken from the store, if one is fresh.
    fn spend_taken(&self) -> bool {
        let mut b = self.bucket();
        if b.tokens >= 1.0 && b.at.elapsed() < FRESH {
            b.tokens -= 1.0;
            return true;
        }
        false
    }

    /// Waits for a token and spends it.
    pub(super) async fn acquire(&self, name: &str) {
        let Some(shared) = &self.shared else {
            loop {
                match self.spend_local() {
                    Ok(()) => return,
                    Err(wait) => tokio::time::sleep(wait).await,
                }
            }
        };
        let block = (self.burst / 10).max(1);
        // The bucket refills a token in 1/per_second: ask again then.
        let refill = Duration::try_from_secs_f64(1.0 / self.per_second)
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        loop {
            if self.spend_taken() {
                return;
            }
            {
                let _taking = self.taking.lock().await;
                if self.spend_taken() {
                    return;
                }
                match shared
                    .take_tokens(name, self.burst, self.per_second, block)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        let mut b = self.bucket();
                        b.tokens = f64::from(n) - 1.0;
                        b.at = Instant::now();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(limit = name, error = %e, "taking shared tokens failed: trying again");
                    }
                }
            }
            tokio::time::sleep(refill).await;
        }
    }
}
