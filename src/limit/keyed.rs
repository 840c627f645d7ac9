//! Keyed concurrency: at most `per_key` permits out at once per key,
//! counted in this process, or, shared, in a store every worker counts
//! in (this process's holding per key stated with each claim, so a lost
//! or repeated statement heals at the next).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{retry_after, KeyFn, SharedLimits};

pub(super) struct Keyed {
    pub(super) per_key: u32,
    pub(super) key: KeyFn,
    state: Arc<State>,
}

struct State {
    /// Permits out per key in this process (no entry: none).
    held: Mutex<HashMap<String, u32>>,
    /// Notified whenever a permit is given back.
    released: Notify,
    shared: Option<Arc<dyn SharedLimits>>,
    /// Serializes this process's statements to the store, each of which
    /// states the holding it reads under this lock.
    claiming: tokio::sync::Mutex<()>,
}

impl State {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self, key: &str) -> u32 {
        self.held().get(key).copied().unwrap_or(0)
    }

    /// Tells the store this process's holding of `key` now, retrying a
    /// failed statement a few times (the next claim states it anyway).
    async fn state_holding(&self, shared: &dyn SharedLimits, name: &str, key: &str, per_key: u32) {
        for tries in 0..8 {
            let result = {
                let _claiming = self.claiming.lock().await;
                shared.claim(name, key, per_key, self.running(key), 0).await
            };
            match result {
                Ok(_) => return,
                Err(e) if tries == 7 => {
                    tracing::warn!(limit = name, key, error = %e, "giving back a shared keyed permit failed");
                }
                Err(_) => tokio::time::sleep(retry_after(tries)).await,
            }
        }
    }
}

/// A permit of a keyed limit: given back when dropped.
pub(crate) struct KeyedPermit {
    state: Arc<State>,
    name: String,
    key: String,
    per_key: u32,
}

impl KeyedPermit {
    fn new(state: Arc<State>, name: &str, key: String, per_key: u32) -> KeyedPermit {
        KeyedPermit {
            state,
            name: name.to_string(),
            key,
            per_key,
        }
    }
}

impl Drop for KeyedPermit {
    fn drop(&mut self) {
        {
            let mut held = self.state.held();
            if let Some(n) = held.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.key);
                }
            }
        }
        self.state.released.notify_waiters();
        let Some(shared) = self.state.shared.clone() else {
            return;
        };
        // Outside a runtime the store keeps the holding until this
        // worker's next claim of the key, or its lease, ends it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (state, name, key) = (self.state.clone(), self.name.clone(), self.key.clone());
            let per_key = self.per_key;
            rt.spawn(async move { state.state_holding(&*shared, &name, &key, per_key).await });
        }
    }
}

impl Keyed {
    pub(super) fn new(per_key: u32, key: KeyFn) -> Keyed {
        Keyed::with(per_key, key, None)
    }

    fn with(per_key: u32, key: KeyFn, shared: Option<Arc<dyn SharedLimits>>) -> Keyed {
        Keyed {
            per_key,
            key,
            state: Arc::new(State {
                held: Mutex::new(HashMap::new()),
                released: Notify::new(),
                shared,
                claiming: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The same limit, counted in `shared`.
    pub(super) fn shared(&self, shared: Arc<dyn SharedLimits>) -> Keyed {
        Keyed::with(self.per_key, self.key.clone(), Some(shared))
    }

    pub(super) fn running(&self, key: &str) -> u32 {
        self.state.running(key)
    }

    /// Waits until a permit of `key` is free, and takes it.
    pub(super) async fn acquire(&self, name: &str, key: String) -> KeyedPermit {
        match &self.state.shared {
            None => self.acquire_local(name, key).await,
            Some(shared) => self.acquire_shared(shared, name, key).await,
        }
    }

    async fn acquire_local(&self, name: &str, key: String) -> KeyedPermit {
        loop {
            let released = self.state.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut held = self.state.held();
                let n = held.entry(key.clone()).or_default();
                if *n < self.per_key {
                    *n += 1;
                    return KeyedPermit::new(self.state.clone(), name, key, self.per_key);
                }
            }
            released.await;
        }
    }

    /// Asks the store until it grants a permit (a release here is
    /// notified; another worker's is not, so it asks again, backing off).
    /// A store that fails is asked again too, never given up on: the step
    /// waits, as it would for a busy key.
    async fn acquire_shared(
        &self,
        shared: &Arc<dyn SharedLimits>,
        name: &str,
        key: String,
    ) -> KeyedPermit {
        let mut tries = 0;
        loop {
            let released = self.state.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            // Claimed in a task of its own, which makes the permit: if
            // this future is dropped mid-claim, the permit the store
            // granted is dropped there, given back.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (state, shared) = (self.state.clone(), shared.clone());
            let (name_, key_, per_key) = (name.to_string(), key.clone(), self.per_key);
            tokio::spawn(async move {
                let claiming = state.claiming.lock().await;
                let running = state.running(&key_);
                let granted = match shared.claim(&name_, &key_, per_key, running, 1).await {
                    Ok(c) => c.granted > 0,
                    Err(e) => {
                        tracing::warn!(limit = %name_, key = %key_, error = %e, "claiming a shared keyed permit failed: trying again");
                        false
                    }
                };
                if !granted {
                    let _ = tx.send(None);
                    return;
                }
                *state.held().entry(key_.clone()).or_default() += 1;
                drop(claiming);
                let _ = tx.send(Some(KeyedPermit::new(state, &name_, key_, per_key)));
            });
            if let Ok(Some(permit)) = rx.await {
                return permit;
            }
            tokio::select! {
                () = released => tries = 0,
                () = tokio::time::sleep(retry_after(tries)) => tries += 1,
            }
        }
    }
}
