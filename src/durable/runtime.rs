//! [`Runtime`]: starts durable runs, finds them by id, and takes up the
//! unfinished ones after a crash.

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::definition::Definition;
use super::nested::{Migrations, Nested};
use super::recover::{end_outcome, Folded};
use super::registry::StepRegistry;
use crate::error::Error;
use crate::executor::{check_inputs, Durable, Recovered, RunOutcome, RunRequest};
use crate::journal::run::with_retry;
use crate::journal::{
    Created, Entry, Journal, NewRun, Record, RunEnd, RunJournal, RunStatus, RunSummary,
    SqliteStore, Store, StoreError,
};
use crate::reactor::{Inputs, Reactor};
use crate::value::{Value, ValueMap};

type Configure = Arc<dyn Fn(RunRequest) -> RunRequest + Send + Sync>;

/// Runs reactors durably: each run's progress is journalled in a
/// [`Store`], so that a run interrupted by a crash is taken up again by
/// [`Runtime::recover`], and any run can be found by its id.
///
/// Cloning a runtime shares it.
///
/// # Examples
///
/// ```
/// use reactor::durable::Runtime;
/// use reactor::journal::{MemoryStore, RunStatus};
/// use reactor::{input, step, Inputs, Reactor};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
/// let double = Reactor::builder("double")
///     .input_as::<u32>("n")
///     .add(step("twice").argument("n", input("n")).output::<u32>()
///         .run_sync(|a, _| Ok(a.get::<u32>("n")? * 2)))
///     .returns("twice")
///     .build()?;
/// let runtime = Runtime::new(MemoryStore::new());
/// runtime.register(double)?;
/// let out = runtime.start("double", Inputs::new().with("n", 21_u32)).run_id("r1").await?;
/// assert_eq!(*out.get::<u32>()?, 42);
/// assert_eq!(runtime.status("r1").await?.status, RunStatus::Completed);
/// assert_eq!(*runtime.result("r1").await?.unwrap().get::<u32>()?, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    reactors: RwLock<HashMap<String, Arc<Registered>>>,
    context: RwLock<ValueMap>,
    configure: RwLock<Option<Configure>>,
    /// Runs this runtime is driving now.
    live: Mutex<HashMap<String, Live>>,
    /// Old definition hashes whose runs may go on, by reactor.
    migrations: Migrations,
    /// The step kinds emitted steps are journalled by.
    steps: StepRegistry,
    /// The lock on the data directory ([`Runtime::open`]), held while
    /// the runtime lives.
    lock: Mutex<Option<std::fs::File>>,
}

struct Registered {
    reactor: Reactor,
    def: Definition,
}

/// What [`Runtime::recover`] did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The runs taken up, and how each ended.
    pub finished: Vec<(String, Result<Value, Error>)>,
    /// Runs that could not be taken up (a journal that cannot be loaded,
    /// an unknown reactor, a changed definition): reported, left as they
    /// are.
    pub skipped: Vec<(String, Error)>,
    /// Halted runs: they wait for [`Runtime::resume`].
    pub halted: Vec<String>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reactors = self
            .inner
            .reactors
            .read()
            .unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Runtime")
            .field("reactors", &reactors.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A run this runtime drives: how to cancel it, and when it has ended.
struct Live {
    cancel: CancellationToken,
    ended: watch::Receiver<bool>,
}

/// Removes a run from the live set when its driving ends, however it
/// ends, and tells whoever waits for it.
struct LiveGuard {
    inner: Arc<Inner>,
    run_id: String,
    cancel: CancellationToken,
    ended: watch::Sender<bool>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.run_id);
        self.ended.send_replace(true);
    }
}

impl Runtime {
    /// A runtime keeping its journals in `store`.
    pub fn new(store: impl Store) -> Runtime {
        Runtime::with_store(Arc::new(store))
    }

