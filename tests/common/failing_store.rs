//! [`FailingStore`]: a store whose appends fail for good after a number
//! of them, counted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use reactor::journal::{
    Created, Journal, Leases, NewRun, Record, RunStatus, RunSummary, Store, StoreError,
};

/// Passes everything to `inner` (its leases too), but fails every append
/// after the first `ok` with an error that cannot pass, and counts the
/// appends (each a commit of the journal).
pub struct FailingStore {
    pub inner: Arc<dyn Store>,
    pub ok: AtomicU32,
    pub appends: Arc<AtomicU32>,
}

impl FailingStore {
    /// `inner`, failing after `ok` appends.
    pub fn new(inner: Arc<dyn Store>, ok: u32) -> FailingStore {
        FailingStore {
            inner,
            ok: AtomicU32::new(ok),
            appends: Arc::default(),
        }
    }
}

#[reactor::async_trait]
impl Store for FailingStore {
    async fn create_run(&self, run: NewRun) -> Result<Created, StoreError> {
        self.inner.create_run(run).await
    }
    async fn append(&self, run_id: &str, epoch: u32, records: &[Record]) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if self.ok.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.ok.store(0, Ordering::SeqCst);
            return Err(StoreError::Closed);
        }
        self.inner.append(run_id, epoch, records).await
    }
    async fn load(&self, run_id: &str) -> Result<Journal, StoreError> {
        self.inner.load(run_id).await
    }
    async fn runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.runs(status).await
    }
    async fn purge(&self, ended_before_ms: u64) -> Result<u64, StoreError> {
        self.inner.purge(ended_before_ms).await
    }
    fn leases(&self) -> Option<&dyn Leases> {
        self.inner.leases()
    }
}
