//! Brute-force protection of password logins: after `Limits::login_failures_max` failed
//! logins of one user name in a row, that name is locked for `Limits::login_lockout_s`,
//! whatever password comes. A login that succeeds clears the count; so does a pause as
//! long as the lockout. Names that do not exist are counted the same, so the answers
//! say nothing of which names exist.
//!
//! The count is kept in the server's memory: each server process of a shared database
//! counts on its own, and a restart forgets it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most user names tracked; when full, names that are not locked are forgotten first.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins by user name.
#[derive(Default)]
pub(crate) struct Lockout {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Lockout {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `name` is locked now.
    pub(crate) fn is_locked(&self, name: &str) -> bool {
        let now = Instant::now();
        self.entries()
            .get(name)
            .and_then(|entry| entry.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failed login of `name`; the `max`th in a row locks it for `lockout`.
    pub(crate) fn failed(&self, name: &str, max: u32, lockout: Duration) {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(name) {
            entries.retain(|_, entry| entry.locked_until.is_some_and(|until| now < until));
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        let entry = entries.entry(name.to_string()).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
        });
        let expired = entry.locked_until.is_some_and(|until| now >= until)
            || now.duration_since(entry.last) >= lockout;
        if expired {
            entry.failures = 0;
            entry.locked_until = None;
        }
        entry.failures += 1;
        entry.last = now;
        if entry.failures >= max.max(1) {
            entry.locked_until = Some(now + lockout);
        }
    }

    /// A successful login of `name` clears its count.
    pub(crate) fn succeeded(&self, name: &str) {
        self.entries().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_failure_locks_and_the_lock_expires() {
        let lockout = Lockout::default();
        let long = Duration::from_secs(60);
        for _ in 0..2 {
            lockout.failed("jdoe", 3, long);
        }
        assert!(!lockout.is_locked("jdoe"));
        lockout.failed("jdoe", 3, long);
        assert!(lockout.is_locked("jdoe"));
        assert!(!lockout.is_locked("other"));

        let short = Duration::from_millis(50);
        for _ in 0..3 {
            lockout.failed("brief", 3, short);
        }
        assert!(lockout.is_locked("brief"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!lockout.is_locked("brief"));
        lockout.failed("brief", 3, short);
        assert!(!lockout.is_locked("brief"), "the count starts over");
    }

    #[test]
    fn a_success_clears_the_count() {
        let lockout = Lockout::default();
        let long = Duration::from_secs(60);
        lockout.failed("jdoe", 2, long);
        lockout.succeeded("jdoe");
        lockout.failed("jdoe", 2, long);
        assert!(!lockout.is_locked("jdoe"));
    }
}
