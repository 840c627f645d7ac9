//! The places an attempt runs off the coordinator: a task of its own
//! ([`StepTask`]) or a chunk of plain steps sharing a task
//! ([`ChunkTask`]). Both only carry attempts made by [`attempt`]; neither
//! decides anything.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use super::attempt::{self, Attempt, SlowAttempt, Started};
use super::coordinator::Key;
use super::nesting::Nesting;
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{panic_message, Phase, StepErrorKind};
use crate::pool::Permit;
use crate::step::{Runner, SyncRunFn};

/// One attempt's end: the step, what the attempt came to, and its
/// arguments and context (kept for retries and undo).
pub(crate) struct Ended {
    pub(crate) key: Key,
    pub(crate) attempt: Attempt,
    pub(crate) args: Arguments,
    pub(crate) ctx: Context,
    /// Handed back so that its reference count is released on the
    /// coordinator's thread.
    pub(crate) _runner: Option<Runner>,
}

/// One attempt of a step, as a future: a task of its own.
///
/// A step that answers at once completes on the first poll without any
/// further future, so the task stays small (it is copied into and out of
/// tokio's task cell); one that awaits continues in a boxed future, inside
/// the nesting scope that lends its slot to nested runs.
pub(crate) struct StepTask {
    key: Key,
    held: Option<(Runner, Arguments, Context)>,
    span: Option<Box<tracing::Span>>,
    slow: Option<SlowAttempt>,
    permit: Option<Permit>,
    /// Where a boxed task leaves its report.
    ended: Option<Ended>,
}

impl StepTask {
    /// `span` is the run's span, when step spans are wanted.
    pub(crate) fn new(
        key: Key,
        step: Runner,
        args: Arguments,
        ctx: Context,
        span: Option<&tracing::Span>,
        permit: Option<Permit>,
    ) -> StepTask {
        let span = span.map(|parent| Box::new(attempt::step_span(parent, &ctx)));
        StepTask {
            key,
            held: Some((step, args, ctx)),
            span,
            slow: None,
            permit,
            ended: None,
        }
    }

    fn start(&mut self) -> Started {
        let (step, args, ctx) = self.held.as_ref().expect("a task runs once");
        let permit = &mut self.permit;
        attempt::start(step, args, ctx, self.span.take().map(|s| *s), || {
            Nesting::new(&ctx.run, permit.take())
        })
    }
}

impl Future for StepTask {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Ended> {
        let this = &mut *self;
        let attempt = match &mut this.slow {
            Some(fut) => ready!(fut.as_mut().poll(cx)),
            None => match this.start() {
                Started::Now(attempt) => attempt,
                Started::Later(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(attempt) => attempt,
                    Poll::Pending => {
                        this.slow = Some(fut);
                        return Poll::Pending;
                    }
                },
            },
        };
        let (runner, args, ctx) = this.held.take().expect("a task reports once");
        Poll::Ready(Ended {
            key: this.key,
            attempt,
            args,
            ctx,
            _runner: Some(runner),
        })
    }
}

/// A [`StepTask`] as a spawned task: boxed, and handing back its box with
/// the report inside. Tokio copies a task's future and output in and out of
/// its cell several times; a pointer each way keeps that cheap.
pub(crate) struct BoxedTask(Option<Box<StepTask>>);

impl BoxedTask {
    pub(crate) fn new(task: StepTask) -> BoxedTask {
        BoxedTask(Some(Box::new(task)))
    }

    /// The step's arguments (the task has not ended).
    pub(crate) fn args(&self) -> &Arguments {
        let task = self.0.as_ref().expect("not yet polled to completion");
        &task.held.as_ref().expect("a task runs once").1
    }
}

impl StepTask {
    /// Runs the attempt here, in the calling thread, as far as it goes
    /// without awaiting: its report if it ended, else the task to spawn,
    /// which goes on from where it stopped.
    ///
    /// It is polled with a waker that does nothing. That is sound because
    /// a spawned task is polled again as soon as it first runs, which
    /// registers the task's own waker wherever the attempt waits (a poll
    /// that comes without a wake-up is always allowed).
    pub(crate) fn poll_here(mut self) -> Result<Ended, BoxedTask> {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        match poll_guarded(&mut self, &mut cx) {
            // The permit, if any, is released with `self`.
            Poll::Ready(ended) => Ok(ended),
            Poll::Pending => Err(BoxedTask::new(self)),
        }
    }
}

/// Polls `task`; user code is guarded inside, and this guard keeps an
/// engine bug from losing the attempt.
fn poll_guarded(task: &mut StepTask, cx: &mut TaskContext<'_>) -> Poll<Ended> {
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *task).poll(cx)));
    match polled {
        Ok(poll) => poll,
        Err(panic) => {
            let (runner, args, ctx) = task.held.take().expect("a task reports once");
            Poll::Ready(Ended {
                key: task.key,
                attempt: Attempt::failed(
                    Phase::Run,
                    StepErrorKind::Panicked(panic_message(&*panic)),
                ),
                args,
                ctx,
                _runner: Some(runner),
            })
        }
    }
}

