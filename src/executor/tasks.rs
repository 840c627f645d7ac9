//! The running step tasks of one run: spawned on tokio, reporting back
//! through a channel, aborted if the run is dropped.
//!
//! A channel rather than a `JoinSet`: finishing a step then costs one
//! lock-free push and a wake, not a mutex-guarded move between lists.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::runner::{BoxedTask, ChunkTask, Finished};

pub(crate) struct Tasks {
    sender: mpsc::UnboundedSender<(usize, Finished)>,
    reports: mpsc::UnboundedReceiver<(usize, Finished)>,
    /// The running tasks by slot, to abort them if the run is dropped.
    handles: Vec<Option<JoinHandle<()>>>,
    free: Vec<usize>,
    running: usize,
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        let (sender, reports) = mpsc::unbounded_channel();
        Tasks {
            sender,
            reports,
            handles: Vec::new(),
            free: Vec::new(),
            running: 0,
        }
    }

    /// How many tasks are running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Spawns one step's task (on the blocking pool if CPU-bound).
    pub(crate) fn spawn(&mut self, task: BoxedTask, cpu_bound: bool) {
        let slot = self.slot();
        let sender = self.sender.clone();
        let send = async move {
            let finished = task.await;
            // The receiver is gone only when the run was dropped.
            let _ = sender.send((slot, finished));
        };
        let handle = if cpu_bound {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(send))
        } else {
            tokio::spawn(send)
        };
        self.started(slot, handle);
    }

    /// Spawns a chunk of plain steps.
    pub(crate) fn spawn_chunk(&mut self, chunk: Box<ChunkTask>) {
        let slot = self.slot();
        let sender = self.sender.clone();
        let handle = tokio::spawn(async move {
            let _ = sender.send((slot, chunk.run()));
        });
        self.started(slot, handle);
    }

    fn slot(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.handles.push(None);
            self.handles.len() - 1
        })
    }

    fn started(&mut self, slot: usize, handle: JoinHandle<()>) {
        self.handles[slot] = Some(handle);
        self.running += 1;
    }

    /// The next finished task, waiting for one; `None` when nothing runs.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a task is only taken when the future completes.
    pub(crate) async fn next(&mut self) -> Option<Finished> {
        if self.running == 0 {
            return None;
        }
        let (slot, finished) = self.reports.recv().await?;
        Some(self.taken(slot, finished))
    }

    /// A task already finished, if any.
    pub(crate) fn try_next(&mut self) -> Option<Finished> {
        if self.running == 0 {
            return None;
        }
        let (slot, finished) = self.reports.try_recv().ok()?;
        Some(self.taken(slot, finished))
    }

    fn taken(&mut self, slot: usize, finished: Finished) -> Finished {
        self.running -= 1;
        self.handles[slot] = None;
        self.free.push(slot);
        finished
    }

    /// Lets the running tasks go on without waiting for them.
    pub(crate) fn detach_all(&mut self) {
        self.handles.clear();
        self.free.clear();
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
