//! The performance guide's `SmartAPIStep` ("Backoff Strategies for External
//! Services: Choosing the Right Backoff Strategy"): a step that GETs a URL
//! and classifies what went wrong, so that only transient failures are
//! retried, each after the backoff that suits it.
//!
//! | response | error | compensate | backoff |
//! |---|---|---|---|
//! | 200 | (the body is the result) | | |
//! | 429 with `Retry-After: s` | `rate_limit` | retry | `(s + 1)` seconds |
//! | 429 without it | `rate_limit` | retry | a conservative 30 s |
//! | 503 | `service_unavailable` | retry | `2^try` s + up to 1 s of jitter, capped at 60 s |
//! | client timeout | `network_timeout` | retry | at once |
//! | anything else (404, connection refused, ...) | `permanent` | fail | |
//!
//! Every delay is multiplied by the step's `scale` (1.0 is real time). The
//! demo starts a real HTTP server on `127.0.0.1:0` (hyper) whose routes
//! answer 200, 429 with `Retry-After` (the first requests, then 200), 503
//! (likewise), not at all (`/slow` leaves its first request unanswered,
//! then answers at once) or 404. It fetches the first four concurrently in
//! one reactor, watches every retry through a middleware, and checks its
//! own output: each route ends with the right body, the 429 route waited
//! at least its `Retry-After`, the 503 route's delays grow and stay under
//! the cap, the slow route was retried after a timeout, and the 404 route
//! failed without a retry. Only `/slow` is fetched with a short client
//! timeout (500 ms with `--quick`, 2 s at real time); every other route
//! gets 30 s, so that on a slow or loaded machine a local request never
//! times out where the demo expects an answer. `--quick` runs at 1/200 of
//! real time; the full demo runs at real time and takes about 10 s.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example smart_api_step                       # the demo, real time
//! cargo run --release --example smart_api_step -- demo --quick       # the demo, sped up
//! cargo run --release --example smart_api_step -- list
//! cargo run --release --example smart_api_step -- describe smart_api
//! cargo run --release --example smart_api_step -- run smart_api --input url=http://127.0.0.1:8080/
//! cargo run --release --example smart_api_step -- run smart_api_local --input route=unavailable --timeline
//! ```
//!
//! `smart_api` fetches any plain-HTTP `url` (a refused connection is a
//! permanent error). `smart_api_local` starts the demo's server itself and
//! fetches one of its routes (`ok`, `rate_limited`, `unavailable`, `slow`,
//! anything else answers 404), each failing once before it succeeds, at
//! real time.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check, Jitter};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reactor::{
    async_trait, input, result, step, Arguments, Backoff, BoxError, Compensation, Context, Event,
    EventKind, Inputs, Middleware, Outcome, Reactor, Reason, Step, StepSpec,
};

// ---------------------------------------------------------------------------
// The step
// ---------------------------------------------------------------------------

/// Why a fetch failed: the guide's `%{type: ...}` maps.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
enum ApiError {
    /// 429 Too Many Requests, with the `Retry-After` seconds if given.
    #[error("rate_limit{}", retry_after.map_or(String::new(), |s| format!(" (Retry-After: {s} s)")))]
    RateLimit { retry_after: Option<u64> },
    /// 503 Service Unavailable.
    #[error("service_unavailable")]
    ServiceUnavailable,
    /// The client gave up waiting.
    #[error("network_timeout")]
    NetworkTimeout,
    /// Anything else: not worth retrying.
    #[error("permanent: {message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl ApiError {
    /// Whether a retry may succeed (the guide's `compensate`).
    fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimit { .. } | ApiError::ServiceUnavailable | ApiError::NetworkTimeout
        )
    }
}

/// Without a `Retry-After` header, a rate limit waits this long.
const RATE_LIMIT_DEFAULT_MS: u64 = 30_000;
/// The first delay after a 503, doubled on every try.
const UNAVAILABLE_BASE_MS: u64 = 1_000;
/// The most a 503 waits.
const UNAVAILABLE_CAP_MS: u64 = 60_000;
/// The most jitter added to a 503's delay.
const JITTER_MAX_MS: u64 = 1_000;

