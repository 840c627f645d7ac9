//! Maps in durable runs: each element is a durable run of its own
//! (`parent/map.attempt.e<index>`), so a crash mid-map keeps the elements
//! that completed, runs again only those in flight, and every completed
//! element's undoable steps are undone exactly once, whether the map
//! failed, a later step failed, or a crash cut an unwind short.

use std::sync::Arc;

use reactor::durable::Runtime;
use reactor::journal::{Entry, RunStatus, SqliteStore};
use reactor::kinds::{element, map};
use reactor::{input, result, step, Inputs, Reactor, Value};
use tokio::sync::Notify;

mod common;
use common::stall::{crash_run, undone, Ledger};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reactor-map-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("journal.db")
}

/// `reserve_all` maps over `ids` (batch `batch`): `reserve` (undoable;
/// fails for id 13) then `confirm` (id * 10 + 1); `charge` sums the
/// confirmations and fails if id 99 was among them.
fn orders(ledger: &Ledger, batch: usize, sink: bool) -> Reactor {
    let c = ledger.clone();
    let each = reserve_all(ledger, batch, sink);
    let charge = step("charge")
        .argument("confirmed", result("reserve_all"))
        .output::<u64>()
        .run(move |a, _| {
            let c = c.clone();
            async move {
                c.hit("charge".into()).await;
                let confirmed = a.value("confirmed").expect("an argument");
                if let Ok(count) = confirmed.get::<u64>() {
                    return Ok(*count);
                }
                let ids: Vec<u32> = confirmed
                    .get::<Vec<Value>>()?
                    .iter()
                    .map(|v| *v.get::<u32>().unwrap())
                    .collect();
                if ids.contains(&991) {
                    return Err("the card was declined".into());
                }
                Ok(ids.iter().map(|&i| u64::from(i)).sum())
            }
        });
    Reactor::builder("orders")
        .input_as::<Vec<u32>>("ids")
        .input_as::<String>("shop")
        .add(each)
        .add(charge)
        .returns("charge")
        .build()
        .unwrap()
}

/// The map of `orders`.
fn reserve_all(ledger: &Ledger, batch: usize, sink: bool) -> reactor::StepSpec {
    let (l, u) = (ledger.clone(), ledger.clone());
    let reserve = step("reserve")
        .argument("id", element("reserve_all"))
        .argument("shop", input("shop"))
        .output::<u32>()
        .run(move |a, ctx| {
            let l = l.clone();
            async move {
                let id = *a.get::<u32>("id")?;
                assert_eq!(a.get::<String>("shop")?, "north");
                assert!(ctx.idempotency_key().contains("/reserve_all.1.e"));
                l.hit(format!("reserve {id}")).await;
                if id == 13 {
                    return Err("out of stock".into());
                }
                Ok(id * 10)
            }
        })
        .undo(move |v, a, _| {
            let u = u.clone();
            async move {
                let id = *a.get::<u32>("id")?;
                // A reservation that may have been made (its step was
                // cut off) is undone too, with no result.
                if let Ok(v) = v.get::<u32>() {
                    assert_eq!(*v, id * 10);
                }
                u.hit(format!("undo reserve {id}")).await;
                Ok(())
            }
        });
    let confirm = step("confirm")
        .argument("r", result("reserve"))
        .output::<u32>()
        .run_sync(|a, _| Ok(a.get::<u32>("r")? + 1));
    let mut each = map("reserve_all", input("ids"))
        .steps([reserve, confirm])
        .returns("confirm")
        .batch_size(batch);
    if sink {
        each = each.sink(|_| Ok(()));
    }
    each.into_step().unwrap().argument("shop", input("shop"))
}

/// `orders`' map, and `fail`, which fails once `reached` is told (while
/// the map is under way), so the run gives up on the map.
fn abandoning(ledger: &Ledger, reached: Arc<Notify>) -> Reactor {
    let each = reserve_all(ledger, 2, false);
    Reactor::builder("abandon")
        .input_as::<Vec<u32>>("ids")
        .input_as::<String>("shop")
        .add(each)
        .add(step("fail").output::<u32>().run(move |_, _| {
            let reached = reached.clone();
            async move {
                reached.notified().await;
                Err::<u32, _>("the shop closed".into())
            }
        }))
        .returns("reserve_all")
        .build()
        .unwrap()
}

fn runtime(path: &std::path::Path, ledger: &Ledger, batch: usize) -> Runtime {
    let rt = Runtime::new(SqliteStore::open(path).unwrap());
    rt.register(orders(ledger, batch, false)).unwrap();
    rt
}

fn inputs(ids: &[u32]) -> Inputs {
    Inputs::new()
        .with("ids", ids.to_vec())
        .with("shop", "north".to_string())
}

