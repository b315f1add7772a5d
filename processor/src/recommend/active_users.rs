//! The users whose recommendations are due: noted by the checkpoint stage when it
//! copies their recent products ([`crate::pipeline`]), taken by the
//! [`super::publisher`] each round. Kept
//! apart from both so that neither depends on the other.

use std::collections::HashSet;
use std::sync::Mutex;

/// Users kept waiting for their next round at most; beyond this, more are not noted
/// (counted in `processor_recommendations_dropped_total`) until a round has run.
const MAX_WAITING_USERS: usize = 1_000_000;

/// The users whose recommendations are due at the next round, shared between the
/// consume loop and the publisher.
#[derive(Debug, Default)]
pub struct ActiveUsers {
    users: Mutex<HashSet<String>>,
}

impl ActiveUsers {
    /// Notes `users` for the next round; returns how many could not be noted (bound
    /// reached).
    pub fn add<'a>(&self, users: impl IntoIterator<Item = &'a str>) -> usize {
        let mut waiting = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused = 0;
        for user in users {
            if waiting.contains(user) {
                continue;
            }
            if waiting.len() >= MAX_WAITING_USERS {
                refused += 1;
            } else {
                waiting.insert(user.to_owned());
            }
        }
        metrics::gauge!("processor_recommendations_waiting_users").set(waiting.len() as f64);
        refused
    }

    /// Takes every noted user, in a stable order.
    pub(super) fn take(&self) -> Vec<String> {
        let mut waiting = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut users: Vec<String> = waiting.drain().collect();
        users.sort_unstable();
        users
    }

    pub(super) fn len(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_users_are_noted_once_and_taken_in_order() {
        let active = ActiveUsers::default();
        assert_eq!(active.add(["b", "a", "b"]), 0);
        assert_eq!(active.add(["a", "c"]), 0);
        assert_eq!(active.take(), vec!["a", "b", "c"]);
        assert!(active.take().is_empty(), "taken means gone");
    }

    #[test]
    fn active_users_are_bounded() {
        let active = ActiveUsers::default();
        let many: Vec<String> = (0..MAX_WAITING_USERS).map(|i| format!("u{i}")).collect();
        assert_eq!(active.add(many.iter().map(String::as_str)), 0);
        assert_eq!(active.add(["u1", "new"]), 1, "a known user is not refused");
        assert_eq!(active.take().len(), MAX_WAITING_USERS);
        assert_eq!(active.add(["new"]), 0, "room again after a round");
    }
}
