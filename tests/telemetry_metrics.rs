//! The metrics middleware, recorded through the `metrics` facade (a test
//! binary of its own: it installs the global recorder).

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use reactor::telemetry::Metrics;
use reactor::{step, Compensation, ConcurrencyPool, Inputs, Outcome, Reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_steps_retries_compensations_undos_and_pools_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let ok = Reactor::builder("ok")
        .add(step("retry_once").run_sync(|_, ctx| {
            Ok(if ctx.current_try() == 0 {
                Outcome::Retry(None)
            } else {
                Outcome::ok(1_i64)
            })
        }))
        .add(
            step("compensated")
                .run_sync(|_, _| Err::<i64, _>("boom".into()))
                .compensate(|_, _, _| async { Compensation::Continue(reactor::Value::new(2_i64)) }),
        )
        .add(
            step("sum")
                .wait_for("retry_once")
                .wait_for("compensated")
                .run(|_, _| async { Ok(3_i64) }),
        )
        .returns("sum")
        .middleware(Metrics::new())
        .build()
        .unwrap();
    let pool = ConcurrencyPool::named("shared", 4);
    ok.run(Inputs::new()).pool(pool).await.unwrap();
    let failing = Reactor::builder("failing")
        .add(
            step("done")
                .run_sync(|_, _| Ok(1_i64))
                .undo(|_, _, _| async { Ok(()) }),
        )
        .add(
            step("bad")
                .wait_for("done")
                .run_sync(|_, _| Err::<(), _>("bad".into())),
        )
        .returns("bad")
        .middleware(Metrics::new())
        .build()
        .unwrap();
    failing.run(Inputs::new()).await.unwrap_err();

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut histograms: HashMap<String, usize> = HashMap::new();
    let mut gauges: HashMap<String, f64> = HashMap::new();
    for (key, _, _, value) in snapshots.snapshot().into_vec() {
        let mut labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                *counters.entry(name).or_default() += n;
            }
            (MetricKind::Histogram, DebugValue::Histogram(v)) => {
                *histograms.entry(name).or_default() += v.len();
            }
            (MetricKind::Gauge, DebugValue::Gauge(g)) => {
                gauges.insert(name, g.into_inner());
            }
            _ => {}
        }
    }
    let c = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(
        c("reactor_runs_started_total{reactor=ok}"),
        1,
        "{counters:#?}"
    );
    assert_eq!(c("reactor_runs_total{outcome=completed,reactor=ok}"), 1);
    assert_eq!(c("reactor_runs_total{outcome=failed,reactor=failing}"), 1);
    assert_eq!(
        c("reactor_step_retries_total{reactor=ok,step=retry_once}"),
        1
    );
    assert_eq!(
        c("reactor_steps_total{outcome=retried,reactor=ok,step=retry_once}"),
        1
    );
    assert_eq!(
        c("reactor_steps_total{outcome=completed,reactor=ok,step=retry_once}"),
        1
    );
    assert_eq!(
        c("reactor_steps_total{outcome=failed,reactor=ok,step=compensated}"),
        1
    );
    assert_eq!(
        c("reactor_compensations_total{outcome=continued,reactor=ok,step=compensated}"),
        1
    );
    assert_eq!(
        c("reactor_undos_total{outcome=done,reactor=failing,step=done}"),
        1
    );
    assert!(histograms.contains_key("reactor_run_duration_seconds{outcome=completed,reactor=ok}"));
    assert!(histograms
        .contains_key("reactor_step_duration_seconds{outcome=completed,reactor=ok,step=sum}"));
    assert!(histograms.contains_key("reactor_step_queued_seconds{reactor=ok}"));
    assert_eq!(gauges.get("reactor_pool_slots{pool=shared}"), Some(&4.0));
    assert!(gauges.contains_key("reactor_pool_slots_in_use{pool=shared}"));
}
