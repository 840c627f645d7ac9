//! Telemetry: handlers attached to events.

mod common;

use common::greeter;
use std::sync::{Arc, Mutex};

use reactor::telemetry::Handlers;
use reactor::Inputs;

#[tokio::test]
async fn handlers_see_run_and_step_starts_and_stops_with_measurements() {
    let telemetry = Arc::new(Handlers::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    telemetry.attach_many(
        "test",
        &[
            "reactor.run.start",
            "reactor.run.stop",
            "reactor.step.run.start",
            "reactor.step.run.stop",
        ],
        move |e| {
            s.lock().unwrap().push((
                e.name,
                e.metadata.step.map(str::to_string),
                e.metadata.run_id.to_string(),
                e.metadata.status,
                e.measurements.duration.is_some(),
            ))
        },
    );
    greeter()
        .run(Inputs::new().with("name", "Marty".to_string()))
        .run_id("r1")
        .middleware(telemetry.clone())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let names: Vec<_> = seen.iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "reactor.run.start",
            "reactor.step.run.start",
            "reactor.step.run.stop",
            "reactor.run.stop"
        ]
    );
    assert!(seen.iter().all(|e| e.2 == "r1"));
    assert_eq!(seen[2].1.as_deref(), Some("greet"));
    assert_eq!(seen[2].3, Some("ok"));
    assert!(seen[2].4 && seen[3].4, "stops carry durations");
    assert!(telemetry.detach("test"));
    assert!(!telemetry.detach("test"));
}
