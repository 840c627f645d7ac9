//! Keyed concurrency and rate limits on steps, local to the process:
//! they hold wherever the step runs (its own task, a sync run, a map
//! element), a skipped step takes no permit, and a key that cannot be
//! computed fails the step instead of hanging the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reactor::kinds::{element, map};
use reactor::{input, step, value, Guard, Inputs, Limit, Outcome, Reactor, Source, StepSpec};
use tokio::sync::Notify;

/// Steps in flight per key, the most seen at once, and how many entered.
#[derive(Default)]
struct Flight {
    now: Mutex<HashMap<String, (u32, u32, u32)>>,
    changed: Notify,
}

impl Flight {
    /// A step of `key` entered: its number among them, from 1.
    fn enter(&self, key: &str) -> u32 {
        let mut now = self.now.lock().unwrap();
        let e = now.entry(key.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        e.2 += 1;
        self.changed.notify_waiters();
        e.2
    }
    fn entered(&self, key: &str) -> u32 {
        self.now.lock().unwrap().get(key).map_or(0, |e| e.2)
    }
    fn leave(&self, key: &str) {
        self.now.lock().unwrap().get_mut(key).unwrap().0 -= 1;
        self.changed.notify_waiters();
    }
    fn peak(&self, key: &str) -> u32 {
        self.now.lock().unwrap().get(key).map_or(0, |e| e.1)
    }
    /// The step that entered `nth` waits for the others of its group of
    /// `n` to enter (the limit lets them in `n` at a time: without it,
    /// more would be in flight at once).
    async fn rendezvous(&self, key: &str, nth: u32, n: u32) {
        let group_full = nth.div_ceil(n) * n;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.entered(key) >= group_full {
                return;
            }
            changed.await;
        }
    }
}

fn per_customer() -> Limit {
    Limit::per_key("per_customer", 2, |args| {
        Ok(args.get::<String>("customer")?.clone())
    })
}

/// A step of `name` reading its customer from `source`, under `limit`,
/// meeting another of the same customer in flight.
fn charge(name: &str, source: Source, limit: &Limit, flight: &Arc<Flight>) -> StepSpec {
    let flight = flight.clone();
    step(name)
        .argument("customer", source)
        .limit(limit.clone())
        .run(move |a, _| {
            let flight = flight.clone();
            async move {
                let c = a.get::<String>("customer")?.clone();
                let nth = flight.enter(&c);
                flight.rendezvous(&c, nth, 2).await;
                flight.leave(&c);
                Ok(c)
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_steps_per_customer_run_at_once() {
    let limit = per_customer();
    let flight = Arc::new(Flight::default());
    let mut b = Reactor::builder("charges");
    for i in 0..8 {
        let customer = if i % 2 == 0 { "ada" } else { "bob" };
        let customer = value(customer.to_string());
        b.add(charge(&format!("c{i}"), customer, &limit, &flight));
    }
    let r = b.returns("c0").build().unwrap();
    r.run(Inputs::new()).max_concurrency(16).await.unwrap();
    assert_eq!([flight.peak("ada"), flight.peak("bob")], [2, 2]);
    assert_eq!([limit.running("ada"), limit.running("bob")], [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_limit_holds_for_map_elements() {
    let limit = per_customer();
    let flight = Arc::new(Flight::default());
    let element = charge("charge", element("charges"), &limit, &flight);
    let orders: Vec<String> = (0..12)
        .map(|i| if i % 3 == 0 { "ada" } else { "bob" }.to_string())
        .collect();
    let m = map("charges", input("orders"))
        .steps([element])
        .returns("charge")
        .batch_size(12)
        .into_step()
        .unwrap();
    let r = Reactor::builder("mapped")
        .input("orders")
        .add(m)
        .returns("charges")
        .build()
        .unwrap();
    let out = r
        .run(Inputs::new().with("orders", orders))
        .max_concurrency(16)
        .await
        .unwrap();
    assert_eq!(out.get::<Vec<reactor::Value>>().unwrap().len(), 12);
    assert_eq!([flight.peak("ada"), flight.peak("bob")], [2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_run_takes_the_same_permits() {
    let limit = Limit::per_key("one", 1, |_| Ok("k".to_string()));
    let l = limit.clone();
    let r = Reactor::builder("sync")
        .add(
            step("a")
                .limit(limit.clone())
                .run_sync(move |_, _| Ok(l.running("k"))),
        )
        .returns("a")
        .build()
        .unwrap();
    let out = r.run(Inputs::new()).run_async(false).await.unwrap();
    // Its permit was held while it ran, and given back after.
    assert_eq!(*out.get::<u32>().unwrap(), 1);
    assert_eq!(limit.running("k"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_step_takes_no_permit() {
    let limit = Limit::per_key("one", 1, |_| {
        panic!("the key is not computed for a skipped step")
    });
    let r = Reactor::builder("skip")
        .add(
            step("a")
                .limit(limit)
                .guard(|_, _| Guard::Skip(Outcome::ok(7_u32)))
                .run_sync(|_, _| Ok(0_u32)),
        )
        .returns("a")
        .build()
        .unwrap();
    assert_eq!(
        *r.run(Inputs::new()).await.unwrap().get::<u32>().unwrap(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_cannot_be_computed_fails_the_step() {
    for panics in [false, true] {
        let limit = Limit::per_key("bad", 1, move |args| {
            if panics {
                panic!("no customer");
            }
            Ok(args.get::<String>("customer")?.clone())
        });
        let r = Reactor::builder("bad")
            .add(
                step("a")
                    .limit(limit)
                    .max_retries(0)
                    .run_sync(|_, _| Ok(1_u32)),
            )
            .returns("a")
            .build()
            .unwrap();
        let err = format!("{:?}", r.run(Inputs::new()).await.unwrap_err());
        let expected = if panics { "no customer" } else { "customer" };
        assert!(err.contains(expected) && err.contains("\"a\""), "{err}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rate_limit_spaces_starts_beyond_its_burst() {
    // 2 starts an hour: 5 steps take two hours past the burst of 2
    // (measured on tokio's paused clock, which jumps to each timer).
    let limit = Limit::rate("hourly", 2, Duration::from_secs(3600));
    let mut b = Reactor::builder("rated");
    for i in 0..5 {
        b.add(
            step(format!("s{i}"))
                .limit(limit.clone())
                .run(|_, _| async { Ok(()) }),
        );
    }
    let r = b.returns("s0").build().unwrap();
    let began = tokio::time::Instant::now();
    r.run(Inputs::new()).max_concurrency(8).await.unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(3 * 1800) && took < Duration::from_secs(4 * 1800),
        "{took:?}"
    );
}
