//! The running step tasks of one run: spawned on tokio, reporting back
//! through a channel, aborted if the run is dropped.
//!
//! A channel rather than a `JoinSet`: finishing a step then costs one
//! lock-free push and a wake, not a mutex-guarded move between lists.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::runner::{BoxedTask, Finished, Report};

pub(crate) struct Tasks {
    sender: mpsc::UnboundedSender<Finished>,
    reports: mpsc::UnboundedReceiver<Finished>,
    /// By step index: the task running it, to abort it if the run is dropped.
    handles: Vec<Option<JoinHandle<()>>>,
    running: usize,
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        let (sender, reports) = mpsc::unbounded_channel();
        Tasks {
            sender,
            reports,
            handles: Vec::new(),
            running: 0,
        }
    }

    /// How many tasks are running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Spawns the task of step `index` (on the blocking pool if CPU-bound).
    pub(crate) fn spawn(&mut self, index: usize, task: BoxedTask, cpu_bound: bool) {
        let sender = self.sender.clone();
        let send = async move {
            let finished = task.await;
            // The receiver is gone only when the run was dropped.
            let _ = sender.send(finished);
        };
        let handle = if cpu_bound {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(send))
        } else {
            tokio::spawn(send)
        };
        if index >= self.handles.len() {
            self.handles.resize_with(index + 1, || None);
        }
        self.handles[index] = Some(handle);
        self.running += 1;
    }

    /// The next report, waiting for one; `None` when nothing runs.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a report is only taken when the future completes.
    pub(crate) async fn next(&mut self) -> Option<Report> {
        if self.running == 0 {
            return None;
        }
        let finished = self.reports.recv().await?;
        Some(self.taken(finished))
    }

    /// A report already sent, if any.
    pub(crate) fn try_next(&mut self) -> Option<Report> {
        if self.running == 0 {
            return None;
        }
        let finished = self.reports.try_recv().ok()?;
        Some(self.taken(finished))
    }

    fn taken(&mut self, finished: Finished) -> Report {
        self.running -= 1;
        let report = finished.into_report();
        if let Some(slot) = self.handles.get_mut(report.index) {
            *slot = None;
        }
        report
    }

    /// Lets the running tasks go on without waiting for them.
    pub(crate) fn detach_all(&mut self) {
        self.handles.clear();
        self.running = 0;
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in self.handles.iter().flatten() {
            handle.abort();
        }
    }
}
