//! Worker processes sharing runs through a real PostgreSQL
//! (`DATABASE_URL`, by default the local server `.ci/run` starts): this
//! test binary, re-run with `REACTOR_WORKER_CHILD` set, is a worker; the
//! harness submits runs, starts workers, kills (`kill -9`), stops
//! (`SIGSTOP`) and continues them, restarts the server, and checks what
//! the store holds: every run ends exactly once, no journal has a gap,
//! epochs only rise, every effect is done once unless a worker died
//! mid-step, and every effect of a failed saga is undone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reactor::durable::{Runtime, Worker};
use reactor::journal::{Entry, PgStore, RunStatus, Store};
use reactor::{input, result, step, ConcurrencyPool, Inputs, Reactor, StepSpec};

fn url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".to_string())
}

// ----- the workers' reactor ------------------------------------------------

// The external system: a file of lines, appended by every worker.
mod common;
use common::file_ledger::FileLedger as Ledger;

/// An effect on the ledger, undone on it, taking `pause` first.
fn effect(ledger: &Ledger, name: &str, after: Option<&str>, pause: Duration) -> StepSpec {
    let (l, lu) = (ledger.clone(), ledger.clone());
    let mut s = step(name).argument("n", input("n")).output::<u64>();
    if let Some(a) = after {
        s = s.argument(a, result(a));
    }
    s.run(move |a, ctx| {
        let l = l.clone();
        async move {
            // In and out of the shared pool's slot (its limit is checked).
            l.write("enter".to_string());
            tokio::time::sleep(pause).await;
            l.write(format!("do {}", ctx.idempotency_key()));
            l.write("exit".to_string());
            Ok(*a.get::<u64>("n")?)
        }
    })
    .undo(move |_, _, ctx| {
        let lu = lu.clone();
        async move {
            lu.write(format!("undo {}", ctx.idempotency_key()));
            Ok(())
        }
    })
}

/// reserve, then charge, then ship; ship fails for every n ending in 7.
fn order(ledger: &Ledger, pause: Duration) -> Reactor {
    Reactor::builder("order")
        .input_as::<u64>("n")
        .add(effect(ledger, "reserve", None, pause))
        .add(effect(ledger, "charge", Some("reserve"), pause))
        .add(
            step("ship")
                .argument("n", input("n"))
                .argument("charge", result("charge"))
                .output::<u64>()
                .max_retries(0)
                .run(move |a, _| async move {
                    tokio::time::sleep(pause).await;
                    let n = *a.get::<u64>("n")?;
                    if n % 10 == 7 {
                        return Err("the carrier is down".into());
                    }
                    Ok(n)
                }),
        )
        .returns("ship")
        .build()
        .unwrap()
}

struct Setup {
    schema: String,
    ledger: Ledger,
    lease: Duration,
    pause: Duration,
}

/// The slots every worker's steps share, across the cluster.
const POOL_LIMIT: usize = 4;

async fn runtime(setup: &Setup) -> Runtime {
    let store = PgStore::options(&url())
        .schema(&setup.schema)
        .lease(setup.lease)
        .connect()
        .await
        .unwrap();
    let pool = ConcurrencyPool::shared("slots", POOL_LIMIT, store.shared_limits()).unwrap();
    let rt = Runtime::new(store);
    rt.configure(move |r| r.pool(pool.clone()));
    rt.register(order(&setup.ledger, setup.pause)).unwrap();
    rt
}

fn setup_from_env() -> Setup {
    let var = |k: &str| std::env::var(k).unwrap();
    Setup {
        schema: var("REACTOR_WORKER_SCHEMA"),
        ledger: Ledger(var("REACTOR_WORKER_LEDGER").into()),
        lease: Duration::from_millis(var("REACTOR_WORKER_LEASE_MS").parse().unwrap()),
        pause: Duration::from_millis(var("REACTOR_WORKER_PAUSE_MS").parse().unwrap()),
    }
}

/// The child: a worker until its stop file appears; prints its report.
#[test]
fn worker_process() {
    if std::env::var("REACTOR_WORKER_CHILD").is_err() {
        return;
    }
    let stop = PathBuf::from(std::env::var("REACTOR_WORKER_STOP").unwrap());
    // Its warnings (a run lost, say) go to the file the harness reads.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let setup = setup_from_env();
        let runtime = runtime(&setup).await;
        let report = Worker::new(&runtime)
            .unwrap()
            .max_runs(50)
            .run(async move {
                while !stop.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
        println!(
            "finished={} lost={} handed_back={} skipped={}",
            report.finished,
            report.lost.len(),
            report.handed_back.len(),
            report.skipped.len()
        );
    });
}

// ----- the harness -------------------------------------------------------

struct Cluster {
    setup: Setup,
    dir: PathBuf,
    workers: Vec<Child>,
}

