//! Where an awaiting step's attempt starts: the coordinator runs it up to
//! its first await while that has proven cheaper than handing it to a
//! task of its own, so a step that answers at once needs no task at all.
//! Attempts whose first polls cost too much, or that keep awaiting anyway
//! (then the poll here saved nothing), start in their tasks. This module
//! owns that choice; it decides where, never what.

use std::time::Duration;

/// A first poll costing less than this, on average, runs in the
/// coordinator: less than what handing it to a task (a spawn, a report,
/// waking the coordinator) costs the coordinator. Beyond it, the cores
/// share the work better than the coordinator alone. (An unoptimised
/// build does everything, the hand-off included, some 20 times slower.)
pub(super) const CHEAP: Duration = if cfg!(debug_assertions) {
    Duration::from_micros(40)
} else {
    Duration::from_micros(2)
};
/// A first poll this long is *heavy*: two within [`PROBE`] polls of each
/// other send the attempts after them to their tasks, whatever the
/// average says (heavy polls among many cheap ones would otherwise run one
/// after another here). One alone is taken for what it mostly is on a
/// shared machine: a page fault or a preempted thread.
const LONG: Duration = CHEAP.saturating_mul(10);
/// Once first polls have proven costly or kept awaiting, one in this
/// many still runs in the coordinator, to notice a change.
const PROBE: u32 = 64;
/// After this many first polls in a row that did not end the attempt,
/// the run's attempts start in their tasks.
const AWAITED: u32 = 8;

/// The run's record of its first polls.
#[derive(Default)]
pub(super) struct FirstPolls {
    /// The moving average of their cost, in nanoseconds, each counting
    /// for at most twice [`CHEAP`]: cheap until shown otherwise (it starts
    /// at zero, so one cold poll does not send the run's steps away).
    average_ns: u64,
    started: u32,
    /// First polls in a row that did not end their attempt.
    awaited: u32,
    /// When (in starts) the last heavy poll was.
    last_heavy: Option<u32>,
}

/// Where the next attempt starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// In the coordinator (then report what its poll took).
    Here,
    /// In a task of its own.
    Task,
}

impl FirstPolls {
    /// Where the next attempt starts.
    pub(super) fn next(&mut self) -> Start {
        let n = self.started;
        self.started = n.wrapping_add(1);
        let costly = u128::from(self.average_ns) >= CHEAP.as_nanos();
        if (costly || self.awaited >= AWAITED) && !n.is_multiple_of(PROBE) {
            return Start::Task;
        }
        Start::Here
    }

    /// A first poll here took `took`, and `ended` its attempt or not.
    pub(super) fn took(&mut self, took: Duration, ended: bool) {
        self.awaited = if ended {
            0
        } else {
            self.awaited.saturating_add(1)
        };
        let cap = 2 * CHEAP;
        self.average_ns = super::averaged(Some(self.average_ns), took.min(cap));
        if took >= LONG {
            let now = self.started.wrapping_sub(1);
            if self
                .last_heavy
                .is_some_and(|then| now.wrapping_sub(then) < PROBE)
            {
                self.average_ns = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
            }
            self.last_heavy = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` starts, each poll here taking `each` and ending its attempt or
    /// not; the indices of those that started here.
    fn here(polls: &mut FirstPolls, n: usize, each: Duration, ends: bool) -> Vec<usize> {
        (0..n)
            .filter(|_| {
                let start = polls.next();
                if start == Start::Here {
                    polls.took(each, ends);
                }
                start == Start::Here
            })
            .collect()
    }

    #[test]
    fn cheap_first_polls_all_start_here() {
        let mut polls = FirstPolls::default();
        let here = here(&mut polls, 100, CHEAP / 8, true);
        assert_eq!(here.len(), 100);
    }

    #[test]
    fn costly_first_polls_send_the_rest_to_tasks_but_for_probes() {
        let mut polls = FirstPolls::default();
        let here = here(&mut polls, 200, CHEAP * 5 / 2, true);
        assert_eq!(here, vec![0, 1, 2, 64, 128, 192]);
    }

    #[test]
    fn one_heavy_poll_alone_does_not_decide() {
        let mut polls = FirstPolls::default();
        for _ in 0..5 {
            here(&mut polls, 70, CHEAP / 8, true);
            assert_eq!(polls.next(), Start::Here);
            polls.took(LONG * 100, true);
        }
        assert_eq!(polls.next(), Start::Here);
    }

    #[test]
    fn heavy_polls_among_cheap_ones_send_the_rest_to_tasks() {
        let mut polls = FirstPolls::default();
        for _ in 0..2 {
            here(&mut polls, 7, CHEAP / 8, true);
            assert_eq!(polls.next(), Start::Here);
            polls.took(LONG * 100, true);
        }
        assert_eq!(polls.next(), Start::Task);
    }

    #[test]
    fn attempts_that_keep_awaiting_start_in_their_tasks() {
        let mut polls = FirstPolls::default();
        let started = here(&mut polls, 130, CHEAP / 8, false);
        assert_eq!(started, vec![0, 1, 2, 3, 4, 5, 6, 7, 64, 128]);
        // A probe that answers at once brings them back.
        here(&mut polls, 63, CHEAP / 8, true);
        assert_eq!(polls.next(), Start::Here);
    }

    #[test]
    fn cheap_probes_bring_costly_first_polls_back() {
        let mut polls = FirstPolls::default();
        here(&mut polls, 10, LONG * 5, true);
        assert_eq!(polls.next(), Start::Task);
        here(&mut polls, 64 * 8, CHEAP / 10, true);
        assert_eq!(polls.next(), Start::Here);
    }
}
