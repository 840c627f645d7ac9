//! A map's elements, run as instances of the element plan in the map's
//! coordinator, so that their steps obey every rule a reactor's steps do.
//!
//! The source is pulled lazily: at most `batch` elements are in flight
//! (admitted and not yet delivered, so a finished element waiting for an
//! earlier one to keep source order still counts). Outputs are delivered
//! in source order or in completion order, collected or handed to a sink.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use futures::FutureExt;

use super::Coordinator;
use crate::error::{panic_message, BoxError, Phase, Reason, StepError, StepErrorKind};
use crate::value::Value;

/// Where a map's outputs go instead of a collection.
pub(crate) type Sink = Arc<dyn Fn(Value) -> Result<(), BoxError> + Send + Sync>;

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
    elements: Elements,
    /// The source has ended.
    ended: bool,
    admitted: u64,
    delivered: u64,
    /// Outputs of the elements in flight from the next one to deliver on,
    /// in source order (source order only; at most `batch` of them).
    waiting: VecDeque<Option<Value>>,
    outputs: Vec<Value>,
}

impl Feed {
    pub(crate) fn new(elements: Elements) -> Box<Feed> {
        Box::new(Feed {
            elements,
            ended: false,
            admitted: 0,
            delivered: 0,
            waiting: VecDeque::new(),
            outputs: Vec::new(),
        })
    }

    pub(crate) fn element_input(&self) -> u32 {
        self.elements.element_input
    }

    /// Whether the source has ended.
    pub(crate) fn exhausted(&self) -> bool {
        self.ended
    }

    /// Whether another element may be admitted.
    pub(crate) fn wants_more(&self) -> bool {
        !self.ended && self.admitted - self.delivered < self.elements.batch as u64
    }

    /// The next element (`None`: the source ended).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe if the source stream is.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        self.elements.stream.next().await
    }

    /// The map's result: the outputs, or how many went to the sink.
    pub(crate) fn result(&mut self) -> Value {
        match &self.elements.sink {
            Some(_) => Value::new(self.delivered),
            None => Value::new(std::mem::take(&mut self.outputs)),
        }
    }

    /// Element `index` finished with `value`: deliver it (and those that
    /// waited for it), or keep it until the elements before it are done.
    fn finished(&mut self, index: u64, value: Value) -> Result<(), (u64, Reason)> {
        if !self.elements.ordered {
            return self.deliver(index, value);
        }
        let at = (index - self.delivered) as usize;
        if at >= self.waiting.len() {
            self.waiting.resize(at + 1, None);
        }
        self.waiting[at] = Some(value);
        while let Some(Some(_)) = self.waiting.front() {
            let value = self.waiting.pop_front().flatten().expect("checked above");
            self.deliver(self.delivered, value)?;
        }
        Ok(())
    }

    fn deliver(&mut self, index: u64, value: Value) -> Result<(), (u64, Reason)> {
        self.delivered += 1;
        match &self.elements.sink {
            None => {
                self.outputs.push(value);
                Ok(())
            }
            Some(sink) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(value))) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err((index, Reason::from(e))),
                    Err(p) => Err((
                        index,
                        Reason::msg(format!("the sink panicked: {}", panic_message(&*p))),
                    )),
                }
            }
        }
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
        if let Err((index, reason)) = feed.finished(index, value) {
            self.failed_element.get_or_insert(index);
            self.errors.push(StepError {
                step: self.plan.steps[ret].name().to_string(),
                phase: Phase::Run,
                attempt: 1,
                kind: StepErrorKind::Failed(Reason::msg(format!(
                    "the map's sink failed: {reason}"
                ))),
            });
        }
    }
}
