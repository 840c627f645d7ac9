//! [`Limited`]: a step run under its limits. The one place the limits of
//! a step are taken: every place an attempt runs calls the step through
//! it.

use std::sync::Arc;

use async_trait::async_trait;

use super::Limit;
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::Reason;
use crate::step::{Backoff, Compensation, Outcome, Step, StepImp, UndoOutcome};
use crate::value::Value;

/// A step whose `run` first takes a permit of each of its limits, in the
/// order of their names (then of their identity: one order for every
/// step, so that no two steps each hold a limit the other waits for),
/// and holds them until it returns; everything else is the step's own.
pub(crate) struct Limited {
    inner: StepImp,
    limits: Arc<[Limit]>,
}

impl Limited {
    pub(crate) fn new(inner: StepImp, limits: &[Limit]) -> Limited {
        let mut limits = limits.to_vec();
        limits.sort_by(|a, b| a.name().cmp(b.name()).then(a.id().cmp(&b.id())));
        Limited {
            inner,
            limits: limits.into(),
        }
    }
}

#[async_trait]
impl Step for Limited {
    async fn run(&self, args: Arguments, ctx: Context) -> Outcome {
        let mut permits = Vec::with_capacity(self.limits.len());
        for limit in self.limits.iter() {
            match limit.acquire(&args).await {
                Ok(permit) => permits.push(permit),
                Err(e) => return Outcome::Error(Reason::new(e)),
            }
        }
        let outcome = match self.inner.run_now(&args, &ctx) {
            Some(outcome) => outcome,
            None => self.inner.run(args, ctx).await,
        };
        drop(permits);
        outcome
    }

    fn can_compensate(&self) -> bool {
        self.inner.can_compensate()
    }

    async fn compensate(&self, error: Reason, args: Arguments, ctx: Context) -> Compensation {
        self.inner.compensate(error, args, ctx).await
    }

    fn can_undo(&self) -> bool {
        self.inner.can_undo()
    }

    async fn undo(&self, value: Value, args: Arguments, ctx: Context) -> UndoOutcome {
        self.inner.undo(value, args, ctx).await
    }

    fn backoff(&self, reason: Option<&Reason>, args: &Arguments, ctx: &Context) -> Backoff {
        self.inner.backoff(reason, args, ctx)
    }
}
