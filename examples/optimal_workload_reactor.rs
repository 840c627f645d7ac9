//! The performance guide's `OptimalWorkloadReactor`: I/O and CPU work kept
//! in separate steps, run with a moderate limit (2 × cores) suited to the
//! mix. Two fetches await (simulated) services concurrently; the CPU-heavy
//! `calculate_recommendations` is marked `cpu_bound`, so it runs on the
//! blocking-work threads without stalling the awaiting steps; the result is
//! saved to a (simulated) database.
//!
//! ```text
//! cargo run --release --example optimal_workload_reactor
//! cargo run --release --example optimal_workload_reactor -- run OptimalWorkloadReactor --input 'user_ids=[1,2,3,4,5]' --timeline
//! ```

mod common;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{check, cores};
use reactor::cli::{App, Entry};
use reactor::{input, result, step, BoxError, Inputs, Reactor};

#[derive(Clone, Debug)]
struct Profile {
    id: u64,
    age: u32,
}

#[derive(Clone, Debug)]
struct Preference {
    id: u64,
    likes: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
struct Recommendation {
    user: u64,
    item: u32,
    score: u64,
}

/// The simulated database the recommendations are saved to.
type Database = Arc<Mutex<Vec<Recommendation>>>;

async fn fetch_user_profiles(ids: &[u64], latency: Duration) -> Vec<Profile> {
    tokio::time::sleep(latency).await;
    ids.iter()
        .map(|&id| Profile {
            id,
            age: 20 + (id % 50) as u32,
        })
        .collect()
}

async fn fetch_user_preferences(ids: &[u64], latency: Duration) -> Vec<Preference> {
    tokio::time::sleep(latency).await;
    ids.iter()
        .map(|&id| Preference {
            id,
            // `(id * 7 + k) % 100`, without overflowing for the largest ids.
            likes: (0..20).map(|k| ((id % 100 * 7 + k) % 100) as u32).collect(),
        })
        .collect()
}

/// CPU-heavy: scores each of 1,000 items for each user, keeps the best.
fn calculate_complex_recommendations(
    profiles: &[Profile],
    prefs: &[Preference],
) -> Vec<Recommendation> {
    profiles
        .iter()
        .map(|p| {
            let likes = prefs
                .iter()
                .find(|x| x.id == p.id)
                .map_or(&[][..], |x| &x.likes[..]);
            (0..1_000_u32)
                .map(|item| {
                    let affinity: u64 = likes
                        .iter()
                        .map(|&l| u64::from(item.abs_diff(l * 10)))
                        .sum();
                    let score = (0..50)
                        .fold(affinity + u64::from(p.age), |h, i| h.wrapping_mul(31) ^ i)
                        % 10_000;
                    Recommendation {
                        user: p.id,
                        item,
                        score,
                    }
                })
                .max_by_key(|r| (r.score, r.item))
                .expect("1,000 items")
        })
        .collect()
}

fn optimal_workload_reactor(db: Database, latency: Duration) -> Result<Reactor, reactor::Error> {
    Reactor::builder("OptimalWorkloadReactor")
        .input("user_ids")
        // I/O operations: awaiting steps (the default).
        .add(
            step("fetch_profiles")
                .argument("user_ids", input("user_ids"))
                .run(move |args, _| async move {
                    Ok(fetch_user_profiles(args.get::<Vec<u64>>("user_ids")?, latency).await)
                }),
        )
        .add(
            step("fetch_preferences")
                .argument("user_ids", input("user_ids"))
                .run(move |args, _| async move {
                    Ok(fetch_user_preferences(args.get::<Vec<u64>>("user_ids")?, latency).await)
                }),
        )
        // CPU work: off the async threads, held to the cores.
        .add(
            step("calculate_recommendations")
                .argument("profiles", result("fetch_profiles"))
                .argument("preferences", result("fetch_preferences"))
                .cpu_bound()
                .run_sync(|args, _| {
                    Ok(calculate_complex_recommendations(
                        args.get::<Vec<Profile>>("profiles")?,
                        args.get::<Vec<Preference>>("preferences")?,
                    ))
                }),
        )
        // I/O again.
        .add(
            step("save_recommendations")
                .argument("recommendations", result("calculate_recommendations"))
                .run(move |args, _| {
                    let db = db.clone();
                    async move {
                        let recs = args.get::<Vec<Recommendation>>("recommendations")?.clone();
                        tokio::time::sleep(latency).await;
                        let saved = recs.len() as u64;
                        db.lock().expect("not poisoned").extend(recs);
                        Ok(format!("saved {saved}"))
                    }
                }),
        )
        .returns("save_recommendations")
        .build()
}

#[tokio::main]
async fn main() -> ExitCode {
    let reactor = optimal_workload_reactor(Database::default(), Duration::from_millis(50))
        .expect("a valid reactor");
    App::new("optimal_workload_reactor")
        .about("I/O and CPU work in separate steps, at 2 x cores")
        .reactor(
            Entry::new(reactor)
                .input::<Vec<u64>>("user_ids")
                .configure(|run| run.max_concurrency(cores() * 2)),
        )
        .demo(demo)
        .main()
        .await
}

async fn demo(quick: bool) -> Result<(), BoxError> {
    let db = Database::default();
    let latency = Duration::from_millis(if quick { 5 } else { 50 });
    let reactor = optimal_workload_reactor(db.clone(), latency)?;
    let users: Vec<u64> = (1..=if quick { 5 } else { 200 }).collect();
    let out = reactor
        .run(Inputs::new().with("user_ids", users.clone()))
        // Balanced for a mixed workload.
        .max_concurrency(cores() * 2)
        .await?;
    let saved = db.lock().expect("not poisoned").clone();
    println!(
        "{} ({} users); the first: {:?}",
        out.get::<String>()?,
        users.len(),
        saved.first()
    );
    check(
        *out.get::<String>()? == format!("saved {}", users.len()),
        out.get::<String>()?,
    )?;
    check(
        saved.iter().map(|r| r.user).eq(users.iter().copied()),
        "one recommendation per user, in order",
    )?;
    let expected = calculate_complex_recommendations(
        &fetch_user_profiles(&users, Duration::ZERO).await,
        &fetch_user_preferences(&users, Duration::ZERO).await,
    );
    check(
        saved == expected,
        "the saved recommendations are the computed ones",
    )
}
