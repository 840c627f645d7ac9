//! A map's elements, run as instances of the element plan in the map's
//! coordinator, so that their steps obey every rule a reactor's steps do.
//!
//! The source is pulled lazily: at most `batch` elements are in flight
//! (admitted and not yet delivered, so a finished element waiting for an
//! earlier one to keep source order still counts). Outputs are delivered
//! in source order or in completion order, collected or handed to a sink.

use futures::stream::{BoxStream, StreamExt};
use futures::FutureExt;

use super::Coordinator;
use crate::error::{Phase, StepError, StepErrorKind};
use crate::executor::outputs::{Outputs, Sink};
use crate::value::Value;

/// What a map hands its coordinator.
pub(crate) struct Elements {
    pub(crate) stream: BoxStream<'static, Value>,
    /// The most elements in flight.
    pub(crate) batch: usize,
    /// Outputs in source order (else in completion order).
    pub(crate) ordered: bool,
    pub(crate) sink: Option<Sink>,
    /// The element plan's input that is each instance's element.
    pub(crate) element_input: u32,
}

pub(crate) struct Feed {
    stream: BoxStream<'static, Value>,
    batch: u64,
    element_input: u32,
    /// The source has ended.
    ended: bool,
    admitted: u64,
    outputs: Outputs,
}

impl Feed {
    pub(crate) fn new(elements: Elements) -> Box<Feed> {
        Box::new(Feed {
            stream: elements.stream,
            batch: elements.batch as u64,
            element_input: elements.element_input,
            ended: false,
            admitted: 0,
            outputs: Outputs::new(elements.ordered, elements.sink),
        })
    }

    pub(crate) fn element_input(&self) -> u32 {
        self.element_input
    }

    /// Whether the source has ended.
    pub(crate) fn exhausted(&self) -> bool {
        self.ended
    }

    /// Whether another element may be admitted.
    pub(crate) fn wants_more(&self) -> bool {
        !self.ended && self.admitted - self.outputs.delivered() < self.batch
    }

    /// The next element (`None`: the source ended).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe if the source stream is.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        self.stream.next().await
    }

    /// The map's result: the outputs, or how many went to the sink.
    pub(crate) fn result(&mut self) -> Value {
        self.outputs.result()
    }
}

impl Coordinator {
    /// Admits the elements the source has ready, up to the batch; `true`
    /// if any was admitted.
    pub(super) fn admit(&mut self) -> bool {
        let mut admitted = false;
        while let Some(feed) = self.feed.as_mut().filter(|f| f.wants_more()) {
            // Pull without waiting: an element not ready yet is awaited
            // with the rest of the coordinator's wake-ups.
            let Some(element) = feed.next().now_or_never() else {
                break;
            };
            admitted |= element.is_some();
            self.admit_one(element);
        }
        admitted
    }

    /// Admits `element` as a new instance (`None`: the source ended).
    pub(super) fn admit_one(&mut self, element: Option<Value>) {
        let feed = self.feed.as_mut().expect("a map's coordinator");
        let Some(element) = element else {
            feed.ended = true;
            return;
        };
        let index = feed.admitted;
        feed.admitted += 1;
        let k = self.new_instance(element, index);
        self.wire_fresh(k);
    }

    /// Instance `k`'s element is done: its output goes out, and the
    /// instance is kept for the next element.
    pub(super) fn element_done(&mut self, k: usize) {
        let ret = self.plan.return_step;
        let inst = &mut self.instances[k];
        let value = inst.nodes[ret]
            .result
            .take()
            .expect("the return step's result is kept");
        let index = inst.index;
        inst.live = false;
        inst.element = Value::unit();
        self.free.push(k as u32);
        let feed = self.feed.as_mut().expect("a map's coordinator");
        if let Err((index, reason)) = feed.outputs.finished(index, value) {
            self.failed_element.get_or_insert(index);
            self.errors.push(StepError {
                step: self.plan.steps[ret].name().to_string(),
                phase: Phase::Run,
                attempt: 1,
                kind: StepErrorKind::Failed(reason),
            });
        }
    }
}
