//! What several of the guide's examples share: a gauge of steps in flight
//! (to show a concurrency limit holding), the machine's core count, and a
//! check that turns a wrong result into the demo's error.

// Each example uses some of these, not all.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reactor::BoxError;

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
