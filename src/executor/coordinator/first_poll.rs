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
/// share the work better than the coordinator alone.
pub(super) const CHEAP: Duration = Duration::from_micros(2);
/// The first this many first polls in the coordinator are timed, then
/// one in this many.
const SAMPLE: u32 = 8;
/// Once first polls have proven costly or kept awaiting, one in this
/// many still runs in the coordinator (timed), to notice a change.
const PROBE: u32 = 64;
/// After this many first polls in a row that did not end the attempt,
/// the run's attempts start in their tasks.
const AWAITED: u32 = 8;

/// The run's record of its first polls.
#[derive(Default)]
pub(super) struct FirstPolls {
    /// The moving average of the timed ones, in nanoseconds: cheap until
    /// shown otherwise (it starts at zero, so one cold poll does not send
    /// the run's steps away).
    average_ns: u64,
    started: u32,
    /// First polls in a row that did not end their attempt.
    awaited: u32,
}

/// Where the next attempt starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// In the coordinator, timed or not.
    Here { timed: bool },
    /// In a task of its own.
    Task,
}

impl FirstPolls {
    /// Where the next attempt starts.
    pub(super) fn next(&mut self) -> Start {
        let n = self.started;
        self.started = n.wrapping_add(1);
        if u128::from(self.average_ns) >= CHEAP.as_nanos() || self.awaited >= AWAITED {
            return match n.is_multiple_of(PROBE) {
                true => Start::Here { timed: true },
                false => Start::Task,
            };
        }
        Start::Here {
            timed: n < SAMPLE || n.is_multiple_of(SAMPLE),
        }
    }

    /// A first poll here ended its attempt, or not.
    pub(super) fn ended(&mut self, ended: bool) {
        self.awaited = if ended {
            0
        } else {
            self.awaited.saturating_add(1)
        };
    }

    /// A timed first poll took `took`. A sample counts for at most twice
    /// [`CHEAP`]: one poll the machine happened to preempt does not
    /// decide alone.
    pub(super) fn took(&mut self, took: Duration) {
        let capped = took.min(2 * CHEAP);
        self.average_ns = super::averaged(Some(self.average_ns), capped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(polls: &mut FirstPolls, n: usize, each: Duration) -> Vec<Start> {
        starts_ending(polls, n, each, true)
    }

    fn starts_ending(polls: &mut FirstPolls, n: usize, each: Duration, ends: bool) -> Vec<Start> {
        (0..n)
            .map(|_| {
                let start = polls.next();
                if let Start::Here { timed } = start {
                    if timed {
                        polls.took(each);
                    }
                    polls.ended(ends);
                }
                start
            })
            .collect()
    }

    #[test]
    fn cheap_first_polls_all_start_here_and_a_sample_is_timed() {
        let mut polls = FirstPolls::default();
        let starts = starts(&mut polls, 100, Duration::from_nanos(300));
        assert!(starts.iter().all(|s| matches!(s, Start::Here { .. })));
        let timed = starts
            .iter()
            .filter(|s| **s == Start::Here { timed: true })
            .count();
        assert_eq!(timed, 8 + 12, "the first 8, then one in 8");
    }

    #[test]
    fn costly_first_polls_send_the_rest_to_tasks_but_for_probes() {
        let mut polls = FirstPolls::default();
        let starts = starts(&mut polls, 200, Duration::from_millis(5));
        let here: Vec<usize> = (0..200).filter(|&i| starts[i] != Start::Task).collect();
        assert_eq!(here, vec![0, 1, 2, 64, 128, 192]);
    }

    #[test]
    fn attempts_that_keep_awaiting_start_in_their_tasks() {
        let mut polls = FirstPolls::default();
        let starts = starts_ending(&mut polls, 130, Duration::from_nanos(300), false);
        let here: Vec<usize> = (0..130).filter(|&i| starts[i] != Start::Task).collect();
        assert_eq!(here, vec![0, 1, 2, 3, 4, 5, 6, 7, 64, 128]);
        // A probe that answers at once brings them back.
        starts_ending(&mut polls, 63, Duration::from_nanos(300), true);
        starts_ending(&mut polls, 1, Duration::from_nanos(300), true);
        assert!(matches!(polls.next(), Start::Here { .. }));
    }

    #[test]
    fn one_preempted_poll_does_not_decide() {
        let mut polls = FirstPolls::default();
        starts(&mut polls, 20, Duration::from_nanos(300));
        polls.next();
        polls.took(Duration::from_millis(50));
        assert!(matches!(polls.next(), Start::Here { .. }));
    }

    #[test]
    fn cheap_probes_bring_first_polls_back() {
        let mut polls = FirstPolls::default();
        starts(&mut polls, 10, Duration::from_millis(1));
        assert_eq!(polls.next(), Start::Task);
        starts(&mut polls, 64 * 8, Duration::from_nanos(200));
        assert!(matches!(polls.next(), Start::Here { .. }));
    }
}
