//! [`Held`]: the runs a [`PgStore`](super::PgStore) knows it holds, the
//! only runs its lease renewal renews.
//!
//! The table says which runs a worker owns; this set says which of them
//! the process still drives. They differ when an answer is lost: a claim
//! or a write that committed just before the connection broke (a server
//! restart), or a hand-back that failed. Renewing every run the table
//! gives the worker would keep such a run held forever by a worker that
//! no longer drives it, and no other worker would ever take it up. Left
//! out of this set, its lease runs out and any worker claims it.
//!
//! A run is held from when this store creates it (unless queued), claims
//! it, or commits a write to it that leaves it running or unwinding,
//! until it hands the run back or commits a write that ends or halts it.

use std::collections::HashSet;
use std::sync::Mutex;

use super::record::RunStatus;

/// The runs this store holds.
#[derive(Default)]
pub(super) struct Held(Mutex<HashSet<String>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `runs` are held now.
    pub(super) fn take<'a>(&self, runs: impl IntoIterator<Item = &'a str>) {
        let mut held = self.lock();
        for run in runs {
            if !held.contains(run) {
                held.insert(run.to_string());
            }
        }
    }

    /// `runs` are no longer held (handed back).
    pub(super) fn let_go<'a>(&self, runs: impl IntoIterator<Item = &'a str>) {
        let mut held = self.lock();
        for run in runs {
            held.remove(run);
        }
    }

    /// A write to `run` committed, leaving it in `status` (`None`: the
    /// status did not change): held while it runs or unwinds.
    pub(super) fn wrote(&self, run: &str, status: Option<RunStatus>) {
        match status {
            Some(RunStatus::Running | RunStatus::Unwinding) | None => self.take([run]),
            Some(_) => self.let_go([run]),
        }
    }

    /// The runs held, for the renewal.
    pub(super) fn ids(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_held_until_handed_back_or_ended() {
        let held = Held::default();
        held.take(["a", "b", "c"]);
        held.wrote("d", None);
        held.wrote("a", Some(RunStatus::Completed));
        held.wrote("b", Some(RunStatus::Halted));
        held.wrote("e", Some(RunStatus::Unwinding));
        held.let_go(["c", "never"]);
        let mut ids = held.ids();
        ids.sort();
        assert_eq!(ids, ["d", "e"]);
    }
}
