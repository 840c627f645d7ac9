//! The performance guide's first example, `DataProcessor`: three independent
//! fetches run concurrently, then `combine_data` waits for all three.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example data_processor                  # the demo
//! cargo run --release --example data_processor -- describe DataProcessor
//! cargo run --release --example data_processor -- run DataProcessor --input 'user_ids=[1,2,3]' --timeline
//! ```
//!
//! The fetches are simulated with timers (120, 80 and 100 ms), so the whole
//! run takes about as long as the slowest fetch, not their sum. The demo
//! prints the combined result and a timeline of the steps, recorded by a
//! [`Recording`] middleware from the run's events.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use reactor::cli::{App, Entry};
use reactor::{input, result, step, BoxError, Inputs, Reactor, Recording};
use serde::Serialize;

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

#[derive(Debug, Serialize)]
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
            // `id * 7 % 11`, without overflowing for the largest ids.
            logins: (id % 11 * 7 % 11) as u32,
        })
        .collect()
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
async fn main() -> ExitCode {
    let reactor = data_processor().expect("DataProcessor is a valid reactor");
    App::new("data_processor")
        .about("The performance guide's DataProcessor: three fetches run concurrently, then combine_data")
        .reactor(
            Entry::new(reactor)
                .input::<Vec<u64>>("user_ids")
                .output::<Vec<Combined>>()
                .configure(|run| run.max_concurrency(10)),
        )
        .demo(demo)
        .main()
        .await
}

/// Runs DataProcessor for users 1 to 5, prints the combined result and a
/// timeline of its steps, and checks the result.
async fn demo(_quick: bool) -> Result<(), BoxError> {
    let reactor = data_processor()?;
    let recording = Recording::new();
    let result = reactor
        .run(Inputs::new().with("user_ids", vec![1_u64, 2, 3, 4, 5]))
        .max_concurrency(10) // at most 10 steps running concurrently
        .middleware(Arc::new(recording.clone()))
        .await?;

    println!("DataProcessor result:");
    let users = result.get::<Vec<Combined>>()?;
    for user in users {
        println!(
            "  user {:>2}  {:<8} theme={:<6} logins={}",
            user.id, user.name, user.theme, user.logins
        );
    }
    println!("Steps (the three fetches ran concurrently; their timers sum to 300 ms):");
    print!("{}", recording.timeline());
    let ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    if ids != [1, 2, 3, 4, 5] || users[1].theme != "dark" || users[0].logins != 7 {
        return Err(format!("unexpected result: {users:?}").into());
    }
    Ok(())
}
