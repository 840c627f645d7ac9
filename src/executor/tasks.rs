//! The running tasks of one run: spawned on tokio (CPU-bound ones on the
//! blocking pool), reporting back through a channel, and cancelled when
//! the run abandons them or is dropped.
//!
//! Every task reports exactly once: what it finished with, or that it was
//! *lost* (aborted, or stopped by an engine bug) with the steps it held.
//! The report of a lost task is sent when its future is dropped, so once
//! every task has reported none of them runs any more. Each task is also
//! counted by the run's [`Tracker`], which counts the tasks of the runs
//! nested in it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coordinator::Key;
use super::nesting::{Live, Tracker};
use super::places::{BoxedTask, ChunkTask, Finished};
use crate::argument::Arguments;

/// The steps a task runs, with the arguments of those that can undo (to
/// undo them if the task is lost).
pub(crate) type Keys = SmallVec<[(Key, Option<Arguments>); 1]>;

type Message = (usize, Option<Finished>);

/// What a task came to.
pub(crate) enum TaskReport {
    Finished(Finished),
    /// The task was dropped before it finished: these steps did not end.
    Lost(Keys),
}

pub(crate) struct Tasks {
    /// The channel the tasks report through, made with the first task (a
    /// run whose steps all run in its coordinator needs none).
    channel: Option<Channel>,
    /// The running tasks by slot.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    running: usize,
    /// Of them, those holding a slot of the run's pool.
    slotted: usize,
    tracker: Arc<Tracker>,
    /// Stops CPU-bound tasks (aborting does not reach the blocking pool);
    /// made with the first of them.
    cancel: Option<CancellationToken>,
}

struct Channel {
    sender: mpsc::UnboundedSender<Message>,
    reports: mpsc::UnboundedReceiver<Message>,
}

struct Slot {
    handle: JoinHandle<()>,
    keys: Keys,
    /// Holds a slot of the run's pool.
    slotted: bool,
}

impl Tasks {
    pub(crate) fn new(tracker: Arc<Tracker>) -> Tasks {
        Tasks {
            channel: None,
            slots: Vec::new(),
            free: Vec::new(),
            running: 0,
            slotted: 0,
            tracker,
            cancel: None,
        }
    }

    /// How many tasks are running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// How many running tasks hold a slot of the run's pool (what
    /// `max_concurrency` counts).
    pub(crate) fn slotted(&self) -> usize {
        self.slotted
    }

    /// The tracker counting this run's tasks.
    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Spawns one step's task (on the blocking pool if CPU-bound);
    /// `undo_args` are its arguments if it can undo; `slotted` if it holds
    /// a slot of the run's pool.
    pub(crate) fn spawn(
        &mut self,
        key: Key,
        undo_args: Option<Arguments>,
        task: BoxedTask,
        cpu_bound: bool,
        slotted: bool,
    ) {
        let slot = self.slot();
        let reporting = self.reporting(slot, task);
        let handle = if cpu_bound {
            let runtime = tokio::runtime::Handle::current();
            let cancel = self
                .cancel
                .get_or_insert_with(CancellationToken::new)
                .clone();
            tokio::task::spawn_blocking(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => {}
                        _ = reporting => {}
                    }
                })
            })
        } else {
            tokio::spawn(reporting)
        };
        let mut keys = Keys::new();
        keys.push((key, undo_args));
        self.started(slot, handle, keys, slotted);
    }

    /// Spawns a chunk of plain steps.
    pub(crate) fn spawn_chunk(&mut self, keys: Keys, chunk: Box<ChunkTask>) {
        let slot = self.slot();
        let reporting = self.reporting(slot, ChunkFuture(Some(chunk)));
        let handle = tokio::spawn(reporting);
        self.started(slot, handle, keys, true);
    }

    fn reporting<F>(&mut self, slot: usize, task: F) -> Reporting<F> {
        let channel = self.channel.get_or_insert_with(|| {
            let (sender, reports) = mpsc::unbounded_channel();
            Channel { sender, reports }
        });
        Reporting {
            task,
            guard: ReportGuard {
                slot,
                sender: channel.sender.clone(),
                sent: false,
                _live: self.tracker.enter_ancestors(),
            },
        }
    }

    fn slot(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        })
    }

    fn started(&mut self, slot: usize, handle: JoinHandle<()>, keys: Keys, slotted: bool) {
        self.slots[slot] = Some(Slot {
            handle,
            keys,
            slotted,
        });
        self.running += 1;
        self.slotted += usize::from(slotted);
    }

    /// The next report, waiting for one; `None` when nothing runs.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a report is only taken when the future completes.
    pub(crate) async fn next(&mut self) -> Option<TaskReport> {
        if self.running == 0 {
            return None;
        }
        let (slot, finished) = self.channel.as_mut()?.reports.recv().await?;
        Some(self.taken(slot, finished))
    }

    /// A report already sent, if any.
    pub(crate) fn try_next(&mut self) -> Option<TaskReport> {
        if self.running == 0 {
            return None;
        }
        let (slot, finished) = self.channel.as_mut()?.reports.try_recv().ok()?;
        Some(self.taken(slot, finished))
    }

    fn taken(&mut self, slot: usize, finished: Option<Finished>) -> TaskReport {
        let Slot { keys, slotted, .. } = self.slots[slot]
            .take()
            .expect("a running task reports once");
        self.running -= 1;
        self.slotted -= usize::from(slotted);
        self.free.push(slot);
        match finished {
            Some(f) => TaskReport::Finished(f),
            None => TaskReport::Lost(keys),
        }
    }

    /// The steps of the running tasks, as lost (for a run dropped while
    /// they run).
    pub(crate) fn take_running(&mut self) -> impl Iterator<Item = (Key, Option<Arguments>)> + '_ {
        self.slots
            .iter_mut()
            .flatten()
            .flat_map(|slot| slot.keys.drain(..))
    }

    /// Stops every running task; each still reports (mostly as lost).
    pub(crate) fn abort_all(&mut self) {
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
        for slot in self.slots.iter().flatten() {
            slot.handle.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// A task's future with the guard that reports it, dropped after it.
struct Reporting<F> {
    task: F,
    guard: ReportGuard,
}

struct ReportGuard {
    slot: usize,
    sender: mpsc::UnboundedSender<Message>,
    sent: bool,
    /// Counts the task for the runs this run is nested in (its own run
    /// waits for its tasks through their reports).
    _live: Option<Live>,
}

impl Drop for ReportGuard {
    fn drop(&mut self) {
        if !self.sent {
            // The receiver is gone only when the run was dropped.
            let _ = self.sender.send((self.slot, None));
        }
    }
}

impl<F: Future<Output = Finished> + Unpin> Future for Reporting<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let finished = std::task::ready!(Pin::new(&mut this.task).poll(cx));
        this.guard.sent = true;
        let _ = this.guard.sender.send((this.guard.slot, Some(finished)));
        Poll::Ready(())
    }
}

/// A chunk as a future: it runs on its first poll.
struct ChunkFuture(Option<Box<ChunkTask>>);

impl Future for ChunkFuture {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Finished> {
        let chunk = self.0.take().expect("a chunk runs once");
        Poll::Ready(chunk.run())
    }
}
