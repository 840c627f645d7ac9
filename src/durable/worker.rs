//! [`Worker`]: one of many processes driving the runs of one store they
//! share ([`PgStore`](crate::journal::PgStore)).
//!
//! A worker claims whole runs, never single steps: up to `max_runs` at a
//! time, through [`Leases::claim`] (`FOR UPDATE SKIP LOCKED`, so workers
//! claiming together take different runs), and takes each up from its
//! journal as [`Runtime::recover`] does: a new epoch, completed steps not
//! run again. Runs are found by polling, 50 ms apart while there is work
//! and backing off to 1 s when there is none; no message is sent per
//! step.
//!
//! The store holds a worker's runs under a lease, renewed with every
//! write and by one statement per tick; a worker that dies or stalls past
//! its lease loses its runs to the others, which take them up within the
//! lease and a poll. The tick renews only the runs the store knows it
//! holds, not every row that names the worker: a run whose claim answer
//! was lost, or whose hand-back failed (a server restarting), runs out
//! of lease instead of staying held by a worker that does not drive it.
//! A run whose driving ends unended (its journal broke) is handed back
//! at once. A stalled worker that wakes finds its next write
//! refused (its epoch is no longer the run's, see
//! [`fence`](crate::journal::fence)) and stops driving the run, undoing
//! nothing. A graceful shutdown stops the runs it drives (undoing
//! nothing) and hands them back at once.
//!
//! [`Runtime::recover`]: super::Runtime::recover

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use super::runtime::Runtime;
use crate::error::Error;
use crate::journal::Leases;

/// Drives runs claimed from a store shared with other workers.
///
/// # Examples
///
/// ```no_run
/// use reactor::durable::{Runtime, Worker};
/// use reactor::journal::PgStore;
///
/// # async fn f(reactors: Vec<reactor::Reactor>) -> Result<(), reactor::Error> {
/// let runtime = Runtime::new(PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?);
/// for r in reactors {
///     runtime.register(r)?;
/// }
/// let report = Worker::new(&runtime)?
///     .max_runs(100)
///     .run(async { tokio::signal::ctrl_c().await.ok(); })
///     .await;
/// println!("{} runs finished, {} handed back", report.finished, report.handed_back.len());
/// # Ok(()) }
/// ```
pub struct Worker {
    runtime: Runtime,
    max_runs: usize,
    poll: (Duration, Duration),
}

/// What a worker did, when it stops.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Runs it drove to their end (completed, failed, cancelled) or to a
    /// halt.
    pub finished: u64,
    /// Runs it could not take up (a changed definition, a journal that
    /// does not load), with why: left to other workers.
    pub skipped: Vec<(String, Error)>,
    /// Runs it lost: another worker took them up (its lease had
    /// expired), so the store refused its writes and it stopped driving
    /// them, undoing nothing.
    pub lost: Vec<String>,
    /// Runs it was driving when told to stop: handed back.
    pub handed_back: Vec<String>,
}

impl Worker {
    /// A worker driving the runs of `runtime`'s reactors; an error if its
    /// store is not shared by workers (it has no [`Leases`]).
    pub fn new(runtime: &Runtime) -> Result<Worker, Error> {
        if runtime.store().leases().is_none() {
            return Err(Error::InvalidOption {
                option: "store",
                message: "a worker needs a store that workers share, such as PgStore".to_string(),
            });
        }
        Ok(Worker {
            runtime: runtime.clone(),
            max_runs: 100,
            poll: (Duration::from_millis(50), Duration::from_secs(1)),
        })
    }

    /// The most runs it drives at once (default 100; at least 1).
    pub fn max_runs(mut self, n: usize) -> Worker {
        self.max_runs = n.max(1);
        self
    }

