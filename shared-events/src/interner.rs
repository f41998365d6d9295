//! One shared copy of each user name. Both sides hold a user per resting order
//! (the write side) or per kept order (the read side); a name is then a pointer,
//! not a string per order. Names nobody holds any more are swept out when the table
//! has doubled since the last sweep, so the table follows the live users and a
//! sweep costs amortized O(1) per new name.

use std::sync::Arc;

/// Names kept before the first sweep: sweeping a small table is not worth it.
pub const INTERNED_SWEEP_MIN: usize = 100_000;

/// The interned user names.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    names: foldhash::HashSet<Arc<str>>,
    /// Names left after the last sweep.
    swept_len: usize,
}

impl Interner {
    /// The shared copy of `name`, added on first sight.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let name: Arc<str> = name.into();
        self.names.insert(name.clone());
        if self.names.len() > INTERNED_SWEEP_MIN.max(2 * self.swept_len) {
            // A name only the table holds belongs to no order any more.
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.swept_len = self.names.len();
        }
        name
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl FromIterator<Arc<str>> for Interner {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(names: I) -> Self {
        let names: foldhash::HashSet<Arc<str>> = names.into_iter().collect();
        Interner {
            swept_len: names.len(),
            names,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_name_and_unheld_names_are_swept() {
        let mut users = Interner::default();
        let alice = users.intern("alice");
        assert!(Arc::ptr_eq(&alice, &users.intern("alice")));
        // Fill past the sweep threshold with names nobody keeps.
        for i in 0..INTERNED_SWEEP_MIN {
            users.intern(&format!("u{i}"));
        }
        // The sweep ran on the name that crossed the threshold: what is left is
        // alice (held here) and that last name (held by the caller until now).
        assert_eq!(users.len(), 2);
        assert!(Arc::ptr_eq(&alice, &users.intern("alice")));
    }
}
