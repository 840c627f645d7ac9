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
//! A run handed back stays let go whatever else its old driver had
//! queued (a write queued before the driver was stopped commits after
//! the hand-back): only taking it up again (a claim, or a write that
//! resumes it) holds it again.

use std::collections::HashSet;
use std::sync::Mutex;

use super::record::RunStatus;

/// The runs this store holds.
#[derive(Default)]
pub(super) struct Held(Mutex<Runs>);

#[derive(Default)]
struct Runs {
    held: HashSet<String>,
    /// Handed back while held, and not taken up again since.
    let_go: HashSet<String>,
}

impl Runs {
    fn hold(&mut self, run: &str) {
        self.let_go.remove(run);
        if !self.held.contains(run) {
            self.held.insert(run.to_string());
        }
    }
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `runs` are held now (claimed or created).
    pub(super) fn take<'a>(&self, runs: impl IntoIterator<Item = &'a str>) {
        let mut runs_ = self.lock();
        for run in runs {
            runs_.hold(run);
        }
    }

    /// `runs` are no longer held (handed back); those of them whose rows
    /// may still name this store's worker (held, or let go before and
    /// not ended since): the hand-back has nothing to do for the others,
    /// whose end this store committed.
    pub(super) fn let_go<'a>(&self, runs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut runs_ = self.lock();
        let mut named = Vec::new();
        for run in runs {
            if runs_.held.remove(run) {
                runs_.let_go.insert(run.to_string());
                named.push(run.to_string());
            } else if runs_.let_go.contains(run) {
                named.push(run.to_string());
            }
        }
        named
    }

    /// A write to `run` committed, leaving it in `status`; `resumed` if
    /// it took the run up (a new epoch). A run is held while it runs or
    /// unwinds, unless it was let go and this write does not take it up
    /// again.
    pub(super) fn wrote(&self, run: &str, status: RunStatus, resumed: bool) {
        let mut runs = self.lock();
        match status {
            RunStatus::Running | RunStatus::Unwinding => {
                if resumed || !runs.let_go.contains(run) {
                    runs.hold(run);
                }
            }
            _ => {
                runs.held.remove(run);
                runs.let_go.remove(run);
            }
        }
    }

    /// The runs held, for the renewal.
    pub(super) fn ids(&self) -> Vec<String> {
        self.lock().held.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(held: &Held) -> Vec<String> {
        let mut ids = held.ids();
        ids.sort();
        ids
    }

    #[test]
    fn a_run_is_held_until_handed_back_or_ended() {
        let held = Held::default();
        held.take(["a", "b", "c"]);
        held.wrote("d", RunStatus::Running, false);
        held.wrote("a", RunStatus::Completed, false);
        held.wrote("b", RunStatus::Halted, false);
        held.wrote("e", RunStatus::Unwinding, false);
        assert_eq!(held.let_go(["c", "never", "a"]), ["c"]);
        assert_eq!(sorted(&held), ["d", "e"]);
        // Handed back again (the first hand-back failed): still named.
        assert_eq!(held.let_go(["c"]), ["c"]);
    }

    #[test]
    fn a_write_queued_before_a_hand_back_does_not_hold_the_run_again() {
        let held = Held::default();
        held.take(["a", "b"]);
        held.let_go(["a", "b"]);
        // The stopped driver's last writes commit after the hand-back.
        held.wrote("a", RunStatus::Running, false);
        held.wrote("b", RunStatus::Unwinding, false);
        assert!(held.ids().is_empty());
        // Taken up again: by a write that resumes it, or by a claim.
        held.wrote("a", RunStatus::Running, true);
        held.take(["b"]);
        assert_eq!(sorted(&held), ["a", "b"]);
        // Ended: nothing is kept for it.
        held.let_go(["a"]);
        held.wrote("a", RunStatus::Completed, false);
        assert_eq!(sorted(&held), ["b"]);
    }
}
