//! A ledger of calls that can stall once at a chosen call: the
//! in-process stand-in for a crash (the test aborts the run's task once
//! the gate is told).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Counts calls by name, and stalls (after telling its gate) the first
/// time a chosen name is counted: the in-process stand-in for a crash.
#[derive(Clone, Default)]
pub struct Ledger {
    counts: Arc<Mutex<BTreeMap<String, u32>>>,
    stall: Arc<Mutex<Option<Stall>>>,
}

/// The call to stall at, and the gate to tell.
type Stall = (String, Arc<Notify>);

impl Ledger {
    pub async fn hit(&self, what: String) {
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let n = counts.entry(what.clone()).or_default();
            *n += 1;
            *n
        };
        let stall = self.stall.lock().unwrap().clone();
        if let Some((name, gate)) = stall {
            if name == what && n == 1 {
                gate.notify_one();
                std::future::pending::<()>().await;
            }
        }
    }
    pub fn get(&self, what: &str) -> u32 {
        self.counts.lock().unwrap().get(what).copied().unwrap_or(0)
    }
    pub fn stall_at(&self, what: &str) -> Arc<Notify> {
        let gate = Arc::new(Notify::new());
        *self.stall.lock().unwrap() = Some((what.to_string(), gate.clone()));
        gate
    }
}
