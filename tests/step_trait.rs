//! Steps written as types: the guide's `SmartAPIStep` backoff strategy,
//! and where non-async steps run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactor::{
    async_trait, input, step, Arguments, Backoff, Compensation, Context, Inputs, Outcome, Reactor,
    Reason, Step, StepSpec,
};

/// The errors of a simulated HTTP API.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("rate limited")]
    RateLimit { retry_after: Option<u64> },
    #[error("service unavailable")]
    ServiceUnavailable,
    #[error("not found")]
    NotFound,
}

/// Answers with the scripted responses, one per call.
struct SmartApiStep {
    script: Mutex<Vec<Result<&'static str, ApiError>>>,
    calls: AtomicU32,
}

#[async_trait]
impl Step for SmartApiStep {
    async fn run(&self, _args: Arguments, _ctx: Context) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.script.lock().unwrap().remove(0) {
            Ok(body) => Outcome::ok(body),
            Err(e) => Outcome::error(e),
        }
    }

    fn can_compensate(&self) -> bool {
        true
    }

    async fn compensate(&self, error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        match error.downcast_ref::<ApiError>() {
            Some(ApiError::RateLimit { .. } | ApiError::ServiceUnavailable) => {
                Compensation::Retry(None)
            }
            _ => Compensation::Fail, // don't retry permanent errors
        }
    }

    fn backoff(&self, reason: Option<&Reason>, _args: &Arguments, ctx: &Context) -> Backoff {
        match reason.and_then(|r| r.downcast_ref::<ApiError>()) {
            // Respect the server's Retry-After.
            Some(ApiError::RateLimit {
                retry_after: Some(s),
            }) => Backoff::millis((s + 1) * 1000),
            Some(ApiError::RateLimit { retry_after: None }) => Backoff::millis(30_000),
            // Exponential, capped at a minute.
            Some(ApiError::ServiceUnavailable) => {
                Backoff::millis((2_u64.pow(ctx.current_try()) * 1000).min(60_000))
            }
            _ => Backoff::Now,
        }
    }
}

fn api(script: Vec<Result<&'static str, ApiError>>) -> (Arc<SmartApiStep>, Reactor) {
    let s = Arc::new(SmartApiStep {
        script: Mutex::new(script),
        calls: AtomicU32::new(0),
    });
    let reactor = Reactor::builder("api")
        .input("url")
        .add(
            step("fetch")
                .argument("url", input("url"))
                .implementation_arc(s.clone()),
        )
        .returns("fetch")
        .build()
        .unwrap();
    (s, reactor)
}

#[tokio::test(start_paused = true)]
async fn transient_errors_retry_after_their_backoff() {
    let (s, reactor) = api(vec![
        Err(ApiError::RateLimit {
            retry_after: Some(2),
        }),
        Err(ApiError::ServiceUnavailable),
        Ok("body"),
    ]);
    let started = tokio::time::Instant::now();
    let out = reactor
        .run(Inputs::new().with("url", "http://localhost/x".to_string()))
        .await
        .unwrap();
    assert_eq!(*out.get::<&str>().unwrap(), "body");
    assert_eq!(s.calls.load(Ordering::SeqCst), 3);
    // 3 s for the Retry-After of 2 s, then 2^1 s for the outage.
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let (s, reactor) = api(vec![Err(ApiError::NotFound), Ok("never")]);
    let err = reactor
        .run(Inputs::new().with("url", "http://localhost/x".to_string()))
        .await
        .unwrap_err();
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    assert!(err
        .as_run_error()
        .unwrap()
        .find_reason::<ApiError>()
        .is_some());
}

/// (step, task id) of each run.
type TaskIds = Arc<Mutex<Vec<(String, Option<tokio::task::Id>)>>>;

fn recording(name: &str, ids: &TaskIds, run_async: bool) -> StepSpec {
    let ids = ids.clone();
    step(name.to_string())
        .run_async(run_async)
        .run(move |_, ctx| {
            let ids = ids.clone();
            async move {
                // Where the attempt goes on once it has awaited (an
                // awaiting step starts in the coordinator either way).
                tokio::task::yield_now().await;
                ids.lock()
                    .unwrap()
                    .push((ctx.step_name().to_string(), tokio::task::try_id()));
                Ok(())
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_async_steps_run_in_the_coordinator() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let reactor = Reactor::builder("where")
        .add(recording("sync_a", &ids, false))
        .add(recording("sync_b", &ids, false))
        .add(recording("async_c", &ids, true))
        .add(recording("async_d", &ids, true))
        .add(
            step("end")
                .wait_for("sync_a")
                .wait_for("sync_b")
                .wait_for("async_c")
                .wait_for("async_d")
                .run_sync(|_, _| Ok(())),
        )
        .returns("end")
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap();
    let ids = ids.lock().unwrap();
    let id = |n: &str| ids.iter().find(|(s, _)| s == n).unwrap().1;
    assert_eq!(
        id("sync_a"),
        id("sync_b"),
        "both run in the coordinator task"
    );
    assert_ne!(id("async_c"), id("sync_a"));
    assert_ne!(id("async_c"), id("async_d"));
}

/// Defines `compensate` and `undo`, and neither `can_*` switch.
struct Forgetful {
    log: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

#[async_trait]
impl Step for Forgetful {
    async fn run(&self, _args: Arguments, _ctx: Context) -> Outcome {
        if self.fail {
            Outcome::error("boom")
        } else {
            Outcome::ok(1_i64)
        }
    }

    async fn compensate(&self, _error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        self.log.lock().unwrap().push("compensated".to_string());
        Compensation::Fail
    }

    async fn undo(
        &self,
        _value: reactor::Value,
        _args: Arguments,
        _ctx: Context,
    ) -> reactor::UndoOutcome {
        self.log.lock().unwrap().push("undone".to_string());
        reactor::UndoOutcome::Done
    }
}

#[tokio::test]
async fn defining_compensate_or_undo_is_enough() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let reactor = Reactor::builder("r")
        .add(StepSpec::new(
            "ok",
            Forgetful {
                log: log.clone(),
                fail: false,
            },
        ))
        .add(
            StepSpec::new(
                "bad",
                Forgetful {
                    log: log.clone(),
                    fail: true,
                },
            )
            .wait_for("ok"),
        )
        .returns("bad")
        .build()
        .unwrap();
    reactor.run(Inputs::new()).await.unwrap_err();
    assert_eq!(*log.lock().unwrap(), ["compensated", "undone"]);
}
