//! The default limits: a run given no pool and no `max_concurrency` holds
//! its CPU work (plain closures, `cpu_bound` steps) to the cores and its
//! awaiting steps to 10,000 in flight; a limit, a pool, or an outer run that has
//! them holds every step.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fan_out, Gauge};
use reactor::kinds::compose;
use reactor::{result, step, Concurrency, ConcurrencyPool, Inputs, Reactor, RunRequest};
use tokio::sync::Barrier;

/// `n` async steps that each wait until all `n` have started.
fn meeting(name: &str, n: usize) -> Reactor {
    let barrier = Arc::new(Barrier::new(n));
    fan_out(name, n, |i| {
        let barrier = barrier.clone();
        step(format!("s{i}")).run(move |_, _| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Ok(())
            }
        })
    })
}

/// `n` async steps counted by `gauge`, each yielding a few times.
fn counted(n: usize, gauge: &Arc<Gauge>) -> Reactor {
    fan_out("counted", n, |i| {
        let gauge = gauge.clone();
        step(format!("s{i}")).run(move |_, _| {
            let gauge = gauge.clone();
            async move {
                gauge.enter();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                gauge.exit();
                Ok(())
            }
        })
    })
}

/// The most of 20 counted async steps at once, in a run set up by `with`.
async fn peak_of(with: impl FnOnce(RunRequest) -> RunRequest) -> usize {
    let gauge = Arc::new(Gauge::default());
    with(counted(20, &gauge).run(Inputs::new())).await.unwrap();
    gauge.max()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_steps_are_not_held_to_the_cores_by_default() {
    // 64 steps that can only finish together: under a limit of the core
    // count they would wait for each other forever (the timeout only
    // turns that hang into a failure).
    let reactor = meeting("meeting", 64);
    let out = tokio::time::timeout(Duration::from_secs(60), reactor.run(Inputs::new())).await;
    let out = out.expect("all 64 awaiting steps ran at once").unwrap();
    assert_eq!(*out.get::<usize>().unwrap(), 64);
}

// More workers than cores, and steps long enough to overlap: only the
// limit keeps them to the cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn cpu_work_is_held_to_the_cores_by_default() {
    for cpu_bound in [false, true] {
        let gauge = Arc::new(Gauge::default());
        let reactor = fan_out("cpu", 32, |i| {
            let gauge = gauge.clone();
            let s = step(format!("s{i}"));
            let s = if cpu_bound { s.cpu_bound() } else { s };
            s.run_sync(move |_, _| {
                gauge.enter();
                let until = std::time::Instant::now() + Duration::from_millis(2);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                gauge.exit();
                Ok(())
            })
        });
        reactor.run(Inputs::new()).await.unwrap();
        assert!(
            gauge.max() <= cores(),
            "cpu_bound {cpu_bound}: {} at once",
            gauge.max()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_or_a_pool_holds_awaiting_steps() {
    let peak = peak_of(|r| r.max_concurrency(3)).await;
    assert!(peak <= 3, "{peak} at once under a limit of 3");

    let pool = ConcurrencyPool::new(2);
    let peak = peak_of(|r| r.pool(pool.clone())).await;
    assert!(peak <= 2, "{peak} at once on a pool of 2");
    assert_eq!(pool.available(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_run_follows_its_outer_run() {
    // Unlimited outside, unlimited inside: the 16 meet.
    let outer = Reactor::builder("outer")
        .add(compose("inner", meeting("inner", 16)))
        .returns("inner")
        .build()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), outer.run(Inputs::new())).await;
    assert_eq!(
        *out.expect("the nested steps ran at once")
            .unwrap()
            .get::<usize>()
            .unwrap(),
        16
    );

    // A limit outside holds the nested run's steps too.
    let gauge = Arc::new(Gauge::default());
    let outer = Reactor::builder("outer")
        .add(compose("inner", counted(20, &gauge)))
        .returns("inner")
        .build()
        .unwrap();
    outer.run(Inputs::new()).max_concurrency(2).await.unwrap();
    assert!(
        gauge.max() <= 2,
        "{} nested steps at once under a limit of 2",
        gauge.max()
    );
}

/// A service whose latency grows with the square of the calls in flight
/// past `knee`.
#[derive(Default)]
struct Service {
    in_flight: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl Service {
    async fn call(&self, knee: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        let load = (n as f64 / knee as f64).max(1.0);
        tokio::time::sleep(Duration::from_secs_f64(0.010 * load * load)).await;
        self.in_flight.fetch_sub(1, SeqCst);
    }
}

/// Records the adaptive limit's values.
#[derive(Default)]
struct Limits(std::sync::Mutex<Vec<usize>>);

impl reactor::Middleware for Limits {
    fn on_event(&self, event: &reactor::Event<'_>) {
        if let reactor::EventKind::ConcurrencyLimit { limit } = event.kind {
            self.0.lock().unwrap().push(limit);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_backs_off_when_latency_grows() {
    let service = Arc::new(Service::default());
    let reactor = fan_out("calls", 400, |i| {
        let service = service.clone();
        step(format!("s{i}")).run(move |_, _| {
            let service = service.clone();
            async move {
                service.call(8).await;
                Ok(i)
            }
        })
    });
    let limits = Arc::new(Limits::default());
    let out = reactor
        .run(Inputs::new())
        .concurrency(Concurrency::Auto)
        .middleware(limits.clone())
        .await
        .unwrap();
    assert_eq!(*out.get::<usize>().unwrap(), 400);
    let limits = limits.0.lock().unwrap().clone();
    assert!(!limits.is_empty(), "the limit's changes are reported");
    assert!(
        limits.windows(2).any(|w| w[1] < w[0]),
        "it came down as latency grew: {limits:?}"
    );
    let peak = service.peak.load(std::sync::atomic::Ordering::SeqCst);
    let highest = limits.iter().copied().max().unwrap().max(10);
    assert!(
        peak <= highest,
        "{peak} calls in flight, the limit reached {highest}"
    );
    assert!(peak < 100, "held well below the 400 that could run: {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_concurrency_is_a_limit() {
    let peak = peak_of(|r| r.concurrency(3)).await;
    assert!(peak <= 3, "{peak} at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_never_lifts_a_limit_or_a_pool() {
    let peak = peak_of(|r| r.concurrency(Concurrency::Auto).max_concurrency(3)).await;
    assert!(peak <= 3, "{peak} at once under a limit of 3");

    let pool = ConcurrencyPool::new(2);
    let peak = peak_of(|r| r.pool(pool).concurrency(Concurrency::Auto)).await;
    assert!(peak <= 2, "{peak} at once on a pool of 2");
}

#[tokio::test(flavor = "current_thread")]
async fn a_run_driven_by_its_caller_lets_the_callers_other_work_run() {
    // 100 plain steps in a chain, each busy for 100 µs, run in the task
    // awaiting the run; beside it in the same task, a loop that only
    // advances when the task gets back to it.
    let beside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut b = Reactor::builder("chain");
    for i in 0..100 {
        let s = step(format!("s{i}"));
        let s = if i == 0 {
            s
        } else {
            s.argument("p", result(format!("s{}", i - 1)))
        };
        let beside = beside.clone();
        b.add(s.run_sync(move |_, _| {
            let until = std::time::Instant::now() + Duration::from_micros(100);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok(beside.load(std::sync::atomic::Ordering::SeqCst))
        }));
    }
    let reactor = b.returns("s99").build().unwrap();
    let counter = beside.clone();
    let (out, ()) = tokio::join!(reactor.run(Inputs::new()), async move {
        for _ in 0..1_000 {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    });
    let seen_by_the_last_step = *out.unwrap().get::<usize>().unwrap();
    assert!(
        seen_by_the_last_step > 1,
        "the loop beside the run never advanced while it ran ({seen_by_the_last_step})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_fan_out_holds_at_most_10_000_awaiting_steps_by_default() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    const STEPS: usize = 10_050;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let reactor = fan_out("huge", STEPS, |i| {
        let (in_flight, gate) = (in_flight.clone(), gate.clone());
        step(format!("s{i}")).run(move |_, _| {
            let (in_flight, gate) = (in_flight.clone(), gate.clone());
            async move {
                in_flight.fetch_add(1, SeqCst);
                gate.acquire().await.unwrap().forget();
                Ok(())
            }
        })
    });
    let run = tokio::spawn(async move { reactor.run(Inputs::new()).await });
    // Wait until 10,000 are in, then give any more the time to come in.
    while in_flight.load(SeqCst) < 10_000 {
        tokio::task::yield_now().await;
    }
    for _ in 0..1_000 {
        tokio::task::yield_now().await;
    }
    let peak = in_flight.load(SeqCst);
    gate.add_permits(STEPS);
    assert_eq!(*run.await.unwrap().unwrap().get::<usize>().unwrap(), STEPS);
    assert_eq!(peak, 10_000, "awaiting steps in flight at once");
}