impl Cluster {
    fn new(tag: &str, lease: Duration, pause: Duration) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("reactor-workers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster {
            setup: Setup {
                schema: format!("workers_{tag}_{}", std::process::id()),
                ledger: Ledger(dir.join("ledger.txt")),
                lease,
                pause,
            },
            dir,
            workers: Vec::new(),
        }
    }

    fn spawn_worker(&mut self) -> usize {
        let n = self.workers.len();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "worker_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("REACTOR_WORKER_CHILD", "1")
            .env("REACTOR_WORKER_SCHEMA", &self.setup.schema)
            .env("REACTOR_WORKER_LEDGER", &self.setup.ledger.0)
            .env(
                "REACTOR_WORKER_LEASE_MS",
                self.setup.lease.as_millis().to_string(),
            )
            .env(
                "REACTOR_WORKER_PAUSE_MS",
                self.setup.pause.as_millis().to_string(),
            )
            .env("REACTOR_WORKER_STOP", self.dir.join("stop"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.join(format!("worker-{n}.err"))).unwrap())
            .spawn()
            .unwrap();
        self.workers.push(child);
        n
    }

    fn signal(&self, worker: usize, signal: &str) {
        let pid = self.workers[worker].id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (bounded) until `worker`'s log holds `text`.
    fn wait_for_log(&self, worker: usize, text: &str) {
        let log = self.dir.join(format!("worker-{worker}.err"));
        for _ in 0..3000 {
            if std::fs::read_to_string(&log).is_ok_and(|l| l.contains(text)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("worker {worker} never logged `{text}`");
    }

    /// Stops every worker still running; their reports.
    fn stop(&mut self) -> Vec<String> {
        std::fs::write(self.dir.join("stop"), "").unwrap();
        self.workers
            .drain(..)
            .enumerate()
            .map(|(n, c)| {
                let out = c.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                // libtest prints "test worker_process ... " before it.
                match stdout.find("finished=") {
                    Some(at) => stdout[at..].lines().next().unwrap_or("").to_string(),
                    None => {
                        let err = self.dir.join(format!("worker-{n}.err"));
                        let err = std::fs::read_to_string(err).unwrap_or_default();
                        format!(
                            "killed: {}",
                            err.lines().take(20).collect::<Vec<_>>().join("\n")
                        )
                    }
                }
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Submits runs 0..n; their ids.
async fn submit(rt: &Runtime, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = rt
            .start("order", Inputs::new().with("n", i))
            .run_id(format!("order-{i}"))
            .submit()
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// Waits until every one of `ids` has ended (bounded, so that a lost run
/// fails the test rather than hanging it).
async fn all_ended(store: &dyn Store, ids: &[String], done: impl Fn(usize)) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // A server restarting refuses reads for a while.
        let Ok(runs) = store.runs(None).await else {
            assert!(Instant::now() < deadline, "the server never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ended = runs
            .iter()
            .filter(|r| r.status.is_finished() && ids.contains(&r.id))
            .count();
        done(ended);
        if ended == ids.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ended} of {} runs ended: some are stranded",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the store and the ledger hold, checked: each run ended once, no
/// journal has a gap (loading checks), epochs only rise, effects are
/// done at most `1 + deaths` times and those of failed runs undone.
async fn check(rt: &Runtime, ledger: &Ledger, ids: &[String], deaths: usize) {
    let lines = ledger.lines();

    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &lines {
        *count.entry(l.as_str()).or_default() += 1;
    }
    for id in ids {
        let journal = rt.journal(id).await.unwrap();
        let ends = journal
            .records
            .iter()
            .filter(|r| matches!(r.entry, Entry::RunEnded { .. }))
            .count();
        assert_eq!(ends, 1, "{id} ended {ends} times");
        let epochs: Vec<u32> = journal
            .records
            .iter()
            .filter_map(|r| match r.entry {
                Entry::Resumed { epoch } => Some(epoch),
                _ => None,
            })
            .collect();
        assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{id}: {epochs:?}");
        let n: u64 = id.trim_start_matches("order-").parse().unwrap();
        let failed = n % 10 == 7;
        assert_eq!(
            journal.run.status,
            if failed {
                RunStatus::Failed
            } else {
                RunStatus::Completed
            },
            "{id}"
        );
        for s in ["reserve", "charge"] {
            let key = format!("{id}:{s}");
            let done = count
                .get(format!("do {key}").as_str())
                .copied()
                .unwrap_or(0);
            let undone = count
                .get(format!("undo {key}").as_str())
                .copied()
                .unwrap_or(0);
            assert!((1..=1 + deaths).contains(&done), "{key} done {done} times");
            if failed {
                assert!(
                    (1..=1 + deaths).contains(&undone),
                    "{key} undone {undone} times"
                );
            } else {
                assert_eq!(undone, 0, "{key} of a completed run undone");
            }
        }
    }
}

/// The most steps in the shared pool's slots at once, as the ledger saw
/// them (each `enter` and `exit` written while its step held a slot; a
/// worker killed mid-step leaves its `enter`s open, so only runs without
/// deaths are measured).
fn pool_peak(ledger: &Ledger) -> i64 {
    let (mut now, mut peak) = (0i64, 0i64);
    for l in ledger.lines() {
        match l.as_str() {
            "enter" => now += 1,
            "exit" => now -= 1,
            _ => {}
        }
        peak = peak.max(now);
    }
    peak
}

/// The tests of this binary run one at a time: each starts processes
/// enough to fill the machine, and one restarts the server.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn harness_store(cluster: &Cluster) -> (Runtime, PgStore) {
    let rt = runtime(&cluster.setup).await;
    let store = PgStore::connect_in(&url(), &cluster.setup.schema)
        .await
        .unwrap();
    (rt, store)
}

async fn drop_schema(cluster: &Cluster) {
    let store = PgStore::connect_in(&url(), &cluster.setup.schema)
        .await
        .unwrap();
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_share_ten_thousand_runs() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new("four", Duration::from_secs(10), Duration::ZERO);
    let (rt, store) = harness_store(&cluster).await;
    let ids = submit(&rt, 10_000).await;
    for _ in 0..4 {
        cluster.spawn_worker();
    }
    all_ended(&store, &ids, |_| {}).await;
    let reports = cluster.stop();
    check(&rt, &cluster.setup.ledger, &ids, 0).await;
    let peak = pool_peak(&cluster.setup.ledger);
    eprintln!("the shared pool's observed peak: {peak} of {POOL_LIMIT}");
    assert!(
        peak <= POOL_LIMIT as i64,
        "{peak} steps held the pool's slots at once"
    );
    // Every worker took part; none lost a run.
    let finished: Vec<u64> = reports
        .iter()
        .map(|r| {
            r.split(['=', ' '])
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a worker did not report: {r}"))
        })
        .collect();
    assert_eq!(finished.iter().sum::<u64>(), 10_000, "{reports:?}");
    assert!(reports.iter().all(|r| r.contains("lost=0")), "{reports:?}");
    drop_schema(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_of_a_killed_worker_finish_on_the_others() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(
        "kill",
        Duration::from_millis(1000),
        Duration::from_millis(20),
    );
    let (rt, store) = harness_store(&cluster).await;
    let ids = submit(&rt, 200).await;
    let victim = cluster.spawn_worker();
    cluster.spawn_worker();
    // Killed once runs are under way (some done, most not).
    let ledger = cluster.setup.ledger.clone();
    while ledger.lines().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.signal(victim, "-9");
    all_ended(&store, &ids, |_| {}).await;
    let reports = cluster.stop();
    assert!(reports[0].starts_with("killed"), "{reports:?}");
    check(&rt, &ledger, &ids, 1).await;
    drop_schema(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_is_refused_and_stops_driving() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::new(
        "stop",
        Duration::from_millis(500),
        Duration::from_millis(100),
    );
    let (rt, store) = harness_store(&cluster).await;
    let ids = submit(&rt, 20).await;
    let stalled = cluster.spawn_worker();
    let ledger = cluster.setup.ledger.clone();
    while ledger.lines().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.signal(stalled, "-STOP");
    cluster.spawn_worker();
    // The other worker adopts its runs once its lease expires, and ends them.
    all_ended(&store, &ids, |_| {}).await;
    let before: BTreeSet<String> = ids.iter().cloned().collect();
    let journals_before = journals(&rt, &before).await;
    cluster.signal(stalled, "-CONT");
    // Stopped only once it found a run of its taken from it.
    cluster.wait_for_log(stalled, "a run left this worker");
    let reports = cluster.stop();
    // Its writes were refused: it stopped driving the runs it had, and
    // the journals are as the other worker left them.
    assert!(!reports[0].contains("lost=0"), "{reports:?}");
    assert_eq!(journals(&rt, &before).await, journals_before);
    check(&rt, &ledger, &ids, 1).await;
    drop_schema(&cluster).await;
}

async fn journals(rt: &Runtime, ids: &BTreeSet<String>) -> Vec<usize> {
    let mut sizes = Vec::new();
    for id in ids {
        sizes.push(rt.journal(id).await.unwrap().records.len());
    }
    sizes
}

/// The local server's cluster, when the tests run against it and it can
/// be restarted here.
fn local_cluster() -> Option<String> {
    if url() != "postgres://postgres:postgres@127.0.0.1:5432/test" {
        return None;
    }
    let versions = std::fs::read_dir("/etc/postgresql").ok()?;
    let mut versions: Vec<String> = versions
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_run_strands_no_run() {
    let _serial = SERIAL.lock().await;
    let Some(version) = local_cluster() else {
        eprintln!("DATABASE_URL is not the local server: its restart is not tested here");
        return;
    };
    let mut cluster = Cluster::new(
        "restart",
        Duration::from_millis(1000),
        Duration::from_millis(20),
    );
    let (rt, store) = harness_store(&cluster).await;
    let ids = submit(&rt, 100).await;
    cluster.spawn_worker();
    cluster.spawn_worker();
    let ledger = cluster.setup.ledger.clone();
    while ledger.lines().len() < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = Command::new("pg_ctlcluster")
        .args([&version, "main", "restart", "--mode=fast"])
        .status()
        .unwrap();
    assert!(restarted.success());
    all_ended(&store, &ids, |_| {}).await;
    let reports = cluster.stop();
    assert_eq!(reports.len(), 2);
    check(&rt, &ledger, &ids, 2).await;
    drop_schema(&cluster).await;
}