/// The guide's `backoff/4`, in real-time milliseconds: `None` is `:now`.
/// `current_try` is the number of retries already made (0 after the first
/// attempt failed); `jitter_ms` is a draw from `1..=JITTER_MAX_MS`.
fn backoff_ms(error: &ApiError, current_try: u32, jitter_ms: u64) -> Option<u64> {
    match error {
        // Respect the server's Retry-After header (plus a second of margin).
        ApiError::RateLimit {
            retry_after: Some(seconds),
        } => Some(seconds.saturating_add(1).saturating_mul(1_000)),
        // No Retry-After header: a conservative fixed delay.
        ApiError::RateLimit { retry_after: None } => Some(RATE_LIMIT_DEFAULT_MS),
        // Service temporarily down: exponential backoff with jitter, capped.
        ApiError::ServiceUnavailable => {
            let base = 2_u64
                .saturating_pow(current_try)
                .saturating_mul(UNAVAILABLE_BASE_MS);
            Some(base.saturating_add(jitter_ms).min(UNAVAILABLE_CAP_MS))
        }
        ApiError::NetworkTimeout | ApiError::Permanent { .. } => None,
    }
}

/// `SmartAPIStep`: GETs the argument `url` and returns the body.
#[derive(Clone)]
struct SmartApiStep {
    client: reqwest::Client,
    /// Multiplies every delay: 1.0 is real time.
    scale: f64,
    jitter: Arc<Jitter>,
}

impl SmartApiStep {
    /// A step whose client gives up after `timeout`, waiting `scale` times
    /// the guide's delays.
    fn new(timeout: Duration, scale: f64) -> Result<SmartApiStep, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(SmartApiStep {
            client,
            scale,
            jitter: Arc::new(Jitter::new()),
        })
    }

    /// `ms` real-time milliseconds at the step's scale (a delay too long
    /// for a `Duration` is the longest one; a negative or NaN scale, none).
    fn scaled(&self, ms: u64) -> Duration {
        Duration::try_from_secs_f64((ms as f64 / 1_000.0 * self.scale).max(0.0))
            .unwrap_or(Duration::MAX)
    }

    async fn fetch(&self, url: &str) -> Result<String, ApiError> {
        let response = self.client.get(url).send().await.map_err(classify)?;
        match response.status().as_u16() {
            200 => response.text().await.map_err(classify),
            429 => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Err(ApiError::RateLimit { retry_after })
            }
            503 => Err(ApiError::ServiceUnavailable),
            status => Err(ApiError::Permanent {
                status: Some(status),
                message: format!("{url} answered {}", response.status()),
            }),
        }
    }
}

/// A transport error: a timeout is transient, anything else permanent.
fn classify(error: reqwest::Error) -> ApiError {
    if error.is_timeout() {
        ApiError::NetworkTimeout
    } else {
        ApiError::Permanent {
            status: None,
            message: error.to_string(),
        }
    }
}

#[async_trait]
impl Step for SmartApiStep {
    async fn run(&self, args: Arguments, _ctx: Context) -> Outcome {
        let url = match args.get::<String>("url") {
            Ok(url) => url,
            Err(e) => return Outcome::error(e),
        };
        match self.fetch(url).await {
            Ok(body) => Outcome::ok(body),
            Err(error) => Outcome::Error(Reason::new(error)),
        }
    }

    async fn compensate(&self, error: Reason, _args: Arguments, _ctx: Context) -> Compensation {
        match error.downcast_ref::<ApiError>() {
            Some(e) if e.is_transient() => Compensation::Retry(None),
            // Don't retry permanent errors.
            _ => Compensation::Fail,
        }
    }

    /// A GET changes nothing: there is nothing to undo, so the engine need
    /// not keep the body for an undo.
    fn can_undo(&self) -> bool {
        false
    }

    fn backoff(&self, reason: Option<&Reason>, _args: &Arguments, ctx: &Context) -> Backoff {
        let Some(error) = reason.and_then(|r| r.downcast_ref::<ApiError>()) else {
            return Backoff::Now;
        };
        let jitter = self.jitter.uniform(JITTER_MAX_MS);
        match backoff_ms(error, ctx.current_try(), jitter) {
            Some(ms) => Backoff::After(self.scaled(ms)),
            None => Backoff::Now,
        }
    }
}

