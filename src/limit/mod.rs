//! Limits on when a step may start, beside the run's concurrency: at most
//! `n` running at once per key ([`Limit::per_key`], the key computed from
//! the step's arguments, for example at most 2 charges per customer) and
//! at most `n` starts per period ([`Limit::rate`], a token bucket). Each is
//! local to the process, or shared by every worker of a cluster through a
//! store's [`SharedLimits`] ([`Limit::shared`]).
//!
//! A step given limits ([`StepSpec::limit`](crate::StepSpec::limit)) runs
//! wrapped in `Limited`: its attempt takes a permit of each limit, in the
//! order of their names (the same for every step, so limits cannot
//! deadlock), before calling the step's `run`, and
//! holds them until `run` returns. The wrapper is the step every place an
//! attempt runs calls (its own task, the coordinator, a sync run, a map
//! element, a nested run), so the limits hold wherever the step runs; a
//! limited step is never run inline as a plain closure. Guards are
//! evaluated first (a skipped step takes no permit); compensation and undo
//! take none. Waiting for a permit is part of the attempt (a step timeout
//! counts it).
//!
//! Shared limits cost a database round trip per permit of a keyed limit
//! (keys are many; each is counted in the store) and one per `block`
//! tokens of a rate limit; a worker's holdings are leased as its runs are
//! and expire with its lease if it dies.

mod keyed;
mod rate;
pub(crate) mod step;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::argument::Arguments;
use crate::error::{BoxError, Error};

/// Counts shared by the workers of a cluster, kept in their store
/// ([`PgStore::shared_limits`](crate::journal::PgStore::shared_limits)):
/// slots held per name and key, and token buckets. A worker's holdings
/// last while its lease is renewed.
#[async_trait]
pub trait SharedLimits: Send + Sync + 'static {
    /// This worker, now holding `held` slots of `name`/`key` (at most
    /// `limit` across all workers), asks for `want` more: records its
    /// holding (`held` plus those granted) and what it still wants, and
    /// answers how many it was granted and its fair share (the limit
    /// divided among the workers holding or wanting slots, rounded up).
    async fn claim(
        &self,
        name: &str,
        key: &str,
        limit: u32,
        held: u32,
        want: u32,
    ) -> Result<Claimed, BoxError>;

    /// Takes up to `want` tokens from the bucket `name`, which holds at
    /// most `burst` and refills `per_second`; how many it took.
    async fn take_tokens(
        &self,
        name: &str,
        burst: u32,
        per_second: f64,
        want: u32,
    ) -> Result<u32, BoxError>;
}

/// What [`SharedLimits::claim`] answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Slots granted now.
    pub granted: u32,
    /// This worker's fair share of the limit.
    pub share: u32,
}

/// A function computing a keyed limit's key from a step's arguments.
type KeyFn = Arc<dyn Fn(&Arguments) -> Result<String, BoxError> + Send + Sync>;

/// A limit on when a step may start; cheap to clone (clones share their
/// counts), and one limit may be given to many steps.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reactor::{input, step, Inputs, Limit, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let per_customer = Limit::per_key("charges_per_customer", 2, |args| {
///     Ok(args.get::<String>("customer")?.clone())
/// });
/// let charges = Limit::rate("charges", 100, Duration::from_secs(1));
/// let charge = step("charge")
///     .argument("customer", input("customer"))
///     .limit(per_customer)
///     .limit(charges)
///     .run(|args, _| async move { Ok(format!("charged {}", args.get::<String>("customer")?)) });
/// let reactor = Reactor::builder("pay").input("customer").add(charge).returns("charge").build()?;
/// let out = reactor.run(Inputs::new().with("customer", "ada".to_string())).await?;
/// assert_eq!(*out.get::<String>()?, "charged ada");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Limit(Arc<Inner>);

struct Inner {
    name: String,
    kind: Kind,
}

enum Kind {
    Keyed(keyed::Keyed),
    Rate(rate::Rate),
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0.kind {
            Kind::Keyed(k) => format!("at most {} per key", k.per_key),
            Kind::Rate(r) => format!("{} a second", r.per_second),
        };
        f.debug_struct("Limit")
            .field("name", &self.0.name)
            .field("kind", &kind)
            .finish()
    }
}

/// Held while a limited step runs; gives its keyed permit back when
/// dropped (a rate limit's token is spent, not given back).
pub(crate) struct LimitPermit {
    _keyed: Option<keyed::KeyedPermit>,
}

impl Limit {
    /// At most `per_key` steps running at once with each key `key`
    /// computes from their arguments (`per_key` at least 1). A key the
    /// function cannot compute (an error, a panic) fails the attempt.
    pub fn per_key<F>(name: impl Into<String>, per_key: u32, key: F) -> Limit
    where
        F: Fn(&Arguments) -> Result<String, BoxError> + Send + Sync + 'static,
    {
        Limit(Arc::new(Inner {
            name: name.into(),
            kind: Kind::Keyed(keyed::Keyed::new(per_key.max(1), Arc::new(key))),
        }))
    }

    /// At most `n` starts per `per`, with bursts of up to `n` (a token
    /// bucket holding `n`, refilled evenly). `n` is at least 1; `per` at
    /// least 1 µs and saturating at a year.
    pub fn rate(name: impl Into<String>, n: u32, per: Duration) -> Limit {
        let per = per.clamp(
            Duration::from_micros(1),
            Duration::from_secs(365 * 24 * 3600),
        );
        let n = n.max(1);
        Limit(Arc::new(Inner {
            name: name.into(),
            kind: Kind::Rate(rate::Rate::new(n, f64::from(n) / per.as_secs_f64())),
        }))
    }

    /// The same limit held across every worker sharing `store`'s counts
    /// (named by this limit's name: workers give their limits the same
    /// name and numbers); it counts apart from `self`'s local counts. A
    /// rate limit takes its tokens a tenth of its burst at a time (at
    /// least 1), using each within a tenth of a second of taking it or
    /// not at all, so that a period sees at most `n` plus a tenth of `n`
    /// per worker.
    pub fn shared(&self, store: Arc<dyn SharedLimits>) -> Limit {
        let kind = match &self.0.kind {
            Kind::Keyed(k) => Kind::Keyed(k.shared(store)),
            Kind::Rate(r) => Kind::Rate(r.shared(store)),
        };
        Limit(Arc::new(Inner {
            name: self.0.name.clone(),
            kind,
        }))
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Which limit this is (clones share it): orders limits of one name.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Waits for a permit of this limit for a step with `args`.
    pub(crate) async fn acquire(&self, args: &Arguments) -> Result<LimitPermit, Error> {
        let failed = |e: BoxError| Error::InvalidOption {
            option: "limit",
            message: format!("limit `{}`: {e}", self.0.name),
        };
        match &self.0.kind {
            Kind::Keyed(k) => {
                let key = (k.key)(args).map_err(failed)?;
                Ok(LimitPermit {
                    _keyed: Some(k.acquire(&self.0.name, key).await),
                })
            }
            Kind::Rate(r) => {
                r.acquire(&self.0.name).await;
                Ok(LimitPermit { _keyed: None })
            }
        }
    }

    /// The steps running now with `key` in this process (keyed limits;
    /// 0 for rate limits).
    pub fn running(&self, key: &str) -> u32 {
        match &self.0.kind {
            Kind::Keyed(k) => k.running(key),
            Kind::Rate(_) => 0,
        }
    }
}

/// How long a shared limit waits before asking the store again, after it
/// was refused `tries` times in a row: 5 ms doubling to 250 ms.
pub(crate) fn retry_after(tries: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << tries.min(6)).min(250))
}
