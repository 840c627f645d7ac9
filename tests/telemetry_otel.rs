//! Telemetry: spans exported as OpenTelemetry traces through the SDK (a
//! test binary of its own: it installs a `tracing` subscriber).

mod common;

use std::future::IntoFuture;

use common::greeter;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use reactor::kinds::compose;
use reactor::{input, result, step, Inputs, Reactor};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn spans_export_as_opentelemetry_traces_with_nested_runs_as_children() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("reactor-test")))
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let outer = Reactor::builder("outer")
        .input("name")
        .add(compose("nested", greeter()).argument("name", input("name")))
        .add(
            step("shout")
                .argument("text", result("nested"))
                .run_sync(|a, _| Ok(a.get::<String>("text")?.to_uppercase())),
        )
        .returns("shout")
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(
            outer
                .run(Inputs::new().with("name", "Marty".to_string()))
                .run_id("outer-1")
                .into_future(),
        )
        .unwrap();
    });
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "reactor.run").collect();
    let outer_run = runs
        .iter()
        .find(|s| attr(s, "reactor").as_deref() == Some("outer"))
        .expect("the outer run's span");
    assert_eq!(attr(outer_run, "run_id").as_deref(), Some("outer-1"));
    assert_eq!(attr(outer_run, "outcome").as_deref(), Some("completed"));
    let inner_run = runs
        .iter()
        .find(|s| attr(s, "reactor").as_deref() == Some("greeter"))
        .expect("the nested run's span");
    assert_eq!(
        inner_run.parent_span_id,
        outer_run.span_context.span_id(),
        "the nested run is the outer run's child"
    );
    let greet = spans
        .iter()
        .find(|s| s.name == "reactor.step" && attr(s, "step").as_deref() == Some("greet"))
        .expect("the step's span");
    assert_eq!(attr(greet, "attempt").as_deref(), Some("1"));
    assert_eq!(attr(greet, "outcome").as_deref(), Some("ok"));
    assert_eq!(attr(greet, "reactor").as_deref(), Some("greeter"));
    assert_eq!(greet.parent_span_id, inner_run.span_context.span_id());
}
