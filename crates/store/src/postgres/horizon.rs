//! The history horizon. Versions are ordered by `last_updated`, which a writer takes
//! from the clock before it commits, so a transaction that took an earlier instant can
//! commit after one that took a later instant. A reader paging `_history` or polling
//! `_since` who saw the later one first would never see the earlier one. So history
//! shows only versions below the horizon of its read: the first instant that a
//! transaction of this store had taken and not yet ended when the read began, and,
//! when transactions of this store began while it read, the first instant any of them
//! could take. Everything below it had ended before the read's snapshot: committed (and
//! visible) or rolled back.
//!
//! The clock and the set of instants in flight share one lock, so no transaction can
//! take an instant between the two. Writers in other processes on the same database
//! (another server) are not covered: their instants come from their own clocks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::Instant;
use crate::prepared::Clock;

pub(super) struct Times {
    pub(super) clock: Clock,
    /// The first instant each transaction in flight may take, with how many took it.
    in_flight: BTreeMap<i64, usize>,
    /// How many transactions have begun taking instants.
    entered: u64,
}

/// What a read notes before its snapshot, to find its horizon after (see
/// [`Times::horizon`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadStart {
    first_in_flight: Option<i64>,
    next: i64,
    entered: u64,
}

impl Times {
    pub(super) fn new(last: Instant) -> Times {
        Times {
            clock: Clock { last },
            in_flight: BTreeMap::new(),
            entered: 0,
        }
    }

    /// Noted before a read's snapshot.
    pub(super) fn read_start(&self) -> ReadStart {
        ReadStart {
            first_in_flight: self.in_flight.keys().next().copied(),
            next: self.clock.last.0.saturating_add(1),
            entered: self.entered,
        }
    }

    /// The instant a read that began at `start` shows versions below, if any; asked
    /// after the read's snapshot was taken.
    pub(super) fn horizon(&self, start: ReadStart) -> Option<i64> {
        let began_since = (self.entered != start.entered).then_some(start.next);
        match (start.first_in_flight, began_since) {
            (Some(first), Some(next)) => Some(first.min(next)),
            (first, next) => first.or(next),
        }
    }
}

impl ReadStart {
    /// The part of the horizon known before the read (for its SQL).
    pub(super) fn first_in_flight(&self) -> Option<i64> {
        self.first_in_flight
    }
}

/// A transaction's instants, in flight until this is dropped (after its commit or
/// rollback).
pub(super) struct InFlight {
    times: Arc<Mutex<Times>>,
    first: i64,
}

impl InFlight {
    /// Marks every instant `times.clock` hands out from now on as in flight; call with
    /// `times` locked, before the transaction takes its instants, and unlock before
    /// the result can drop.
    pub(super) fn enter(shared: &Arc<Mutex<Times>>, times: &mut Times) -> InFlight {
        let first = times.clock.last.0.saturating_add(1);
        *times.in_flight.entry(first).or_insert(0) += 1;
        times.entered += 1;
        InFlight {
            times: shared.clone(),
            first,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut times = self
            .times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = times.in_flight.get_mut(&self.first) {
            *count -= 1;
            if *count == 0 {
                times.in_flight.remove(&self.first);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enter(shared: &Arc<Mutex<Times>>) -> InFlight {
        let mut times = shared.lock().unwrap();
        let entered = InFlight::enter(shared, &mut times);
        times.clock.tick();
        entered
    }

    #[test]
    fn the_horizon_is_the_first_instant_in_flight() {
        let shared = Arc::new(Mutex::new(Times::new(Instant(100))));
        let quiet = shared.lock().unwrap().read_start();
        assert_eq!(
            shared.lock().unwrap().horizon(quiet),
            None,
            "nothing written"
        );
        let first = enter(&shared);
        let second = enter(&shared);
        let start = shared.lock().unwrap().read_start();
        assert_eq!(start.first_in_flight(), Some(first.first));
        // The later one ends first: the earlier one still holds the horizon.
        drop(second);
        assert_eq!(shared.lock().unwrap().horizon(start), Some(first.first));
        drop(first);
        let start = shared.lock().unwrap().read_start();
        assert_eq!(shared.lock().unwrap().horizon(start), None);
    }

    #[test]
    fn transactions_that_begin_during_a_read_bound_it_at_the_next_instant() {
        let shared = Arc::new(Mutex::new(Times::new(Instant(100))));
        drop(enter(&shared));
        let start = shared.lock().unwrap().read_start();
        let next = shared.lock().unwrap().clock.last.0 + 1;
        // Begun and ended while the read ran: it may have committed after the
        // snapshot, below a later one that committed before.
        drop(enter(&shared));
        assert_eq!(shared.lock().unwrap().horizon(start), Some(next));
    }
}
