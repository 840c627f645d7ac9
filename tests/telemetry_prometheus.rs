//! A Prometheus endpoint: the metrics middleware behind
//! `metrics-exporter-prometheus`, scraped over HTTP on 127.0.0.1 (a test
//! binary of its own: it installs the global recorder).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use metrics_exporter_prometheus::PrometheusBuilder;
use reactor::telemetry::Metrics;
use reactor::{step, Inputs, Reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_endpoint_serves_the_runs_metrics() {
    // A free port on the loopback interface.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .expect("the exporter listens on 127.0.0.1");

    let reactor = Reactor::builder("monitored")
        .add(step("slow_operation").run(|_, _| async { Ok(42_i64) }))
        .returns("slow_operation")
        .middleware(Metrics::new())
        .build()
        .unwrap();
    for _ in 0..3 {
        reactor.run(Inputs::new()).await.unwrap();
    }

    let body = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the endpoint answers")
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#"reactor_runs_total{reactor="monitored",outcome="completed"} 3"#),
        "{body}"
    );
    assert!(body.contains("reactor_run_duration_seconds"), "{body}");
    assert!(
        body.contains(r#"reactor_steps_total{reactor="monitored",step="slow_operation",outcome="completed"} 3"#),
        "{body}"
    );
}
