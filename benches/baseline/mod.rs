//! The two reference executors of `WORKLOADS.md`, kept as small as they can
//! be while doing the same job as the reactor on the benchmark DAGs:
//!
//! - [`run_tokio`]: a dependency-counting executor on tokio. A coordinator
//!   task (spawned with `tokio::spawn` and awaited, so it runs on a worker
//!   like the reactor's own coordinator) keeps in-degree counts and a ready
//!   queue, and spawns every ready step into a `JoinSet` while fewer than
//!   `limit` are running. Nothing else: no events, no retries, no undo, no
//!   freeing of results.
//! - [`run_inline`]: the same DAG in topological order on the calling
//!   thread, no spawning.
//!
//! Values are type-erased behind an `Arc` per result ([`Val`]), like the
//! reactor's `Value`, and a step's arguments are a fresh `Vec` of cloned
//! `Arc`s, like the reactor's `Arguments`.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;

/// A type-erased, shared result.
pub type Val = Arc<dyn Any + Send + Sync>;

/// A plain step body.
pub type SyncWork = Arc<dyn Fn(&[Val]) -> Val + Send + Sync>;

/// An async step body.
pub type AsyncWork =
    Arc<dyn Fn(Vec<Val>) -> Pin<Box<dyn Future<Output = Val> + Send>> + Send + Sync>;

/// Wraps a value.
pub fn val<T: Send + Sync + 'static>(v: T) -> Val {
    Arc::new(v)
}

/// Reads a value as `T` (panics on a type mismatch: a benchmark bug).
pub fn get<T: 'static>(v: &Val) -> &T {
    v.downcast_ref::<T>()
        .expect("baseline value of the wrong type")
}

/// Where an argument comes from.
#[derive(Clone, Copy)]
pub enum Src {
    Input(usize),
    Step(usize),
}

/// A step body.
#[derive(Clone)]
pub enum Work {
    Sync(SyncWork),
    Async(AsyncWork),
}

/// A step: its arguments, in order, and its body.
pub struct Node {
    pub args: Vec<Src>,
    pub work: Work,
}

/// A DAG with its edges counted once, at construction.
pub struct Dag {
    nodes: Vec<Node>,
    deps: Vec<u32>,
    dependents: Vec<Vec<usize>>,
    order: Vec<usize>,
    ret: usize,
}

impl Dag {
    /// Counts edges and computes a topological order (Kahn); panics on a cycle.
    pub fn new(nodes: Vec<Node>, ret: usize) -> Dag {
        let n = nodes.len();
        let mut deps = vec![0u32; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in nodes.iter().enumerate() {
            let mut producers: Vec<usize> = node
                .args
                .iter()
                .filter_map(|a| match a {
                    Src::Step(j) => Some(*j),
                    Src::Input(_) => None,
                })
                .collect();
            producers.sort_unstable();
            producers.dedup();
            deps[i] = producers.len() as u32;
            for j in producers {
                dependents[j].push(i);
            }
        }
        let mut indegree = deps.clone();
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = queue.pop_front() {
            order.push(i);
            for &d in &dependents[i] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    queue.push_back(d);
                }
            }
        }
        assert_eq!(order.len(), n, "baseline DAG has a cycle");
        Dag {
            nodes,
            deps,
            dependents,
            order,
            ret,
        }
    }

    fn gather(&self, i: usize, inputs: &[Val], results: &[Option<Val>]) -> Vec<Val> {
        self.nodes[i]
            .args
            .iter()
            .map(|a| match *a {
                Src::Input(k) => inputs[k].clone(),
                Src::Step(j) => results[j].clone().expect("dependency finished"),
            })
            .collect()
    }
}

/// Runs `dag` on tokio with at most `limit` steps at once; the coordinator
/// is a task of its own, awaited by the caller.
pub async fn run_tokio(dag: Arc<Dag>, inputs: Arc<[Val]>, limit: usize) -> Val {
    tokio::spawn(coordinate(dag, inputs, limit.max(1)))
        .await
        .expect("baseline coordinator panicked")
}

async fn coordinate(dag: Arc<Dag>, inputs: Arc<[Val]>, limit: usize) -> Val {
    let n = dag.nodes.len();
    let mut remaining = dag.deps.clone();
    let mut results: Vec<Option<Val>> = vec![None; n];
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut tasks: JoinSet<(usize, Val)> = JoinSet::new();
    let mut done = 0;
    while done < n {
        while tasks.len() < limit {
            let Some(i) = ready.pop_front() else { break };
            let args = dag.gather(i, &inputs, &results);
            match dag.nodes[i].work.clone() {
                Work::Sync(f) => tasks.spawn(async move { (i, f(&args)) }),
                Work::Async(f) => tasks.spawn(async move { (i, f(args).await) }),
            };
        }
        let (i, v) = tasks
            .join_next()
            .await
            .expect("a step is running")
            .expect("a baseline step panicked");
        results[i] = Some(v);
        done += 1;
        for &d in &dag.dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push_back(d);
            }
        }
    }
    results[dag.ret].take().expect("return step finished")
}

/// Runs `dag` in topological order on the calling thread.
pub fn run_inline(dag: &Dag, inputs: &[Val]) -> Val {
    let mut results: Vec<Option<Val>> = vec![None; dag.nodes.len()];
    for &i in &dag.order {
        let args = dag.gather(i, inputs, &results);
        match &dag.nodes[i].work {
            Work::Sync(f) => results[i] = Some(f(&args)),
            Work::Async(_) => panic!("the inline baseline runs plain steps only"),
        }
    }
    results[dag.ret].take().expect("return step finished")
}
