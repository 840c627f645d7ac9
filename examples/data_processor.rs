//! The performance guide's first example, `DataProcessor`: three independent
//! fetches run concurrently, then `combine_data` waits for all three.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example data_processor
//! ```
//!
//! The fetches are simulated with timers (120, 80 and 100 ms), so the whole
//! run takes about as long as the slowest fetch, not their sum. The example
//! prints the combined result and how long each step took, measured by a
//! middleware that listens to the run's events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reactor::{input, result, step, Event, EventKind, Inputs, Middleware, Reactor};

#[derive(Clone, Debug)]
struct Profile {
    id: u64,
    name: String,
}

#[derive(Clone, Debug)]
struct Preferences {
    id: u64,
    theme: &'static str,
}

#[derive(Clone, Debug)]
struct Activity {
    id: u64,
    logins: u32,
}

#[derive(Debug)]
struct Combined {
    id: u64,
    name: String,
    theme: &'static str,
    logins: u32,
}

async fn fetch_user_profiles(ids: &[u64]) -> Vec<Profile> {
    tokio::time::sleep(Duration::from_millis(120)).await;
    ids.iter()
        .map(|&id| Profile {
            id,
            name: format!("user-{id}"),
        })
        .collect()
}

async fn fetch_user_preferences(ids: &[u64]) -> Vec<Preferences> {
    tokio::time::sleep(Duration::from_millis(80)).await;
    ids.iter()
        .map(|&id| Preferences {
            id,
            theme: if id % 2 == 0 { "dark" } else { "light" },
        })
        .collect()
}

async fn fetch_user_activity(ids: &[u64]) -> Vec<Activity> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    ids.iter()
        .map(|&id| Activity {
            id,
            logins: (id * 7 % 11) as u32,
        })
        .collect()
}

/// Records how long each step took, from the run's events.
#[derive(Default)]
struct StepTimings(Mutex<BTreeMap<String, Duration>>);

impl Middleware for StepTimings {
    fn on_event(&self, event: &Event<'_>) {
        if let (Some(step), EventKind::StepComplete { duration, .. }) = (event.step, &event.kind) {
            self.0.lock().unwrap().insert(step.to_string(), *duration);
        }
    }
}

fn data_processor() -> Result<Reactor, reactor::Error> {
    Reactor::builder("DataProcessor")
        .input("user_ids")
        .add(
            step("fetch_profiles")
                .argument("user_ids", input("user_ids"))
                .run(|args, _ctx| async move {
                    let ids = args.get::<Vec<u64>>("user_ids")?;
                    Ok(fetch_user_profiles(ids).await)
                }),
        )
        .add(
            step("fetch_preferences")
                .argument("user_ids", input("user_ids"))
                .run(|args, _ctx| async move {
                    let ids = args.get::<Vec<u64>>("user_ids")?;
                    Ok(fetch_user_preferences(ids).await)
                }),
        )
        .add(
            step("fetch_activity")
                .argument("user_ids", input("user_ids"))
                .run(|args, _ctx| async move {
                    let ids = args.get::<Vec<u64>>("user_ids")?;
                    Ok(fetch_user_activity(ids).await)
                }),
        )
        .add(
            step("combine_data")
                .argument("profiles", result("fetch_profiles"))
                .argument("preferences", result("fetch_preferences"))
                .argument("activity", result("fetch_activity"))
                .run_sync(|args, _ctx| {
                    let profiles = args.get::<Vec<Profile>>("profiles")?;
                    let preferences = args.get::<Vec<Preferences>>("preferences")?;
                    let activity = args.get::<Vec<Activity>>("activity")?;
                    let combined: Vec<Combined> = profiles
                        .iter()
                        .map(|p| Combined {
                            id: p.id,
                            name: p.name.clone(),
                            theme: preferences
                                .iter()
                                .find(|x| x.id == p.id)
                                .map_or("default", |x| x.theme),
                            logins: activity
                                .iter()
                                .find(|x| x.id == p.id)
                                .map_or(0, |x| x.logins),
                        })
                        .collect();
                    Ok(combined)
                }),
        )
        .returns("combine_data")
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reactor = data_processor()?;
    let timings = Arc::new(StepTimings::default());
    let started = Instant::now();
    let result = reactor
        .run(Inputs::new().with("user_ids", vec![1_u64, 2, 3, 4, 5]))
        .max_concurrency(10) // at most 10 steps running concurrently
        .middleware(timings.clone())
        .await?;
    let elapsed = started.elapsed();

    println!("DataProcessor result:");
    for user in result.get::<Vec<Combined>>()? {
        println!(
            "  user {:>2}  {:<8} theme={:<6} logins={}",
            user.id, user.name, user.theme, user.logins
        );
    }
    println!("Step timings:");
    for (step, duration) in timings.0.lock().unwrap().iter() {
        println!("  {step:<18} {:>8.2} ms", duration.as_secs_f64() * 1e3);
    }
    println!(
        "Whole run: {:.2} ms (the fetches ran concurrently: the sum of their timers is 300 ms)",
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