// ---------------------------------------------------------------------------
// A local HTTP server to call
// ---------------------------------------------------------------------------

/// How the server's routes misbehave before they answer 200.
#[derive(Clone, Debug)]
struct ServerConfig {
    /// `/rate_limited` answers 429 this many times.
    rate_limited_failures: u32,
    /// ... with this `Retry-After`.
    retry_after_secs: u64,
    /// `/unavailable` answers 503 this many times.
    unavailable_failures: u32,
    /// `/slow` leaves this many requests unanswered (the client times
    /// out), then answers at once.
    slow_hangs: u32,
}

struct ServerState {
    config: ServerConfig,
    /// When each path was requested.
    hits: Mutex<BTreeMap<String, Vec<Instant>>>,
}

impl ServerState {
    /// Records a request for `path`; returns how many came before it.
    fn record(&self, path: &str) -> u32 {
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let times = hits.entry(path.to_string()).or_default();
        times.push(Instant::now());
        (times.len() - 1) as u32
    }

    async fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let before = self.record(path);
        let c = &self.config;
        match path {
            "/ok" => reply(StatusCode::OK, "hello from /ok"),
            "/rate_limited" if before < c.rate_limited_failures => {
                let mut r = reply(StatusCode::TOO_MANY_REQUESTS, "slow down");
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, c.retry_after_secs.into());
                r
            }
            "/rate_limited" => reply(StatusCode::OK, "rate limit lifted"),
            "/unavailable" if before < c.unavailable_failures => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "down for maintenance")
            }
            "/unavailable" => reply(StatusCode::OK, "service is back"),
            "/slow" => {
                if before < c.slow_hangs {
                    // Never answers: only the client's timeout ends it.
                    std::future::pending::<()>().await;
                }
                reply(StatusCode::OK, "slow but steady")
            }
            _ => reply(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// The HTTP server, listening on `127.0.0.1` until shut down (or until the
/// runtime ends).
#[derive(Clone)]
struct LocalServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl LocalServer {
    async fn start(config: ServerConfig) -> std::io::Result<LocalServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            config,
            hits: Mutex::new(BTreeMap::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.respond(req.uri().path()).await) }
                    });
                    // A client that gives up closes the connection: not our error.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(LocalServer {
            addr,
            state,
            task: Arc::new(task),
        })
    }

    fn url(&self, route: &str) -> String {
        format!("http://{}/{}", self.addr, route.trim_start_matches('/'))
    }

    /// When `route` was requested.
    fn hits(&self, route: &str) -> Vec<Instant> {
        let path = format!("/{}", route.trim_start_matches('/'));
        let hits = self.state.hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.get(&path).cloned().unwrap_or_default()
    }

    fn shutdown(&self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalServer(http://{})", self.addr)
    }
}

// ---------------------------------------------------------------------------
// Reactors
// ---------------------------------------------------------------------------

/// `smart_api(url)`: one `SmartAPIStep` (at most 5 retries).
fn smart_api(api: SmartApiStep) -> Result<Reactor, reactor::Error> {
    Reactor::builder("smart_api")
        .description("GETs `url`, retrying rate limits, 503s and timeouts with backoff")
        .input("url")
        .add(
            StepSpec::new("fetch", api)
                .argument("url", input("url"))
                .max_retries(5)
                .description("SmartAPIStep"),
        )
        .returns("fetch")
        .build()
}

