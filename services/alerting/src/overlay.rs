//! Changes to a map staged over it: read through, written aside, applied
//! only once the database has what they describe. The alert engine stages
//! its open alerts, streaks and probe windows this way, so a failed write
//! leaves memory as it was and the same input can be judged again.

use std::collections::HashMap;
use std::hash::Hash;

/// What a staged map changes: `None` removes the key.
pub(crate) type Changes<K, V> = HashMap<K, Option<V>>;

/// A map's staged changes over the map they were read from.
pub(crate) struct Overlay<'a, K, V> {
    base: &'a HashMap<K, V>,
    changes: Changes<K, V>,
}

impl<'a, K: Eq + Hash + Clone, V: Clone> Overlay<'a, K, V> {
    pub(crate) fn new(base: &'a HashMap<K, V>) -> Self {
        Self {
            base,
            changes: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match self.changes.get(key) {
            Some(staged) => staged.as_ref(),
            None => self.base.get(key),
        }
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.changes.insert(key, Some(value));
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let current = self.get(key).cloned();
        if current.is_some() {
            self.changes.insert(key.clone(), None);
        }
        current
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.changes.contains_key(key) {
            let value = self.base.get(key)?.clone();
            self.changes.insert(key.clone(), Some(value));
        }
        self.changes.get_mut(key).and_then(Option::as_mut)
    }

    /// The key's value, staged; `make` when it has none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let base = self.base;
        let slot = self
            .changes
            .entry(key.clone())
            .or_insert_with(|| base.get(&key).cloned());
        slot.get_or_insert_with(make)
    }

    pub(crate) fn into_changes(self) -> Changes<K, V> {
        self.changes
    }
}

/// Applies staged changes to the map (after their commit).
pub(crate) fn apply<K: Eq + Hash, V>(map: &mut HashMap<K, V>, changes: Changes<K, V>) {
    for (key, value) in changes {
        match value {
            Some(value) => map.insert(key, value),
            None => map.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_writes_aside_and_applies_on_demand() {
        let mut base = HashMap::from([(1, "a"), (2, "b")]);
        let mut overlay = Overlay::new(&base);
        assert_eq!(overlay.remove(&1), Some("a"));
        overlay.insert(3, "c");
        *overlay.get_or_insert_with(2, || "z") = "B";
        assert_eq!(overlay.get(&1), None);
        assert_eq!(overlay.get(&2), Some(&"B"));
        assert_eq!(overlay.remove(&9), None);
        let changes = overlay.into_changes();
        assert_eq!(base.len(), 2, "the map is untouched until applied");
        apply(&mut base, changes);
        assert_eq!(base, HashMap::from([(2, "B"), (3, "c")]));
    }
}
