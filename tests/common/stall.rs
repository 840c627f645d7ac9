//! A ledger of calls that can stall, or tell, at chosen calls: the
//! in-process stand-in for a crash (the test aborts the run's task once
//! the gate is told).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Counts calls by name; stalls (after telling its gate) the first time
/// a name chosen with [`Ledger::stall_at`] is counted, and tells the gate
/// of a name chosen with [`Ledger::tell_at`] each time it is.
#[derive(Clone, Default)]
pub struct Ledger {
    counts: Arc<Mutex<BTreeMap<String, u32>>>,
    gates: Arc<Mutex<Vec<Gate>>>,
}

struct Gate {
    name: String,
    notify: Arc<Notify>,
    stall: bool,
}

impl Ledger {
    pub async fn hit(&self, what: String) {
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let n = counts.entry(what.clone()).or_default();
            *n += 1;
            *n
        };
        let gate = {
            let gates = self.gates.lock().unwrap();
            gates
                .iter()
                .find(|g| g.name == what)
                .map(|g| (g.notify.clone(), g.stall))
        };
        match gate {
            Some((notify, true)) if n == 1 => {
                notify.notify_one();
                std::future::pending::<()>().await;
            }
            Some((notify, false)) => notify.notify_one(),
            _ => {}
        }
    }
    pub fn get(&self, what: &str) -> u32 {
        self.counts.lock().unwrap().get(what).copied().unwrap_or(0)
    }
    /// Stalls forever the first time `what` is counted, telling the gate.
    pub fn stall_at(&self, what: &str) -> Arc<Notify> {
        self.gate(what, true)
    }
    /// Tells the gate each time `what` is counted.
    pub fn tell_at(&self, what: &str) -> Arc<Notify> {
        self.gate(what, false)
    }
    fn gate(&self, what: &str, stall: bool) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.gates.lock().unwrap().push(Gate {
            name: what.to_string(),
            notify: notify.clone(),
            stall,
        });
        notify
    }
}

/// Runs `run` in a task and drops it (aborts the task) once `gate` is
/// told: what a crash of its process leaves in the journal.
pub async fn crash_when<F>(gate: &Notify, run: F)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tokio::spawn(run);
    gate.notified().await;
    task.abort();
    let _ = task.await;
}

/// Starts a run of `reactor` as `id` on `rt` and crashes it (see
/// [`crash_when`]) once `gate` is told.
pub async fn crash_run(
    rt: &reactor::durable::Runtime,
    reactor: &str,
    inputs: reactor::Inputs,
    id: &str,
    gate: &Notify,
) {
    let (rt, reactor, id) = (rt.clone(), reactor.to_string(), id.to_string());
    crash_when(
        gate,
        async move { rt.start(&reactor, inputs).run_id(id).await },
    )
    .await;
}

/// The steps a journal records as undone, in order.
pub fn undone(journal: &reactor::journal::Journal) -> Vec<String> {
    journal
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            reactor::journal::Entry::Undone { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect()
}