async fn crash_at(rt: &Runtime, id: &str, ids: &[u32], gate: Arc<Notify>) {
    crash_run(rt, "orders", inputs(ids), id, &gate).await;
}

/// Each of `ids` was reserved `runs` times and undone `undos` times.
fn assert_counts(ledger: &Ledger, ids: &[u32], runs: u32, undos: u32) {
    for id in ids {
        assert_eq!(
            [
                ledger.get(&format!("reserve {id}")),
                ledger.get(&format!("undo reserve {id}"))
            ],
            [runs, undos],
            "element {id}"
        );
    }
}

/// Element runs are kept in the order they completed (undone newest
/// first), which concurrent elements do not fix.
fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_element_is_a_durable_run_and_the_map_journals_their_ids() {
    let ledger = Ledger::default();
    let rt = runtime(&temp_db("own"), &ledger, 2);
    let out = rt
        .start("orders", inputs(&[1, 2, 3]))
        .run_id("m1")
        .await
        .unwrap();
    assert_eq!(*out.get::<u64>().unwrap(), 11 + 21 + 31);
    assert_counts(&ledger, &[1, 2, 3], 1, 0);
    let parent = rt.journal("m1").await.unwrap();
    let ids: Vec<String> = (0..3).map(|i| format!("m1/reserve_all.1.e{i}")).collect();
    assert!(
        parent.records.iter().any(|r| matches!(&r.entry,
            Entry::StepDone { step, nested, value, .. }
                if step == "reserve_all" && sorted(nested) == ids && value == &serde_json::json!([11, 21, 31]))),
        "{:?}",
        parent.records
    );
    for id in &ids {
        assert_eq!(rt.status(id).await.unwrap().status, RunStatus::Completed);
    }
    // Element runs are their map's: recovery leaves them alone.
    assert!(rt.recover().await.finished.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_element_fails_the_map_and_undoes_every_completed_element_once() {
    let ledger = Ledger::default();
    let rt = runtime(&temp_db("fail"), &ledger, 1);
    let err = rt
        .start("orders", inputs(&[1, 2, 13, 4]))
        .run_id("m2")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("element 2 failed") && err.contains("out of stock"),
        "{err}"
    );
    assert_counts(&ledger, &[1, 2], 1, 1);
    assert_eq!(
        ledger.get("reserve 4"),
        0,
        "no element is admitted after a failure"
    );
    assert_eq!(ledger.get("charge"), 0);
    for i in 0..2 {
        let element = rt.journal(&format!("m2/reserve_all.1.e{i}")).await.unwrap();
        assert_eq!(undone(&element), ["reserve"]);
    }
    assert_eq!(rt.status("m2").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_map_keeps_the_completed_elements_and_finishes_the_rest() {
    let path = temp_db("mid");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("reserve 3");
    let rt = runtime(&path, &ledger, 1);
    crash_at(&rt, "m3", &[1, 2, 3, 4], gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger, 1);
    assert_eq!(
        rt.status("m3/reserve_all.1.e1").await.unwrap().status,
        RunStatus::Completed
    );
    let recovery = rt.recover().await;
    assert!(recovery.skipped.is_empty(), "{:?}", recovery.skipped);
    assert_eq!(recovery.finished.len(), 1, "only the parent is taken up");
    let out = recovery.finished[0].1.as_ref().unwrap();
    assert_eq!(*out.get::<u64>().unwrap(), 11 + 21 + 31 + 41);
    // Completed elements did not run again; the one in flight did, once.
    assert_counts(&ledger, &[1, 2, 4], 1, 0);
    assert_eq!(ledger.get("reserve 3"), 2);
    let taken_up = rt.journal("m3/reserve_all.1.e2").await.unwrap();
    assert!(taken_up
        .records
        .iter()
        .any(|r| r.entry == Entry::Resumed { epoch: 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_completed_before_a_crash_is_undone_from_its_elements_journals() {
    let path = temp_db("after");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("charge");
    let rt = runtime(&path, &ledger, 3);
    crash_at(&rt, "m4", &[1, 99, 3], gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger, 3);
    let recovery = rt.recover().await;
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("declined"), "{err}");
    // Undone from the journals, each given its element again.
    assert_counts(&ledger, &[1, 99, 3], 1, 1);
    for i in 0..3 {
        let element = rt.journal(&format!("m4/reserve_all.1.e{i}")).await.unwrap();
        assert_eq!(undone(&element), ["reserve"]);
    }
    assert_eq!(rt.status("m4").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwind_cut_short_undoes_each_element_once() {
    let path = temp_db("cut");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("undo reserve 2");
    let rt = runtime(&path, &ledger, 3);
    crash_at(&rt, "m5", &[1, 2, 99], gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger, 3);
    assert_eq!(rt.status("m5").await.unwrap().status, RunStatus::Unwinding);
    let recovery = rt.recover().await;
    assert!(recovery.finished[0].1.is_err());
    // The undo cut short runs again; the others ran once, whichever
    // were undone before the crash.
    assert_eq!(ledger.get("undo reserve 2"), 2);
    assert_counts(&ledger, &[1, 99], 1, 1);
    for i in 0..3 {
        let element = rt.journal(&format!("m5/reserve_all.1.e{i}")).await.unwrap();
        assert_eq!(undone(&element), ["reserve"], "element {i}");
    }
    assert_eq!(rt.status("m5").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_failing_map_undoes_its_elements_undoes_each_once() {
    let path = temp_db("failing");
    let ledger = Ledger::default();
    let gate = ledger.stall_at("undo reserve 2");
    let rt = runtime(&path, &ledger, 1);
    crash_at(&rt, "m6", &[1, 2, 13], gate).await;
    drop(rt);
    let rt = runtime(&path, &ledger, 1);
    let recovery = rt.recover().await;
    let err = recovery.finished[0].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("reserve_all"), "{err}");
    assert_eq!(ledger.get("undo reserve 2"), 2);
    assert_eq!(ledger.get("undo reserve 1"), 1);
    assert!(ledger.get("reserve 13") <= 2);
    for i in 0..2 {
        let element = rt.journal(&format!("m6/reserve_all.1.e{i}")).await.unwrap();
        assert_eq!(undone(&element), ["reserve"], "element {i}");
    }
    assert_eq!(rt.status("m6").await.unwrap().status, RunStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_map_with_a_sink_journals_the_count_and_shares_a_pool_of_one() {
    let ledger = Ledger::default();
    let rt = Runtime::new(SqliteStore::open(temp_db("sink")).unwrap());
    rt.register(orders(&ledger, 4, true)).unwrap();
    rt.configure(|r| r.max_concurrency(1));
    let out = rt
        .start("orders", inputs(&[1, 2, 3, 4, 5]))
        .run_id("m7")
        .await
        .unwrap();
    assert_eq!(*out.get::<u64>().unwrap(), 5);
    assert_counts(&ledger, &[1, 2, 3, 4, 5], 1, 0);
    let parent = rt.journal("m7").await.unwrap();
    assert!(parent.records.iter().any(|r| matches!(&r.entry,
        Entry::StepDone { step, value, .. } if step == "reserve_all" && value == &serde_json::json!(5))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_returning_a_maps_results_is_refused_naming_it() {
    let inner = map("inner", element("outer"))
        .items::<u32>()
        .steps([step("one")
            .argument("x", element("inner"))
            .output::<u32>()
            .run_sync(|_, _| Ok(1_u32))])
        .into_step()
        .unwrap();
    let outer = Reactor::builder("nested_maps")
        .input_as::<Vec<Vec<u32>>>("xs")
        .add(
            map("outer", input("xs"))
                .steps([inner])
                .into_step()
                .unwrap(),
        )
        .returns("outer")
        .build()
        .unwrap();
    let rt = Runtime::new(reactor::journal::MemoryStore::new());
    let err = rt.register(outer).unwrap_err().to_string();
    assert!(
        err.contains("step `outer` is a map returning the results of the map `inner`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_abandoned_by_a_failing_run_undoes_the_elements_it_started_once() {
    let ledger = Ledger::default();
    let reached = ledger.stall_at("reserve 2");
    let rt = Runtime::new(SqliteStore::open(temp_db("abandoned")).unwrap());
    rt.register(abandoning(&ledger, reached)).unwrap();
    rt.configure(|r| r.halt_timeout(std::time::Duration::from_millis(20)));
    let err = rt
        .start("abandon", inputs(&[1, 2, 3]))
        .run_id("m8")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shop closed"), "{err}");
    // Element 1 was cut off mid-step; 0 and 2 (which took 0's place in
    // the batch) ran unless the run gave up on the map first: each that
    // ran is undone once, from its journal.
    assert_counts(&ledger, &[2], 1, 1);
    for id in [1, 3] {
        let runs = ledger.get(&format!("reserve {id}"));
        assert!(runs <= 1);
        assert_eq!(
            ledger.get(&format!("undo reserve {id}")),
            runs,
            "element {id}"
        );
    }
    let cut = rt.journal("m8/reserve_all.1.e1").await.unwrap();
    assert_eq!(cut.run.status, RunStatus::Cancelled);
    assert_eq!(undone(&cut), ["reserve"]);
}