impl Future for BoxedTask {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Finished> {
        let task = self.0.as_mut().expect("polled after completion");
        let ended = ready!(poll_guarded(task, cx));
        let mut task = self.0.take().expect("checked above");
        task.slow = None;
        task.permit = None;
        task.ended = Some(ended);
        Poll::Ready(Finished::One(task))
    }
}

/// The attempts a finished task made. One attempt's report stays
/// inline: a task per step would otherwise allocate a list for each.
pub(crate) type EndedList = smallvec::SmallVec<[Ended; 1]>;

/// What a spawned task hands back.
pub(crate) enum Finished {
    /// One step's attempt (its box, with the report inside).
    One(Box<StepTask>),
    /// A chunk of plain steps.
    Chunk(Box<ChunkTask>),
}

impl Finished {
    /// The attempts made, the chunk's steps it left unrun (with their
    /// arguments), and for a chunk the time its steps took on average.
    pub(crate) fn into_ended(self) -> (EndedList, Vec<(Key, Arguments)>, Option<Duration>) {
        match self {
            Finished::One(mut task) => {
                let ended = task.ended.take().expect("a finished task holds its report");
                (smallvec::smallvec![ended], Vec::new(), None)
            }
            Finished::Chunk(chunk) => {
                let chunk = *chunk;
                let per_step = chunk.took / chunk.ended.len().max(1) as u32;
                let unrun = chunk
                    .items
                    .into_iter()
                    .map(|(key, _, args, _)| (key, args))
                    .collect();
                (
                    smallvec::SmallVec::from_vec(chunk.ended),
                    unrun,
                    Some(per_step),
                )
            }
        }
    }
}

/// Several ready plain steps run one after another in one task, holding
/// one concurrency slot: for fan-outs of cheap closures, one task (and one
/// report) per step would cost more than the steps.
///
/// The chunk stops early, leaving the rest unrun for the coordinator to
/// start again, once it has run for [`CHUNK_TIME`], so a chunk of slow
/// closures does not hold a worker much longer than one of them would.
pub(crate) struct ChunkTask {
    /// The steps still to run, last first.
    items: Vec<(Key, SyncRunFn, Arguments, Context)>,
    ended: Vec<Ended>,
    /// How long the steps that ran took, in all.
    took: Duration,
    _permit: Permit,
}

/// The most steps a chunk takes.
pub(crate) const MAX_CHUNK: usize = 32;
/// How long a chunk runs before it hands its remaining steps back.
pub(crate) const CHUNK_TIME: Duration = Duration::from_micros(200);

/// Attempts run one after another in one place (a chunk's task, the
/// coordinator): a chunk's worth is at most [`MAX_CHUNK`] of them, for at
/// most [`CHUNK_TIME`] (the clock read every 4, to keep the check cheap).
#[derive(Default)]
pub(crate) struct Batch {
    ran: u32,
    /// When its time started; `None` until its first attempt ends, for a
    /// batch that reads no clock unless one does.
    since: Option<Instant>,
}

impl Batch {
    /// A batch whose time runs from `started`.
    pub(crate) fn since(started: Instant) -> Batch {
        Batch {
            ran: 0,
            since: Some(started),
        }
    }

    /// How many attempts it ran.
    pub(crate) fn ran(&self) -> u32 {
        self.ran
    }

    /// One more attempt ran; whether the batch is full.
    pub(crate) fn full(&mut self) -> bool {
        self.ran += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        self.ran as usize >= MAX_CHUNK
            || (self.ran.is_multiple_of(4) && since.elapsed() >= CHUNK_TIME)
    }
}

impl ChunkTask {
    /// `items` in the order to run them.
    pub(crate) fn new(
        mut items: Vec<(Key, SyncRunFn, Arguments, Context)>,
        permit: Permit,
    ) -> ChunkTask {
        items.reverse();
        let ended = Vec::with_capacity(items.len());
        ChunkTask {
            items,
            ended,
            took: Duration::ZERO,
            _permit: permit,
        }
    }

    /// Runs the steps (no step awaits).
    pub(crate) fn run(mut self: Box<Self>) -> Finished {
        let started = Instant::now();
        let mut batch = Batch::since(started);
        while let Some((key, run, args, ctx)) = self.items.pop() {
            let attempt = attempt::run_plain(&run, &args, &ctx);
            self.ended.push(Ended {
                key,
                attempt,
                args,
                ctx,
                _runner: None,
            });
            if !self.items.is_empty() && batch.full() {
                break;
            }
        }
        self.took = started.elapsed();
        Finished::Chunk(self)
    }
}
