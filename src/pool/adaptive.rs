//! [`Concurrency`], how many steps a run may have in flight, and the
//! adaptive limit behind [`Concurrency::Auto`]: a gradient limiter (after
//! Netflix's `concurrency-limits` Gradient2 and TCP Vegas) that raises the
//! number of awaiting steps in flight while their latency holds, and
//! lowers it as their latency grows.
//!
//! Each completed awaiting step gives a latency sample. The limiter keeps
//! a baseline, what the service answers in when it is not loaded: the
//! mean of the first 10 samples, then following faster samples an eighth
//! of the way each (so one fast answer does not pin it) and drifts up slowly towards slower ones (so that a
//! service that became slower for good is followed, over thousands of
//! samples), and compares each sample with it:
//!
//! ```text
//! gradient = clamp(TOLERANCE × baseline / sample, 0.5, 1.0)
//! target   = limit × gradient + √limit          (the √ term probes upward)
//! limit   += (target − limit) / limit,  within [MIN, MAX]
//! ```
//!
//! A sample moves the limit 1/limit of the way, so that a whole update is
//! made once per round trip (a limit's worth of completions), as TCP
//! Vegas does, however bursty the completions. While samples stay within
//! `TOLERANCE` (1.5×) of the baseline the gradient is 1 and the limit
//! grows by about √limit a round trip; once latency rises past it, the
//! gradient falls below 1 and the limit shrinks in proportion (at most by
//! half a round trip): against a service whose latency grows with its
//! load, the limit settles where the latency is about 1.8× the baseline.

/// How many steps a run may have running at once.
///
/// # Examples
///
/// ```
/// use reactor::Concurrency;
///
/// let fixed: Concurrency = 8.into();
/// assert_eq!(fixed, Concurrency::Limit(8));
/// let auto = Concurrency::Auto;
/// # let _ = auto;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Concurrency {
    /// At most this many (as [`RunRequest::max_concurrency`](crate::RunRequest::max_concurrency)).
    Limit(usize),
    /// CPU work held to the cores; awaiting steps held to a limit that
    /// adapts to their latency, starting at 10. A gradient limiter (after
    /// Netflix's `concurrency-limits` and TCP Vegas): each completion
    /// compares its latency with the lowest seen; within 1.5× of it the
    /// limit grows by about √limit a round trip, past it the limit shrinks
    /// in proportion (at most by half a round trip). Against a service
    /// that slows with its load it settles where latency is about 1.8× the
    /// unloaded one. Its value is reported by
    /// [`EventKind::ConcurrencyLimit`](crate::EventKind::ConcurrencyLimit)
    /// events whenever it changes.
    Auto,
}

impl From<usize> for Concurrency {
    fn from(n: usize) -> Concurrency {
        Concurrency::Limit(n)
    }
}

/// Samples within this factor of the baseline latency count as unloaded.
const TOLERANCE: f64 = 1.5;
/// The limit's bounds, and where it starts.
pub(crate) const MIN: f64 = 1.0;
pub(crate) const MAX: f64 = 10_000.0;
const INITIAL: f64 = 10.0;
/// How slowly the baseline drifts up towards the samples (a sample moves
/// it 1/`DRIFT` of the way).
const DRIFT: f64 = 5_000.0;
/// How many first samples the baseline starts as the mean of.
const WARM_UP: u32 = 10;

/// The adaptive limit of one run's awaiting steps.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    limit: f64,
    /// The baseline latency, in seconds (0 before the first sample).
    base: f64,
    samples: u32,
}

impl Default for AdaptiveLimit {
    fn default() -> AdaptiveLimit {
        AdaptiveLimit {
            limit: INITIAL,
            base: 0.0,
            samples: 0,
        }
    }
}

impl AdaptiveLimit {
    /// How many awaiting steps may be in flight now.
    pub(crate) fn current(&self) -> usize {
        self.limit as usize
    }

    /// Takes one step's latency (in seconds); returns the new limit if its
    /// whole part changed.
    pub(crate) fn sample(&mut self, latency: f64) -> Option<usize> {
        if !latency.is_finite() || latency <= 0.0 {
            return None;
        }
        let before = self.current();
        self.samples = self.samples.saturating_add(1);
        if self.samples <= WARM_UP {
            // The first samples' mean: one odd first answer is diluted.
            self.base += (latency - self.base) / f64::from(self.samples);
        } else if latency < self.base {
            // Down an eighth of the way: a service that became faster is
            // followed within tens of samples, while one fast answer (a
            // cache hit, a quick error) does not pin the baseline.
            self.base -= (self.base - latency) / 8.0;
        } else {
            self.base += (latency - self.base) / DRIFT;
        }
        let gradient = (TOLERANCE * self.base / latency).clamp(0.5, 1.0);
        let target = self.limit * gradient + self.limit.sqrt();
        self.limit = (self.limit + (target - self.limit) / self.limit).clamp(MIN, MAX);
        let after = self.current();
        (after != before).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the limiter against a service answering in `latency(in_flight)`
    /// seconds, with as many in flight as the limit allows, for `n`
    /// completions; returns the limits seen.
    fn against(latency: impl Fn(usize) -> f64, n: usize) -> Vec<usize> {
        let mut limit = AdaptiveLimit::default();
        (0..n)
            .map(|_| {
                limit.sample(latency(limit.current()));
                limit.current()
            })
            .collect()
    }

    #[test]
    fn rises_while_latency_holds() {
        let seen = against(|_| 0.001, 2_000);
        assert!(seen.windows(2).all(|w| w[1] >= w[0]), "only rises");
        assert!(*seen.last().unwrap() > 150, "{}", seen.last().unwrap());
    }

    #[test]
    fn settles_where_latency_starts_to_grow() {
        // 1 ms up to 32 in flight, then growing with the square.
        let service = |n: usize| 0.001 * (n as f64 / 32.0).max(1.0).powi(2);
        let seen = against(service, 3_000);
        let tail = &seen[2_000..];
        let (lo, hi) = (tail.iter().min().unwrap(), tail.iter().max().unwrap());
        assert!(*lo >= 24 && *hi <= 64, "settled between {lo} and {hi}");
    }

    #[test]
    fn falls_when_the_service_slows_down() {
        let mut limit = AdaptiveLimit::default();
        for _ in 0..400 {
            limit.sample(0.001);
        }
        let high = limit.current();
        for _ in 0..200 {
            limit.sample(0.010);
        }
        assert!(
            limit.current() < high / 2,
            "{} from {high}",
            limit.current()
        );
    }

    #[test]
    fn one_fast_answer_does_not_pin_the_limit() {
        let mut limit = AdaptiveLimit::default();
        limit.sample(0.000_1);
        for _ in 0..300 {
            limit.sample(0.020);
        }
        assert!(limit.current() > 20, "{}", limit.current());
    }

    #[test]
    fn odd_samples_change_nothing_and_the_limit_stays_in_bounds() {
        let mut limit = AdaptiveLimit::default();
        for odd in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(limit.sample(odd), None);
        }
        assert_eq!(limit.current(), INITIAL as usize);
        for _ in 0..100 {
            limit.sample(1e300);
            limit.sample(1e-300);
        }
        assert!((MIN as usize..=MAX as usize).contains(&limit.current()));
    }
}