    /// How often it looks for runs: `min` apart while it finds some,
    /// doubling up to `max` while it finds none (defaults 50 ms and 1 s;
    /// `min` at least 1 ms, `max` at least `min`).
    pub fn poll(mut self, min: Duration, max: Duration) -> Worker {
        let min = min.max(Duration::from_millis(1));
        self.poll = (min, max.max(min));
        self
    }

    /// Claims and drives runs until `shutdown` completes, then stops the
    /// runs it drives and hands them back.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let store = self.runtime.store().clone();
        let leases: &dyn Leases = store.leases().expect("checked when made");
        let reactors = self.runtime.reactor_names();
        let mut report = WorkerReport::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut driving: HashMap<tokio::task::Id, String> = HashMap::new();
        // Runs it could not take up: not claimed again.
        let mut skip: HashSet<String> = HashSet::new();
        let (fastest, slowest) = self.poll;
        let mut wait = fastest;
        tokio::pin!(shutdown);
        // Claims are made in batches: when a quarter of its room is free
        // (or it drives nothing), and at each poll.
        let batch = (self.max_runs / 4).max(1);
        let mut polled = true;
        loop {
            let room = self.max_runs - tasks.len();
            if room > 0 && (polled || room >= batch || tasks.is_empty()) {
                let skipped: Vec<String> = skip.iter().cloned().collect();
                match leases.claim(room, &reactors, &skipped).await {
                    Ok(claimed) => {
                        wait = if claimed.is_empty() {
                            (wait * 2).min(slowest)
                        } else {
                            fastest
                        };
                        for id in claimed {
                            let rt = self.runtime.clone();
                            let run = id.clone();
                            let task = tasks.spawn(async move { rt.take_up(&run, false).await });
                            driving.insert(task.id(), id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = leases.worker(), error = %e, "claiming runs failed");
                        wait = slowest;
                    }
                }
            }
            polled = false;
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (task, out) = match joined {
                        Ok((task, out)) => (task, Ok(out)),
                        Err(e) => (e.id(), Err(e)),
                    };
                    let id = driving.remove(&task).unwrap_or_default();
                    match out {
                        // Refused by the store (taken up elsewhere) or
                        // stopped: the run is not this worker's now.
                        Ok(Err(Error::Store(e))) => {
                            tracing::warn!(run_id = %id, error = %e, "a run left this worker");
                            metrics::counter!("reactor_leases_lost_total").increment(1);
                            let _ = leases.release(std::slice::from_ref(&id)).await;
                            report.lost.push(id);
                        }
                        // Ended: completed, failed (or cancelled), halted.
                        Ok(Ok(_) | Err(Error::Run(_) | Error::Halted(_))) => {
                            report.finished += 1;
                        }
                        // Not taken up (a changed definition, a journal that
                        // does not load) or not driven for another reason:
                        // handed back and left to other workers (a run left
                        // held would be renewed with this worker's lease,
                        // never claimed by another).
                        Ok(Err(e)) => {
                            tracing::error!(run_id = %id, error = %e, "a claimed run could not be driven: left to other workers");
                            // Unless this runtime drives it already (taken up
                            // by `recover` or `resume`): it stays held.
                            if !self.runtime.drives(&id) {
                                let _ = leases.release(std::slice::from_ref(&id)).await;
                            }
                            skip.insert(id.clone());
                            report.skipped.push((id, e));
                        }
                        Err(e) => {
                            tracing::error!(run_id = %id, error = %e, "driving a run panicked");
                            let _ = leases.release(std::slice::from_ref(&id)).await;
                            skip.insert(id);
                        }
                    }
                }
                () = tokio::time::sleep(wait) => polled = true,
            }
        }
        // Stopped where they stand (their journals say where), undoing
        // nothing, and handed back for another worker to take up at once.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        report.handed_back = driving.into_values().collect();
        if let Err(e) = leases.release(&report.handed_back).await {
            tracing::warn!(worker = leases.worker(), error = %e, "handing runs back failed: they are taken up when their leases expire");
        }
        report
    }
}
