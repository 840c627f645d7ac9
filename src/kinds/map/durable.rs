//! A map's elements in a durable run: each element is a run of its own,
//! nested in the map's step as `parent/map.attempt.e<index>`, so that a
//! crash mid-map keeps every element that completed. The map's step runs
//! again after a crash (as any step that may have started does) and
//! starts its elements again under the same ids: those that completed
//! return their journalled result at once, those in flight are taken up
//! where they stand. An element run's inputs (its element and the map's
//! other arguments) are not journalled: the map gives them again from
//! its arguments, which its own run journalled.
//!
//! The rules are the map's, as in its coordinator: at most `batch_size`
//! elements in flight, outputs delivered by [`Outputs`], the first
//! failure stops admitting elements, the elements in flight finish, and
//! every completed element run is undone, newest first. A completed map's
//! undo token names its element runs; after a crash they are undone from
//! their journals, each given its inputs again.

use futures::stream::{BoxStream, FuturesUnordered, StreamExt};

use super::{element_input, MapError, MapStep};
use crate::argument::Arguments;
use crate::context::Context;
use crate::error::{Error, Reason};
use crate::executor::{Outputs, RunOutcome};
use crate::kinds::nested::{self, Journalled, Kept};
use crate::reactor::Reactor;
use crate::step::{Outcome, UndoOutcome};
use crate::value::{Value, ValueMap};

/// How an element failed the map.
enum Failed {
    Element(u64, Reason),
    Halted(Option<Error>),
}

impl MapStep {
    /// Element `element`'s inputs: the element and the map's other
    /// arguments.
    fn element_inputs(&self, args: &Arguments, element: Value) -> ValueMap {
        let mut inputs: ValueMap = args
            .iter()
            .filter(|(n, _)| *n != "source")
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        inputs.insert(element_input(&self.map.name), element);
        inputs
    }

    /// Runs the elements of `stream` as nested durable runs of `reactor`.
    pub(super) async fn run_durable(
        &self,
        args: &Arguments,
        ctx: &Context,
        stream: BoxStream<'static, Value>,
        reactor: Reactor,
    ) -> Outcome {
        let map = self.map.name.to_string();
        let run_async = self.map.allow_async && ctx.is_async();
        let batch = if run_async { self.map.batch_size } else { 1 };
        let kept = Kept::new();
        let mut stream = stream.enumerate();
        let mut exhausted = false;
        let mut admitted = 0u64;
        let mut running = FuturesUnordered::new();
        let mut outputs = Outputs::new(self.map.strict_ordering, self.map.sink.clone());
        let mut failed: Option<Failed> = None;
        loop {
            // Admit while fewer than `batch` elements are in flight or
            // waiting to be delivered in order; none after a failure (the
            // source is not polled again).
            while failed.is_none() && !exhausted && admitted - outputs.delivered() < batch as u64 {
                let Some((index, element)) = stream.next().await else {
                    exhausted = true;
                    break;
                };
                admitted += 1;
                let request = reactor
                    .run(crate::reactor::Inputs(self.element_inputs(args, element)))
                    .within(ctx)
                    .nested_place(format!("e{index}"))
                    .run_async(run_async)
                    .fully_reversible();
                running.push(async move { (index as u64, request.outcome().await) });
            }
            // Seen in completion order, so that a failure stops admission
            // at once whatever the ordering of outputs.
            let Some((index, outcome)) = running.next().await else {
                break;
            };
            let value = match outcome {
                Ok(RunOutcome::Completed(done)) => {
                    let value = done.value().clone();
                    kept.keep(done);
                    Ok(value)
                }
                Ok(RunOutcome::Halted(halted)) => {
                    Err(Failed::Halted(kept.halted(halted).await.err()))
                }
                Err(e) => Err(Failed::Element(index, Reason::new(e))),
            };
            let failure = match value {
                Ok(_) if failed.is_some() => continue,
                Ok(value) => match outputs.finished(index, value) {
                    Ok(()) => continue,
                    Err((index, reason)) => Failed::Element(index, reason),
                },
                Err(failure) => failure,
            };
            failed.get_or_insert(failure);
        }
        let outcome = match failed {
            None => Outcome::Ok(outputs.result()),
            Some(Failed::Element(index, reason)) => {
                self.error(MapError::Element { map, index, reason })
            }
            Some(Failed::Halted(None)) => self.error(MapError::Halted { map }),
            Some(Failed::Halted(Some(error))) => self.error(MapError::Failed {
                map: map.clone(),
                reason: Reason::msg(format!("{}; {}", MapError::Halted { map }, error)),
            }),
        };
        kept.settle(outcome, true).await
    }

    /// Undoes a map's element runs: in memory, or from their journals,
    /// each given its inputs again.
    pub(super) async fn undo_durable(
        &self,
        token: &Value,
        args: &Arguments,
        ctx: &Context,
    ) -> UndoOutcome {
        let reactor = match self.element_reactor(args) {
            Ok(r) => r,
            Err(e) => return nested::unrebuildable(&self.map.name, e),
        };
        // The source again: a journalled value, so the same elements.
        let elements: Vec<Value> = match args.value("source").map(|s| self.elements(s)) {
            Some(Ok(stream)) => stream.collect().await,
            Some(Err(e)) => return nested::unrebuildable(&self.map.name, e),
            None => return nested::unrebuildable(&self.map.name, "its source is missing"),
        };
        let inputs = |id: &str| -> ValueMap {
            let element = id
                .rsplit_once(".e")
                .and_then(|(_, i)| i.parse::<usize>().ok())
                .and_then(|i| elements.get(i));
            match element {
                Some(element) => self.element_inputs(args, element.clone()),
                None => ValueMap::new(),
            }
        };
        let journalled = Journalled {
            reactor: &reactor,
            places: Some((0..elements.len()).map(|i| format!("e{i}")).collect()),
            inputs: &inputs,
        };
        nested::undo(token, ctx, Some(journalled)).await
    }
}