/// `smart_api_local(route)`: starts the demo's server (each route failing
/// once), then fetches `route` from it at real time.
fn smart_api_local() -> Result<Reactor, BoxError> {
    let api = SmartApiStep::new(Duration::from_secs(2), 1.0)?;
    let reactor = Reactor::builder("smart_api_local")
        .description("starts a local HTTP server and GETs one of its routes with SmartAPIStep")
        .input("route")
        .add(
            step("serve")
                .description("a hyper server on 127.0.0.1:0")
                .run(|_, _| async {
                    LocalServer::start(ServerConfig {
                        rate_limited_failures: 1,
                        retry_after_secs: 1,
                        unavailable_failures: 1,
                        slow_hangs: 1,
                    })
                    .await
                    .map_err(BoxError::from)
                }),
        )
        .add(
            step("url")
                .argument("server", result("serve"))
                .argument("route", input("route"))
                .run_sync(|args, _| {
                    let server = args.get::<LocalServer>("server")?;
                    Ok(server.url(args.get::<String>("route")?))
                }),
        )
        .add(
            StepSpec::new("fetch", api)
                .argument("url", result("url"))
                .max_retries(5)
                .description("SmartAPIStep"),
        )
        .returns("fetch")
        .build()?;
    Ok(reactor)
}

/// The routes the demo fetches concurrently, each with its own step.
const ROUTES: [(&str, &str); 4] = [
    ("ok", "hello from /ok"),
    ("rate_limited", "rate limit lifted"),
    ("unavailable", "service is back"),
    ("slow", "slow but steady"),
];

/// `fetch_<route>` for each of [`ROUTES`] under `base_url` (`/slow` with
/// `slow_api`, the others with `api`), then `collect` gathers the bodies
/// by route.
fn routes_reactor(api: &SmartApiStep, slow_api: &SmartApiStep) -> Result<Reactor, reactor::Error> {
    let mut b = Reactor::builder("smart_api_routes");
    b.input("base_url");
    let mut collect = step("collect");
    for (route, _) in ROUTES {
        let name = format!("fetch_{route}");
        let api = if route == "slow" { slow_api } else { api };
        b.add(
            StepSpec::new(name.clone(), api.clone())
                .argument(
                    "url",
                    input("base_url").map(move |base: &String| format!("{base}/{route}")),
                )
                .max_retries(5),
        );
        collect = collect.argument(route, result(name));
    }
    b.add(collect.run_sync(|args, _| {
        let mut bodies = BTreeMap::new();
        for (route, body) in args.iter() {
            bodies.insert(route.to_string(), body.get::<String>()?.clone());
        }
        Ok(bodies)
    }));
    b.returns("collect").build()
}

// ---------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------

/// One retry, as the run's events report it.
#[derive(Clone, Debug)]
struct Retry {
    step: String,
    error: Option<ApiError>,
    backoff: Backoff,
}

/// A middleware keeping every `step.run.retry` event.
#[derive(Default)]
struct RetryLog(Mutex<Vec<Retry>>);

impl Middleware for RetryLog {
    fn on_event(&self, event: &Event<'_>) {
        if let (
            Some(step),
            EventKind::StepRetry {
                reason, backoff, ..
            },
        ) = (event.step, &event.kind)
        {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Retry {
                    step: step.to_string(),
                    error: reason.and_then(|r| r.downcast_ref::<ApiError>()).cloned(),
                    backoff: *backoff,
                });
        }
    }
}

impl RetryLog {
    fn of(&self, step: &str) -> Vec<Retry> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|r| r.step == step).cloned().collect()
    }
}

