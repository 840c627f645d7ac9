//! What several of the guide's examples share: a gauge of steps in flight
//! (to show a concurrency limit holding), a reactor of simulated calls and
//! the step summing them, the machine's core count, a check that turns a
//! wrong result into the demo's error, and the small generators behind
//! simulated failures and jitter.

// Each example uses some of these, not all.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reactor::{input, result, step, BoxError, Reactor, StepSpec};

/// How many steps are in flight now, and the most there were at once.
#[derive(Clone, Default)]
pub struct InFlight(Arc<(AtomicUsize, AtomicUsize)>);

/// One step in flight, until dropped.
pub struct Flying(InFlight);

impl InFlight {
    /// Counts a step in flight until the returned guard drops.
    pub fn enter(&self) -> Flying {
        let now = self.0 .0.fetch_add(1, Ordering::SeqCst) + 1;
        self.0 .1.fetch_max(now, Ordering::SeqCst);
        Flying(self.clone())
    }

    /// The most steps in flight at once so far.
    pub fn peak(&self) -> usize {
        self.0 .1.load(Ordering::SeqCst)
    }

    /// Forgets the peak.
    pub fn reset(&self) {
        self.0 .1.store(0, Ordering::SeqCst);
    }
}

impl Drop for Flying {
    fn drop(&mut self) {
        self.0 .0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Step `call_{i}`: awaits the input `call_ms` (a simulated call),
/// counted by `gauge`, and returns `i`.
pub fn simulated_call(i: usize, gauge: &InFlight) -> StepSpec {
    let gauge = gauge.clone();
    step(format!("call_{i}"))
        .argument("ms", input("call_ms"))
        .run(move |args, _| {
            let gauge = gauge.clone();
            async move {
                let ms = *args.get::<u64>("ms")?;
                let _flying = gauge.enter();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(i as u64)
            }
        })
}

/// `name`: `calls` steps `call_0`, `call_1`, ... each awaiting the input
/// `call_ms` (a `u64`, in milliseconds) as a simulated call, counted in
/// flight by `gauge`, and each returning its index; then `join` returns
/// their sum (`(0..calls).sum()`).
pub fn simulated_calls(
    name: &str,
    description: &str,
    calls: usize,
    gauge: &InFlight,
) -> Result<Reactor, reactor::Error> {
    let mut builder = Reactor::builder(name);
    builder.description(description).input("call_ms");
    for i in 0..calls {
        builder.add(simulated_call(i, gauge));
    }
    builder
        .add(sum_of("join", (0..calls).map(|i| format!("call_{i}"))))
        .returns("join")
        .build()
}

/// A step `name` returning the sum of the `u64` results of `steps`.
pub fn sum_of(name: &str, steps: impl IntoIterator<Item = String>) -> StepSpec {
    let mut sum = step(name);
    for (i, of) in steps.into_iter().enumerate() {
        sum = sum.argument(format!("r{i}"), result(of));
    }
    sum.run_sync(|args, _| {
        let mut total = 0_u64;
        for (_, v) in args.iter() {
            total += v.get::<u64>()?;
        }
        Ok(total)
    })
}

/// The cores this process may use (the guide's `System.schedulers_online()`).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `Err(message)` unless `ok`: how a demo reports a wrong result.
pub fn check(ok: bool, message: impl std::fmt::Display) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {message}").into())
    }
}

/// The process's peak resident memory, in MiB (0 where `/proc` is missing).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// splitmix64: a well-mixed hash of one number.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform draw in `[0, 1)` for try `attempt` of `item`, fixed by `seed`:
/// how a simulated service decides, repeatably, whether a call fails.
pub fn draw(seed: u64, item: u64, attempt: u32) -> f64 {
    let x = mix(seed ^ mix(item ^ mix(u64::from(attempt))));
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

/// A tiny xorshift64* generator for jitter, seeded from the standard
/// library's randomly keyed hasher (no `rand` dependency needed).
pub struct Jitter(AtomicU64);

impl Jitter {
    pub fn new() -> Jitter {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Jitter(AtomicU64::new(seed | 1))
    }

    /// A draw from `1..=max`, like Erlang's `:rand.uniform(max)`.
    pub fn uniform(&self, max: u64) -> u64 {
        fn xorshift(mut x: u64) -> u64 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x
        }
        let previous = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(xorshift(x)))
            .unwrap_or_else(|x| x);
        xorshift(previous).wrapping_mul(0x2545_f491_4f6c_dd1d) % max.max(1) + 1
    }
}

impl Default for Jitter {
    fn default() -> Jitter {
        Jitter::new()
    }
}
