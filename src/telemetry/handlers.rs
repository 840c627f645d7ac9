//! [`Handlers`]: functions attached to named telemetry events.

use std::sync::{Arc, RwLock};

use super::TelemetryEvent;
use crate::event::Event;
use crate::middleware::Middleware;

type Handler = Arc<dyn Fn(&TelemetryEvent<'_>) + Send + Sync>;

struct Attached {
    id: String,
    events: Vec<String>,
    handler: Handler,
}

/// A middleware calling the functions attached to telemetry events (see
/// [`crate::telemetry`] for the names): the guide's
/// `:telemetry.attach_many`. Handlers run synchronously on the task where
/// the event happens; a panicking one is an error of the run, as any
/// middleware's.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use reactor::telemetry::Handlers;
/// use reactor::{step, Inputs, Reactor};
///
/// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
/// let telemetry = Arc::new(Handlers::new());
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// telemetry.attach_many(
///     "reactor-performance",
///     &["reactor.run.stop", "reactor.step.run.stop"],
///     move |event| {
///         let took = event.measurements.duration.unwrap();
///         let what = event.metadata.step.unwrap_or(event.metadata.reactor);
///         s.lock().unwrap().push(format!("{} {what} in {:?}", event.name, took));
///     },
/// );
/// let reactor = Reactor::builder("monitored")
///     .add(step("slow_operation").run_sync(|_, _| Ok(42)))
///     .returns("slow_operation")
///     .middleware_arc(telemetry.clone())
///     .build()?;
/// reactor.run(Inputs::new()).await?;
/// let seen = seen.lock().unwrap();
/// assert!(seen[0].starts_with("reactor.step.run.stop slow_operation in"));
/// assert!(seen[1].starts_with("reactor.run.stop monitored in"));
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Handlers {
    attached: RwLock<Vec<Attached>>,
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Attaches `handler` to the events named in `events`, under `id` (an
    /// earlier handler of that id is replaced).
    pub fn attach_many<F>(&self, id: &str, events: &[&str], handler: F)
    where
        F: Fn(&TelemetryEvent<'_>) + Send + Sync + 'static,
    {
        let mut attached = self.attached.write().unwrap_or_else(|p| p.into_inner());
        attached.retain(|a| a.id != id);
        attached.push(Attached {
            id: id.to_string(),
            events: events.iter().map(|e| e.to_string()).collect(),
            handler: Arc::new(handler),
        });
    }

    /// Attaches `handler` to one event.
    pub fn attach<F>(&self, id: &str, event: &str, handler: F)
    where
        F: Fn(&TelemetryEvent<'_>) + Send + Sync + 'static,
    {
        self.attach_many(id, &[event], handler);
    }

    /// Detaches the handler attached under `id`; whether there was one.
    pub fn detach(&self, id: &str) -> bool {
        let mut attached = self.attached.write().unwrap_or_else(|p| p.into_inner());
        let before = attached.len();
        attached.retain(|a| a.id != id);
        attached.len() != before
    }
}

impl Middleware for Handlers {
    fn on_event(&self, event: &Event<'_>) {
        let telemetry = TelemetryEvent::of(event);
        // Called without the lock held, so a handler may attach or detach.
        let handlers: Vec<Handler> = {
            let attached = self.attached.read().unwrap_or_else(|p| p.into_inner());
            attached
                .iter()
                .filter(|a| a.events.iter().any(|e| e == telemetry.name))
                .map(|a| a.handler.clone())
                .collect()
        };
        for handler in handlers {
            handler(&telemetry);
        }
    }
}
