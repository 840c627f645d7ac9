//! A map's outputs: delivered in source order or in completion order,
//! collected or handed to a sink. The one place for what a map's result
//! is, whether its elements run in its coordinator or, in a durable run,
//! as runs of their own.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::{panic_message, BoxError, Reason};
use crate::value::Value;

/// Where a map's outputs go instead of a collection.
pub(crate) type Sink = Arc<dyn Fn(Value) -> Result<(), BoxError> + Send + Sync>;

/// The outputs of a map's finished elements, on their way out.
pub(crate) struct Outputs {
    /// In source order (else in completion order).
    ordered: bool,
    sink: Option<Sink>,
    delivered: u64,
    /// Outputs of the elements in flight from the next one to deliver on,
    /// in source order (source order only).
    waiting: VecDeque<Option<Value>>,
    collected: Vec<Value>,
}

impl Outputs {
    pub(crate) fn new(ordered: bool, sink: Option<Sink>) -> Outputs {
        Outputs {
            ordered,
            sink,
            delivered: 0,
            waiting: VecDeque::new(),
            collected: Vec::new(),
        }
    }

    /// How many outputs went out.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The map's result: the outputs, or how many went to the sink.
    pub(crate) fn result(&mut self) -> Value {
        match &self.sink {
            Some(_) => Value::new(self.delivered),
            None => Value::new(std::mem::take(&mut self.collected)),
        }
    }

    /// Element `index` finished with `value`: deliver it (and those that
    /// waited for it), or keep it until the elements before it are done.
    /// A sink's failure or panic is the element's, with why.
    pub(crate) fn finished(&mut self, index: u64, value: Value) -> Result<(), (u64, Reason)> {
        if !self.ordered {
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
        let Some(sink) = &self.sink else {
            self.collected.push(value);
            return Ok(());
        };
        let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(value))) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Reason::from(e).to_string(),
            Err(p) => format!("the sink panicked: {}", panic_message(&*p)),
        };
        Err((index, Reason::msg(format!("the map's sink failed: {why}"))))
    }
}
