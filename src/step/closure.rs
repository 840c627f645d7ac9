//! Closure steps: `run`, `compensate`, `undo` and `backoff` given as closures.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Backoff, Compensation, Outcome, Step, UndoOutcome};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{BoxError, Reason};
use crate::value::Value;

pub(crate) type AsyncRunFn =
    Arc<dyn Fn(Arguments, Context) -> BoxFuture<'static, Outcome> + Send + Sync>;
pub(crate) type SyncRunFn = Arc<dyn Fn(&Arguments, &Context) -> Outcome + Send + Sync>;

/// A `run` closure: async, or plain (answered without a future).
#[derive(Clone)]
pub(crate) enum RunFn {
    Async(AsyncRunFn),
    Sync(SyncRunFn),
}
pub(crate) type CompensateFn =
    Arc<dyn Fn(Reason, Arguments, Context) -> BoxFuture<'static, Compensation> + Send + Sync>;
pub(crate) type UndoFn =
    Arc<dyn Fn(Value, Arguments, Context) -> BoxFuture<'static, UndoOutcome> + Send + Sync>;
pub(crate) type BackoffFn =
    Arc<dyn Fn(Option<&Reason>, &Arguments, &Context) -> Backoff + Send + Sync>;

/// Converts what a closure returns into an [`Outcome`].
///
/// Implemented for [`Outcome`] and for `Result<T, BoxError>`, so `?` works
/// inside closures on any error type and `Ok(value)` needs no annotation.
pub trait IntoOutcome: Send + 'static {
    /// The outcome.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl<T> IntoOutcome for Result<T, BoxError>
where
    T: Send + Sync + 'static,
{
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(v) => {
                // `Ok(Outcome::...)` means the outcome itself.
                let mut slot = Some(v);
                if let Some(o) =
                    (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Outcome>>()
                {
                    return o.take().expect("slot is filled above");
                }
                Outcome::Ok(Value::new(slot.expect("slot is filled above")))
            }
            Err(e) => Outcome::Error(Reason::from(e)),
        }
    }
}

/// Converts what an undo closure returns into an [`UndoOutcome`].
pub trait IntoUndoOutcome: Send + 'static {
    /// The outcome.
    fn into_undo_outcome(self) -> UndoOutcome;
}

impl IntoUndoOutcome for UndoOutcome {
    fn into_undo_outcome(self) -> UndoOutcome {
        self
    }
}

impl IntoUndoOutcome for Result<(), BoxError> {
    fn into_undo_outcome(self) -> UndoOutcome {
        match self {
            Ok(()) => UndoOutcome::Done,
            Err(e) => UndoOutcome::Error(Reason::from(e)),
        }
    }
}

pub(crate) fn run_fn<F, Fut, R>(f: F) -> RunFn
where
    F: Fn(Arguments, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoOutcome,
{
    RunFn::Async(Arc::new(move |args, ctx| {
        f(args, ctx).map(IntoOutcome::into_outcome).boxed()
    }))
}

pub(crate) fn run_sync_fn<F, R>(f: F) -> RunFn
where
    F: Fn(&Arguments, &Context) -> R + Send + Sync + 'static,
    R: IntoOutcome,
{
    RunFn::Sync(Arc::new(move |args, ctx| f(args, ctx).into_outcome()))
}

pub(crate) fn compensate_fn<F, Fut>(f: F) -> CompensateFn
where
    F: Fn(Reason, Arguments, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Compensation> + Send + 'static,
{
    Arc::new(move |r, args, ctx| f(r, args, ctx).boxed())
}

pub(crate) fn undo_fn<F, Fut, R>(f: F) -> UndoFn
where
    F: Fn(Value, Arguments, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoUndoOutcome,
{
    Arc::new(move |v, args, ctx| {
        f(v, args, ctx)
            .map(IntoUndoOutcome::into_undo_outcome)
            .boxed()
    })
}

/// A step made of closures.
#[derive(Clone, Default)]
pub(crate) struct FnStep {
    pub(crate) run: Option<RunFn>,
    /// The closures few steps have, out of line.
    pub(crate) more: Option<Box<MoreFns>>,
}

/// A closure step's compensate, undo and backoff closures.
#[derive(Clone, Default)]
pub(crate) struct MoreFns {
    pub(crate) compensate: Option<CompensateFn>,
    pub(crate) undo: Option<UndoFn>,
    pub(crate) backoff: Option<BackoffFn>,
}

impl FnStep {
    pub(crate) fn more(&self) -> Option<&MoreFns> {
        self.more.as_deref()
    }

    pub(crate) fn more_mut(&mut self) -> &mut MoreFns {
        self.more.get_or_insert_with(Default::default)
    }

    pub(crate) fn compensate(&self) -> Option<&CompensateFn> {
        self.more().and_then(|m| m.compensate.as_ref())
    }
}

#[async_trait]
impl Step for FnStep {
    // Written out (not `async fn`) so the closure's boxed future is returned
    // as is instead of being boxed a second time.
    fn run<'life0, 'async_trait>(
        &'life0 self,
        args: Arguments,
        ctx: Context,
    ) -> BoxFuture<'async_trait, Outcome>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        match &self.run {
            Some(RunFn::Async(run)) => run(args, ctx),
            Some(RunFn::Sync(run)) => futures::future::ready(run(&args, &ctx)).boxed(),
            None => futures::future::ready(Outcome::error("step has no run closure")).boxed(),
        }
    }

    fn run_now(&self, args: &Arguments, ctx: &Context) -> Option<Outcome> {
        match &self.run {
            Some(RunFn::Sync(run)) => Some(run(args, ctx)),
            _ => None,
        }
    }

    fn can_compensate(&self) -> bool {
        self.compensate().is_some()
    }

    async fn compensate(&self, error: Reason, args: Arguments, ctx: Context) -> Compensation {
        match self.compensate() {
            Some(f) => f(error, args, ctx).await,
            None => Compensation::Fail,
        }
    }

    fn can_undo(&self) -> bool {
        self.more().is_some_and(|m| m.undo.is_some())
    }

    async fn undo(&self, value: Value, args: Arguments, ctx: Context) -> UndoOutcome {
        match self.more().and_then(|m| m.undo.as_ref()) {
            Some(f) => f(value, args, ctx).await,
            None => UndoOutcome::Done,
        }
    }

    fn backoff(&self, reason: Option<&Reason>, args: &Arguments, ctx: &Context) -> Backoff {
        match self.more().and_then(|m| m.backoff.as_ref()) {
            Some(f) => f(reason, args, ctx),
            None => Backoff::Now,
        }
    }
}