fn delay(b: Backoff) -> Duration {
    match b {
        Backoff::Now => Duration::ZERO,
        Backoff::After(d) => d,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The gaps between consecutive requests.
fn gaps(hits: &[Instant]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The guide's delays at real time, before any request: the 503 schedule
/// reaches its cap, rate limits honour `Retry-After`.
fn show_schedule() -> Result<(), BoxError> {
    let shown = |e: ApiError| match backoff_ms(&e, 0, 1) {
        Some(ms) => format!("{ms} ms"),
        None => "now".to_string(),
    };
    println!("Backoff schedule (real time):");
    println!(
        "  429, Retry-After: 5  -> {}",
        shown(ApiError::RateLimit {
            retry_after: Some(5)
        })
    );
    println!(
        "  429, no Retry-After  -> {}",
        shown(ApiError::RateLimit { retry_after: None })
    );
    println!(
        "  timeout              -> {}",
        shown(ApiError::NetworkTimeout)
    );
    let mut previous_low = 0;
    for t in 0..8 {
        let low = backoff_ms(&ApiError::ServiceUnavailable, t, 1).unwrap_or(0);
        let high = backoff_ms(&ApiError::ServiceUnavailable, t, JITTER_MAX_MS).unwrap_or(0);
        println!("  503 after try {t}      -> {low}..={high} ms");
        check(
            low >= previous_low && high <= UNAVAILABLE_CAP_MS,
            format!("503 delays after try {t} ({low}..={high} ms) shrank or passed the cap"),
        )?;
        previous_low = low;
    }
    check(
        backoff_ms(&ApiError::ServiceUnavailable, 7, 1) == Some(UNAVAILABLE_CAP_MS),
        "the 503 schedule never reached its cap",
    )
}

/// The client timeout of every route but `/slow`: long enough that a local
/// request answered at once never reaches it, however loaded the machine.
const PATIENT_TIMEOUT: Duration = Duration::from_secs(30);

async fn demo(quick: bool) -> Result<(), BoxError> {
    let (scale, slow_timeout) = if quick {
        (0.005, Duration::from_millis(500))
    } else {
        (1.0, Duration::from_secs(2))
    };
    show_schedule()?;

    let config = ServerConfig {
        rate_limited_failures: 2,
        retry_after_secs: 1,
        unavailable_failures: 3,
        slow_hangs: 1,
    };
    let server = LocalServer::start(config.clone()).await?;
    println!(
        "\nServer on http://{} ({}x real time, client timeout {} for /slow, {} for the others)",
        server.addr,
        scale,
        ms(slow_timeout),
        ms(PATIENT_TIMEOUT)
    );
    let api = SmartApiStep::new(PATIENT_TIMEOUT, scale)?;
    let slow_api = SmartApiStep::new(slow_timeout, scale)?;
    let retries = Arc::new(RetryLog::default());
    let started = Instant::now();
    let bodies = routes_reactor(&api, &slow_api)?
        .run(Inputs::new().with("base_url", format!("http://{}", server.addr)))
        .max_concurrency(4)
        .middleware(retries.clone())
        .await?;
    let elapsed = started.elapsed();
    let bodies = bodies.get::<BTreeMap<String, String>>()?;

    println!("All four routes, fetched concurrently, in {}:", ms(elapsed));
    for (route, expected) in ROUTES {
        let step = format!("fetch_{route}");
        let hits = server.hits(route);
        let body = bodies.get(route).map(String::as_str).unwrap_or("<none>");
        println!("  /{route:<13} {} request(s) -> {body:?}", hits.len());
        for (r, gap) in retries.of(&step).iter().zip(
            gaps(&hits)
                .into_iter()
                .chain(std::iter::repeat(Duration::ZERO)),
        ) {
            let error = r
                .error
                .as_ref()
                .map_or("?".to_string(), ToString::to_string);
            println!(
                "      retry after {error}: backoff {}, next request {} later",
                ms(delay(r.backoff)),
                ms(gap)
            );
        }
        check(
            body == expected,
            format!("/{route} returned {body:?}, expected {expected:?}"),
        )?;
    }

    // 429: every retry honoured Retry-After (+1 s), scaled. (Each check
    // counts the retries after the error it is about, nothing else.)
    let limited = retries.of("fetch_rate_limited");
    let retry_after = api.scaled(config.retry_after_secs * 1_000);
    let guide_delay = api.scaled((config.retry_after_secs + 1) * 1_000);
    check(
        limited
            .iter()
            .filter(|r| {
                matches!(
                    r.error,
                    Some(ApiError::RateLimit {
                        retry_after: Some(_)
                    })
                )
            })
            .count()
            == config.rate_limited_failures as usize,
        format!(
            "expected {} rate-limit retries, saw {limited:?}",
            config.rate_limited_failures
        ),
    )?;
    for r in limited
        .iter()
        .filter(|r| matches!(r.error, Some(ApiError::RateLimit { .. })))
    {
        check(
            delay(r.backoff) == guide_delay,
            format!(
                "a rate limit backed off {:?}, expected {guide_delay:?}",
                r.backoff
            ),
        )?;
    }
    let hits = server.hits("rate_limited");
    for gap in gaps(&hits)
        .into_iter()
        .take(config.rate_limited_failures as usize)
    {
        check(
            gap >= retry_after,
            format!(
                "/rate_limited was requested again after {gap:?}, before its Retry-After ({retry_after:?})"
            ),
        )?;
    }

    // 503: delays grow, stay under the cap, and were waited out.
    let unavailable: Vec<Duration> = retries
        .of("fetch_unavailable")
        .iter()
        .filter(|r| r.error == Some(ApiError::ServiceUnavailable))
        .map(|r| delay(r.backoff))
        .collect();
    check(
        unavailable.len() == config.unavailable_failures as usize,
        format!(
            "expected {} 503 retries, saw {unavailable:?}",
            config.unavailable_failures
        ),
    )?;
    check(
        unavailable.windows(2).all(|w| w[0] < w[1]),
        format!("503 backoffs did not grow: {unavailable:?}"),
    )?;
    let cap = api.scaled(UNAVAILABLE_CAP_MS);
    check(
        unavailable.iter().all(|d| *d <= cap),
        format!("a 503 backoff passed the cap {cap:?}: {unavailable:?}"),
    )?;
    let hits = server.hits("unavailable");
    for (gap, wanted) in gaps(&hits).into_iter().zip(&unavailable) {
        check(
            gap >= *wanted,
            format!("/unavailable retried after {gap:?}, before its backoff {wanted:?}"),
        )?;
    }

    // Slow: the first request (never answered) timed out and was retried
    // at once.
    let slow = retries.of("fetch_slow");
    check(
        slow.first().is_some_and(|r| {
            r.error == Some(ApiError::NetworkTimeout) && r.backoff == Backoff::Now
        }),
        format!("/slow was not retried at once after a timeout: {slow:?}"),
    )?;
    check(
        server.hits("slow").len() >= 2,
        "/slow was requested only once",
    )?;

    // 404: a permanent error, not retried.
    let missing = Arc::new(RetryLog::default());
    let failed = smart_api(api.clone())?
        .run(Inputs::new().with("url", server.url("missing")))
        .middleware(missing.clone())
        .await;
    let error = match failed {
        Ok(v) => return Err(format!("/missing succeeded with {v:?}").into()),
        Err(reactor::Error::Run(run)) => run.find_reason::<ApiError>().cloned(),
        Err(other) => return Err(format!("/missing failed oddly: {other}").into()),
    };
    println!(
        "  /missing       {} request(s) -> {}",
        server.hits("missing").len(),
        error.as_ref().map_or("?".to_string(), ToString::to_string)
    );
    check(
        matches!(
            error,
            Some(ApiError::Permanent {
                status: Some(404),
                ..
            })
        ),
        format!("/missing failed with {error:?}, expected a permanent 404"),
    )?;
    // Only a timeout (none is expected within 30 s) may have been retried;
    // the 404 never is.
    let missing_retries = missing.of("fetch");
    let timeouts = missing_retries
        .iter()
        .filter(|r| r.error == Some(ApiError::NetworkTimeout))
        .count();
    check(
        !missing_retries
            .iter()
            .any(|r| matches!(r.error, Some(ApiError::Permanent { .. }))),
        format!("/missing was retried after a permanent error: {missing_retries:?}"),
    )?;
    check(
        server.hits("missing").len() == 1 + timeouts,
        format!(
            "/missing was requested {} times, after {timeouts} timeout(s)",
            server.hits("missing").len()
        ),
    )?;

    server.shutdown();
    println!("\nAll checks passed.");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let reactors = SmartApiStep::new(Duration::from_secs(2), 1.0)
        .map_err(BoxError::from)
        .and_then(|api| Ok((smart_api(api)?, smart_api_local()?)));
    let (remote, local) = match reactors {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    reactor::cli::App::new("smart_api_step")
        .about("The performance guide's SmartAPIStep: HTTP errors classified, each retried with the backoff that suits it")
        .reactor(reactor::cli::Entry::new(remote).input::<String>("url"))
        .reactor(reactor::cli::Entry::new(local).input::<String>("route"))
        .demo(demo)
        .main()
        .await
}
