//! The journals of runs nested in a durable run's steps (`compose`,
//! `recurse`, a user's run [`within`](crate::RunRequest::within) a step):
//! a run of their own in the same store, new, or taken up where it stands
//! when its step runs again after a crash, or is undone.
//!
//! A nested run needs no registration: its reactor comes with the step
//! that runs it, and is checked for the journal when it starts (and when
//! its parent's reactor is registered, for `compose` and `recurse`). Its
//! id says whose it is (`parent/step.attempt.n`), so [`Runtime::recover`]
//! leaves it to its parent.
//!
//! [`Runtime::recover`]: super::Runtime::recover

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::definition::Definition;
use super::recover::{end_outcome, Folded};
use super::registry::StepRegistry;
use crate::error::Error;
use crate::executor::{Durable, NestedJournals, Opened, Recovered};
use crate::journal::run::with_retry;
use crate::journal::{Entry, NewRun, Record, RunJournal, Store, StoreError};
use crate::reactor::Reactor;
use crate::value::ValueMap;

/// The journals of nested runs: in `store`, their emitted steps rebuilt
/// by `steps`, taken up under a changed definition if `migrations` allow.
#[derive(Clone)]
pub(crate) struct Nested {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) steps: StepRegistry,
    pub(crate) migrations: Migrations,
}

/// The definitions under which journalled runs may go on under their
/// reactor as it is now ([`Runtime::migrate`](super::Runtime::migrate)),
/// for top-level and nested runs alike.
#[derive(Clone, Default)]
pub(crate) struct Migrations(Arc<RwLock<HashSet<(String, String)>>>);

impl Migrations {
    /// Runs of `reactor` journalled under `old_hash` may go on.
    pub(crate) fn allow(&self, reactor: String, old_hash: String) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((reactor, old_hash));
    }

    /// Whether runs of `reactor` journalled under `hash` may go on.
    pub(crate) fn allows(&self, reactor: &str, hash: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(reactor.to_string(), hash.to_string()))
    }
}

impl Nested {
    /// What makes a run durable with `journal`.
    pub(crate) fn durable(&self, journal: RunJournal, recovered: Option<Recovered>) -> Durable {
        Durable {
            journal: Arc::new(journal),
            recovered,
            cancel: None,
            steps: self.steps.clone(),
            nested: Arc::new(self.clone()),
        }
    }

    /// Journals the start of nested run `id`.
    async fn create(
        &self,
        id: &str,
        reactor: &Reactor,
        def: &Definition,
        inputs: &ValueMap,
    ) -> Result<Opened, Error> {
        let mut encoded = BTreeMap::new();
        for (name, value) in inputs {
            // Inputs the reactor does not declare are refused when it starts.
            if let Ok(codec) = def.input(name) {
                encoded.insert(name.clone(), codec.encode(value)?);
            }
        }
        let first = Record::new(
            0,
            Entry::RunStarted {
                reactor: reactor.name().to_string(),
                def_hash: def.hash.clone(),
                definition: def.lines.clone(),
                inputs: encoded,
                idempotency_key: None,
            },
        );
        let run = NewRun {
            id: id.to_string(),
            reactor: reactor.name().to_string(),
            idempotency_key: None,
            first,
            queued: false,
        };
        let store = &*self.store;
        with_retry(id, || store.create_run(run.clone())).await?;
        let journal = RunJournal::new(self.store.clone(), id.to_string(), 1, 1);
        Ok(Opened::New(self.durable(journal, None)))
    }
}

#[async_trait]
impl NestedJournals for Nested {
    async fn exists(&self, id: &str) -> Result<bool, Error> {
        let store = &*self.store;
        match with_retry(id, || store.load(id)).await {
            Ok(_) => Ok(true),
            Err(StoreError::UnknownRun(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn open(
        &self,
        id: &str,
        reactor: &Reactor,
        inputs: &ValueMap,
        undo: bool,
    ) -> Result<Opened, Error> {
        let def = Definition::of(reactor.plan())?;
        let store = &*self.store;
        let journal = match with_retry(id, || store.load(id)).await {
            Ok(journal) => journal,
            Err(StoreError::UnknownRun(_)) if undo => return Ok(Opened::Absent),
            Err(StoreError::UnknownRun(_)) => return self.create(id, reactor, &def, inputs).await,
            Err(e) => return Err(e.into()),
        };
        let folded = Folded::of(&journal);
        let completed = match folded.ended.clone().map(|end| end_outcome(id, end)) {
            None => false,
            Some(Ok(_)) => true,
            // It failed or was cancelled: it undid itself.
            Some(Err(_)) if undo => return Ok(Opened::Ended),
            Some(Err(e)) => return Err(e),
        };
        let migrated = self.migrations.allows(reactor.name(), &folded.def_hash);
        let (state, mut recovered) = folded.rebuild(
            id,
            &def,
            migrated,
            reactor.plan(),
            &self.steps,
            ValueMap::new(),
        )?;
        // Undos journalled outside an unwinding: its step undid it (it
        // failed or halted after it) and the crash came before the step's
        // end was journalled. It is undone to the end, not run again.
        let reverted = !folded.undone.is_empty() && folded.unwinding.is_none();
        let undo = undo || reverted;
        recovered.completed = completed;
        recovered.cancel = undo && !completed;
        // A completed run is only rebuilt (for its undo): it writes
        // nothing but its undos.
        let journal = if completed {
            RunJournal::new(
                self.store.clone(),
                id.to_string(),
                folded.next_seq,
                folded.epoch,
            )
            .with_replaced(folded.replaced())
        } else {
            folded.claim(&self.store, id).await?
        };
        if reverted {
            return Ok(Opened::Reverted(
                self.durable(journal, Some(recovered)),
                Box::new(state),
            ));
        }
        Ok(Opened::TakenUp(
            self.durable(journal, Some(recovered)),
            Box::new(state),
        ))
    }
}