    /// A runtime keeping its journals in a shared `store`.
    pub fn with_store(store: Arc<dyn Store>) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                store,
                reactors: RwLock::default(),
                context: RwLock::default(),
                configure: RwLock::default(),
                live: Mutex::default(),
                migrations: Migrations::default(),
                steps: StepRegistry::new(),
                lock: Mutex::default(),
            }),
        }
    }

    /// A runtime keeping its journals in `dir/journal.db` (SQLite,
    /// `synchronous=FULL`), creating the directory if need be.
    ///
    /// One runtime at a time may use a data directory: it holds a lock on
    /// `dir/runtime.lock` while it lives (the system releases it if the
    /// process dies), and a second one is refused with
    /// [`StoreError::InUse`]. Otherwise two runtimes taking up the same
    /// interrupted run would both run its steps; the store's owner epochs
    /// ([`fence`](crate::journal::fence)) would still let only the newest
    /// write its journal.
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Runtime, Error> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create `{}`: {e}", dir.display())))?;
        let path = dir.join("runtime.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open `{}`: {e}", path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(dir.display().to_string()).into())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(
                    StoreError::Backend(format!("cannot lock `{}`: {e}", path.display())).into(),
                )
            }
        }
        let runtime = Runtime::new(SqliteStore::open(dir.join("journal.db"))?);
        *runtime.inner.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        Ok(runtime)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Registers `reactor`, so that runs of it can be started and taken
    /// up. A reactor whose inputs or step results the journal cannot
    /// encode is refused, naming the input or step.
    pub fn register(&self, reactor: Reactor) -> Result<&Runtime, Error> {
        let def = Definition::of(reactor.plan())?;
        self.inner
            .reactors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                reactor.name().to_string(),
                Arc::new(Registered { reactor, def }),
            );
        Ok(self)
    }

    /// Registers the step kind `kind`, from which the steps a run emits
    /// (`Outcome::OkWithSteps`) are journalled and rebuilt after a crash:
    /// `make(name, params)` makes its step named `name`. Emit such a step
    /// with [`StepRegistry::make`] on [`Runtime::steps`]; see
    /// [`StepRegistry`].
    ///
    /// ```
    /// use reactor::durable::Runtime;
    /// use reactor::journal::MemoryStore;
    /// use reactor::{input, step, value, Inputs, Outcome, Reactor, StepSpec};
    ///
    /// fn ship(name: &str, parcel: u32) -> StepSpec {
    ///     step(name).argument("parcel", value(parcel)).output::<u32>()
    ///         .run_sync(|a, _| Ok(*a.get::<u32>("parcel")?))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
    /// let runtime = Runtime::new(MemoryStore::new());
    /// runtime.register_step("ship", ship);
    /// let steps = runtime.steps().clone();
    /// let order = Reactor::builder("order")
    ///     .input_as::<u32>("parcels")
    ///     .add(step("plan").argument("n", input("parcels")).output::<u32>().run(move |a, _| {
    ///         let steps = steps.clone();
    ///         async move {
    ///             let n = *a.get::<u32>("n")?;
    ///             let emitted = (0..n)
    ///                 .map(|p| steps.make("ship", &format!("ship_{p}"), p))
    ///                 .collect::<Result<Vec<_>, _>>()?;
    ///             Ok(Outcome::with_steps(n, emitted))
    ///         }
    ///     }))
    ///     .returns("plan")
    ///     .build()?;
    /// runtime.register(order)?;
    /// let out = runtime.start("order", Inputs::new().with("parcels", 3_u32)).run_id("o1").await?;
    /// assert_eq!(*out.get::<u32>()?, 3);
    /// # Ok(()) }
    /// ```
    pub fn register_step<P, F>(&self, kind: impl Into<String>, make: F) -> &Runtime
    where
        P: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: Fn(&str, P) -> crate::StepSpec + Send + Sync + 'static,
    {
        self.inner.steps.register(kind, make);
        self
    }

    /// The step kinds of this runtime, to make steps to emit.
    pub fn steps(&self) -> &StepRegistry {
        &self.inner.steps
    }

    /// Lets runs of `reactor` journalled under the definition hashed
    /// `old_hash` go on under the reactor as registered now: a migration,
    /// for a change that does not affect them (a step added after the
    /// steps they completed, a renamed argument). The hash is in the
    /// error that refused them.
    pub fn migrate(&self, reactor: impl Into<String>, old_hash: impl Into<String>) -> &Runtime {
        self.inner.migrations.allow(reactor.into(), old_hash.into());
        self
    }

    /// A context value given to every run (a client, a connection pool):
    /// context is not journalled, so a run taken up after a crash gets
    /// the values of the runtime that takes it up.
    pub fn context(&self, key: impl Into<String>, value: impl Send + Sync + 'static) -> &Runtime {
        self.inner
            .context
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.into(), Value::new(value));
        self
    }

    /// Sets options (concurrency, timeouts, middleware) on every run this
    /// runtime starts or takes up.
    pub fn configure(
        &self,
        f: impl Fn(RunRequest) -> RunRequest + Send + Sync + 'static,
    ) -> &Runtime {
        *self
            .inner
            .configure
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
        self
    }

    /// Starts a run of the registered reactor `reactor`: set its id or
    /// idempotency key, then `.await` it for its result.
    pub fn start(&self, reactor: &str, inputs: Inputs) -> Start {
        Start {
            runtime: self.clone(),
            reactor: reactor.to_string(),
            inputs,
            run_id: None,
            idempotency_key: None,
        }
    }

    /// A run's status.
    pub async fn status(&self, run_id: &str) -> Result<RunSummary, Error> {
        Ok(self.load(run_id).await?.run)
    }

    /// The runs of one status (or all), oldest first.
    pub async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, Error> {
        Ok(self.inner.store.runs(status).await?)
    }

    /// Deletes the runs that ended (completed, failed or cancelled) more
    /// than `older_than` ago, with their journals and nested runs; returns
    /// how many runs were deleted. Unfinished runs are kept, however old.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reactor::durable::Runtime;
    /// use reactor::journal::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), reactor::Error> {
    /// let runtime = Runtime::new(MemoryStore::new());
    /// // Keep a month of history.
    /// let purged = runtime.purge(Duration::from_secs(30 * 24 * 3600)).await?;
    /// assert_eq!(purged, 0);
    /// # Ok(()) }
    /// ```
    pub async fn purge(&self, older_than: std::time::Duration) -> Result<u64, Error> {
        let age = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let cutoff = crate::journal::record::now_ms().saturating_sub(age);
        Ok(self.inner.store.purge(cutoff).await?)
    }

    /// A run's journal.
    pub async fn journal(&self, run_id: &str) -> Result<Journal, Error> {
        self.load(run_id).await
    }

    /// A completed run's result (`None` while it has not completed).
    pub async fn result(&self, run_id: &str) -> Result<Option<Value>, Error> {
        let journal = self.load(run_id).await?;
        let folded = Folded::of(&journal);
        match folded.ended {
            Some(RunEnd::Completed { value }) => {
                Ok(Some(self.decode_result(&folded.reactor, value)?))
            }
            _ => Ok(None),
        }
    }

    /// Takes up run `run_id`: a halted run resumes, a run interrupted by
    /// a crash goes on (completed steps do not run again; steps that may
    /// have started run again). An ended run returns how it ended.
    pub async fn resume(&self, run_id: &str) -> Result<Value, Error> {
        self.take_up(run_id, false).await
    }

    /// Cancels run `run_id`: its completed steps are undone, newest
    /// first, and it ends cancelled. A run this runtime drives stops
    /// starting steps, waits for its running ones (up to its
    /// `halt_timeout`), then unwinds; a halted run, or one interrupted by
    /// a crash, is taken up to unwind. Returns once the run has ended; an
    /// error if it had ended already (or ended otherwise first) or an
    /// undo failed.
    pub async fn cancel(&self, run_id: &str) -> Result<(), Error> {
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .map(|l| (l.cancel.clone(), l.ended.clone()));
        if let Some((cancel, mut ended)) = live {
            cancel.cancel();
            // The guard's drop says `true`; a closed channel means the same.
            let _ = ended.wait_for(|e| *e).await;
            let journal = self.load(run_id).await?;
            return match Folded::of(&journal).ended {
                Some(RunEnd::Cancelled) => Ok(()),
                // It halted first: cancel the halted run.
                None => Box::pin(self.cancel(run_id)).await,
                Some(_) => Err(Error::State {
                    run_id: run_id.to_string(),
                    message: format!(
                        "it ended {} before the cancellation",
                        journal.run.status.as_str()
                    ),
                }),
            };
        }
        match self.take_up(run_id, true).await {
            Ok(_) => Ok(()),
            Err(Error::Run(e)) if e.errors.iter().all(|e| e.phase != crate::Phase::Undo) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes up every unfinished run in the store (running or unwinding,
    /// and not driven by this runtime), at once, and waits for them. A run
    /// that cannot be taken up is reported and skipped; the others go on.
    pub async fn recover(&self) -> Recovery {
        let mut recovery = Recovery::default();
        let mut ids = Vec::new();
        for status in [RunStatus::Running, RunStatus::Unwinding, RunStatus::Halted] {
            match self.inner.store.runs(Some(status)).await {
                Ok(runs) if status == RunStatus::Halted => {
                    // Nested runs are their parents'.
                    let top = runs.into_iter().filter(|r| !r.id.contains('/'));
                    recovery.halted.extend(top.map(|r| r.id));
                }
                Ok(runs) => ids.extend(runs.into_iter().map(|r| r.id)),
                Err(e) => recovery
                    .skipped
                    .push((format!("({} runs)", status.as_str()), e.into())),
            }
        }
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect::<HashSet<_>>();
        // Nested runs are taken up by their parents.
        ids.retain(|id| !live.contains(id) && !id.contains('/'));
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let rt = self.clone();
            tasks.spawn(async move {
                let out = rt.take_up(&id, false).await;
                (id, out)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((
                    id,
                    Err(
                        e @ (Error::Store(_)
                        | Error::DefinitionChanged { .. }
                        | Error::Unknown { .. }
                        | Error::StateMismatch { .. }
                        | Error::Codec { .. }),
                    ),
                )) => {
                    tracing::error!(run_id = %id, error = %e, "a run could not be taken up");
                    recovery.skipped.push((id, e));
                }
                Ok((id, out)) => {
                    metrics::counter!("reactor_runs_recovered_total").increment(1);
                    recovery.finished.push((id, out));
                }
                Err(e) => recovery.skipped.push((
                    "(a recovery task)".to_string(),
                    Error::State {
                        run_id: String::new(),
                        message: format!("taking up a run panicked: {e}"),
                    },
                )),
            }
        }
        recovery
    }

    // ----- internals -------------------------------------------------

    /// Whether this runtime drives `run_id` now.
    pub(super) fn drives(&self, run_id: &str) -> bool {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(run_id)
    }

    /// The names of the registered reactors.
    pub(super) fn reactor_names(&self) -> Vec<String> {
        self.inner
            .reactors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn registered(&self, reactor: &str) -> Result<Arc<Registered>, Error> {
        self.inner
            .reactors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(reactor)
            .cloned()
            .ok_or_else(|| Error::Unknown {
                what: "reactor",
                name: reactor.to_string(),
            })
    }

    /// `run_id`'s journal.
    async fn load(&self, run_id: &str) -> Result<Journal, Error> {
        self.load_with(run_id, false).await
    }

    /// `run_id`'s journal; with `retry`, a transient failure (a server
    /// restarting) is retried as writes are: taking a run up, which a
    /// worker has claimed, should not give it up for a moment's outage.
    /// Reads a caller waits on (status, results) fail at once instead.
    async fn load_with(&self, run_id: &str, retry: bool) -> Result<Journal, Error> {
        let loaded = if retry {
            with_retry(run_id, || self.inner.store.load(run_id)).await
        } else {
            self.inner.store.load(run_id).await
        };
        match loaded {
            Err(StoreError::UnknownRun(_)) => Err(Error::Unknown {
                what: "run",
                name: run_id.to_string(),
            }),
            other => Ok(other?),
        }
    }

    fn decode_result(&self, reactor: &str, value: serde_json::Value) -> Result<Value, Error> {
        let reg = self.registered(reactor)?;
        let ret = reg.reactor.return_step();
        match reg.def.outputs.get(ret) {
            Some(codec) => codec.decode(value),
            None => Ok(Value::json(value)),
        }
    }

    /// Marks `run_id` live; `None` if it already is.
    fn go_live(&self, run_id: &str) -> Option<LiveGuard> {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.contains_key(run_id) {
            return None;
        }
        let cancel = CancellationToken::new();
        let (ended, watching) = watch::channel(false);
        live.insert(
            run_id.to_string(),
            Live {
                cancel: cancel.clone(),
                ended: watching,
            },
        );
        Some(LiveGuard {
            inner: self.inner.clone(),
            run_id: run_id.to_string(),
            cancel,
            ended,
        })
    }

    /// How an ended run ended, as its result.
    fn ended(&self, run_id: &str, reactor: &str, end: RunEnd) -> Result<Value, Error> {
        self.decode_result(reactor, end_outcome(run_id, end)?)
    }

    pub(super) async fn take_up(&self, run_id: &str, cancel: bool) -> Result<Value, Error> {
        if run_id.contains('/') {
            return Err(Error::State {
                run_id: run_id.to_string(),
                message: "it is a nested run: its parent run takes it up, undoes or cancels it"
                    .to_string(),
            });
        }
        let Some(live) = self.go_live(run_id) else {
            return Err(Error::State {
                run_id: run_id.to_string(),
                message: "it is being driven by this runtime".to_string(),
            });
        };
        let journal = self.load_with(run_id, true).await?;
        let folded = Folded::of(&journal);
        if let Some(end) = folded.ended {
            if cancel {
                return Err(Error::State {
                    run_id: run_id.to_string(),
                    message: "it has ended: there is nothing to cancel".to_string(),
                });
            }
            return self.ended(run_id, &folded.reactor, end);
        }
        let reg = self.registered(&folded.reactor)?;
        let context = self
            .inner
            .context
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plan = reg.reactor.plan().clone();
        let migrated = self
            .inner
            .migrations
            .allows(&folded.reactor, &folded.def_hash);
        let (state, mut recovered) = folded.rebuild(
            run_id,
            &reg.def,
            migrated,
            &plan,
            &self.inner.steps,
            context,
        )?;
        recovered.cancel = cancel;
        let journal = folded.claim(&self.inner.store, run_id).await?;
        let request = reg.reactor.resume(state);
        self.drive(request, journal, Some(recovered), live).await
    }

    async fn drive(
        &self,
        request: RunRequest,
        journal: RunJournal,
        recovered: Option<Recovered>,
        live: LiveGuard,
    ) -> Result<Value, Error> {
        let run_id = live.run_id.clone();
        let fresh = recovered.is_none();
        let nested = Nested {
            store: self.inner.store.clone(),
            steps: self.inner.steps.clone(),
            migrations: self.inner.migrations.clone(),
        };
        let durable = Durable {
            cancel: Some(live.cancel.clone()),
            ..nested.durable(journal, recovered)
        };
        let journal = durable.journal.clone();
        let configure = self
            .inner
            .configure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut request = request.journalled(durable);
        if let Some(configure) = configure {
            request = configure(request);
        }
        let outcome = request.outcome().await;
        drop(live);
        // Fenced off: the run is another driver's now, whatever this one
        // made of it.
        if let Some(fenced) = journal.fenced() {
            return Err(Error::Store(fenced));
        }
        let ended = self.ended_drive(&run_id, fresh, &journal, outcome).await;
        if ended.is_err() {
            // Not driven any further here, ended or not (a journal that
            // broke leaves it running): handed back, so that this store
            // stops renewing its lease and another driver can take it up
            // from its journal. For a run whose end was committed there is
            // nothing to hand back, and the store sends no statement.
            if let Some(leases) = self.inner.store.leases() {
                if let Err(e) = leases.release(std::slice::from_ref(&run_id)).await {
                    tracing::warn!(run_id = %run_id, error = %e, "handing a run back failed: it is taken up when its lease expires");
                }
            }
        }
        ended
    }

    /// What a drive's outcome means for its caller, a new run refused
    /// before it ran ending in its journal.
    async fn ended_drive(
        &self,
        run_id: &str,
        fresh: bool,
        journal: &crate::journal::RunJournal,
        outcome: Result<RunOutcome, Error>,
    ) -> Result<Value, Error> {
        match outcome {
            Ok(RunOutcome::Completed(done)) => Ok(done.into_value()),
            Ok(RunOutcome::Halted(halted)) => {
                // The journal holds what it needs to resume; nothing is
                // kept in memory.
                drop(halted.into_state());
                Err(Error::State {
                    run_id: run_id.to_string(),
                    message: "it halted; resume it with `Runtime::resume`".to_string(),
                })
            }
            // A failed run journalled its own end; a run taken up that is
            // refused before it runs (a middleware's `init`, a state that
            // does not fit) is left as it is, steps to undo and all.
            Err(e @ Error::Run(_)) => Err(e),
            Err(e) if !fresh => Err(e),
            Err(e) => {
                // A new run refused before it ran: nothing to undo, its
                // journal ends here.
                let failure = crate::journal::StepFailure {
                    step: String::new(),
                    phase: "run".to_string(),
                    attempt: 0,
                    message: e.to_string(),
                };
                let end = RunEnd::Failed {
                    errors: vec![failure],
                };
                if let Err(store) = journal.write(Entry::RunEnded { end }).await {
                    tracing::error!(run_id = %run_id, error = %store, "the journal failed at the run's end");
                }
                Err(e)
            }
        }
    }
}

/// A durable run about to start ([`Runtime::start`]): `.await` it for its
/// result.
#[must_use = "a run does nothing until awaited"]
pub struct Start {
    runtime: Runtime,
    reactor: String,
    inputs: Inputs,
    run_id: Option<String>,
    idempotency_key: Option<String>,
}

impl Start {
    /// The run's id (default: a random UUID).
    pub fn run_id(mut self, id: impl Into<String>) -> Start {
        self.run_id = Some(id.into());
        self
    }

    /// A key that deduplicates submissions: starting a run with a key
    /// already used starts nothing, and returns the first run's result if
    /// it has ended (an error naming it if it has not).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Start {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Submits the run for a worker to claim ([`Worker`](super::Worker)),
    /// in this process or any other sharing the store, and returns its id
    /// at once; with an idempotency key already used, the first run's id.
    /// Its status and result are read by id ([`Runtime::status`],
    /// [`Runtime::result`]).
    pub async fn submit(self) -> Result<String, Error> {
        let (run, _, _) = self.prepare(true)?;
        let id = run.id.clone();
        match create_with_retry(&*self.runtime.inner.store, run).await? {
            Created::New => Ok(id),
            Created::Existing(existing) => Ok(existing),
        }
    }

    /// The run to create, its checked inputs and its reactor.
    fn prepare(&self, queued: bool) -> Result<(NewRun, ValueMap, Arc<Registered>), Error> {
        let reg = self.runtime.registered(&self.reactor)?;
        let mut inputs = self.inputs.0.clone();
        // Checked before anything is journalled, as the run would.
        check_inputs(reg.reactor.plan(), &mut inputs)?;
        let mut encoded = std::collections::BTreeMap::new();
        for (name, value) in &inputs {
            encoded.insert(name.clone(), reg.def.inputs[name].encode(value)?);
        }
        let run_id = self
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if run_id.contains('/') {
            return Err(Error::InvalidOption {
                option: "run_id",
                message: format!(
                    "`{run_id}` contains `/`, which separates the ids of nested runs from their parents'"
                ),
            });
        }
        let first = Record::new(
            0,
            Entry::RunStarted {
                reactor: self.reactor.clone(),
                def_hash: reg.def.hash.clone(),
                definition: reg.def.lines.clone(),
                inputs: encoded,
                idempotency_key: self.idempotency_key.clone(),
            },
        );
        let run = NewRun {
            id: run_id,
            reactor: self.reactor.clone(),
            idempotency_key: self.idempotency_key.clone(),
            first,
            queued,
        };
        Ok((run, inputs, reg))
    }

    async fn go(self) -> Result<Value, Error> {
        let (run, inputs, reg) = self.prepare(false)?;
        let rt = self.runtime;
        let run_id = run.id.clone();
        let Some(live) = rt.go_live(&run_id) else {
            return Err(Error::State {
                run_id,
                message: "it is being driven by this runtime".to_string(),
            });
        };
        let created = create_with_retry(&*rt.inner.store, run).await?;
        if let Created::Existing(existing) = created {
            drop(live);
            let journal = rt.load(&existing).await?;
            let folded = Folded::of(&journal);
            return match folded.ended {
                Some(end) => rt.ended(&existing, &folded.reactor, end),
                None => Err(Error::State {
                    run_id: existing,
                    message: format!(
                        "a run with this idempotency key is {}",
                        journal.run.status.as_str()
                    ),
                }),
            };
        }
        let context = rt
            .inner
            .context
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut request = reg.reactor.run(Inputs(inputs)).run_id(run_id.clone());
        for (k, v) in context {
            request = request.context(k, v);
        }
        let journal = RunJournal::new(rt.inner.store.clone(), run_id, 1, 1);
        rt.drive(request, journal, None, live).await
    }
}

impl IntoFuture for Start {
    type Output = Result<Value, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Value, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.go())
    }
}

/// Creates a run, retrying a transient store failure with backoff.
async fn create_with_retry(store: &dyn Store, run: NewRun) -> Result<Created, StoreError> {
    let id = run.id.clone();
    with_retry(&id, || store.create_run(run.clone())).await
}
