//! The credentials waiting on an object of their name that keyward does not control (a
//! `SecretConflict` or `ServiceAccountConflict`), by that object: a change of any Secret
//! or ServiceAccount (as the inventory's metadata watches show it) is looked up here in
//! O(1), and wakes only the credentials waiting on it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::backoff::ObjectId;
use crate::runtime::lock;

/// An object by kind (`Secret` or `ServiceAccount`), namespace and name.
pub type Blocker = (&'static str, String, String);

pub use crate::inventory::ObjectChange as Change;

#[derive(Default)]
struct Index {
    waiting: HashMap<Blocker, BTreeSet<ObjectId>>,
    by_credential: HashMap<ObjectId, Blocker>,
}

#[derive(Default)]
pub struct Conflicts {
    index: Mutex<Index>,
}

impl Conflicts {
    fn lock(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// Records what `credential` waits on after its last pass (None: nothing).
    pub fn set(&self, credential: ObjectId, blocker: Option<Blocker>) {
        let mut index = self.lock();
        let before = index.by_credential.get(&credential).cloned();
        if before == blocker {
            return;
        }
        if let Some(before) = before {
            index.by_credential.remove(&credential);
            if let Some(set) = index.waiting.get_mut(&before) {
                set.remove(&credential);
                if set.is_empty() {
                    index.waiting.remove(&before);
                }
            }
        }
        if let Some(blocker) = blocker {
            index
                .by_credential
                .insert(credential.clone(), blocker.clone());
            index.waiting.entry(blocker).or_default().insert(credential);
        }
    }

    /// The credentials a change concerns: those waiting on that object, or after a
    /// re-list every one waiting on an object of that kind.
    pub fn woken_by(&self, change: &Change) -> Vec<ObjectId> {
        match change {
            Change::Object((kind, namespace, name)) => self.waiting_on(kind, namespace, name),
            Change::Relisted(kind) => self.all_waiting_on(kind),
        }
    }

    /// The credentials waiting on any object of `kind`.
    fn all_waiting_on(&self, kind: &'static str) -> Vec<ObjectId> {
        self.lock()
            .waiting
            .iter()
            .filter(|(b, _)| b.0 == kind)
            .flat_map(|(_, s)| s.iter().cloned())
            .collect()
    }

    /// The credentials waiting on this object.
    fn waiting_on(&self, kind: &'static str, namespace: &str, name: &str) -> Vec<ObjectId> {
        self.lock()
            .waiting
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectId {
        ("ApiKey", Some("team".to_owned()), name.to_owned())
    }

    fn secret(name: &str) -> Blocker {
        ("Secret", "team".to_owned(), name.to_owned())
    }

    #[test]
    fn only_the_credentials_waiting_on_an_object_are_woken_by_it() {
        let conflicts = Conflicts::default();
        conflicts.set(id("a"), Some(secret("shared")));
        conflicts.set(id("b"), Some(secret("shared")));
        conflicts.set(id("c"), Some(secret("other")));
        assert_eq!(
            conflicts.woken_by(&Change::Object(secret("shared"))),
            vec![id("a"), id("b")]
        );
        assert!(
            conflicts
                .waiting_on("ServiceAccount", "team", "shared")
                .is_empty()
        );
        assert!(
            conflicts
                .waiting_on("Secret", "elsewhere", "shared")
                .is_empty()
        );
        let mut all = conflicts.woken_by(&Change::Relisted("Secret"));
        all.sort();
        assert_eq!(all, vec![id("a"), id("b"), id("c")]);
        // Resolved, or waiting on something else now.
        conflicts.set(id("a"), None);
        conflicts.set(id("b"), Some(secret("other")));
        assert!(
            conflicts
                .woken_by(&Change::Object(secret("shared")))
                .is_empty()
        );
        assert_eq!(
            conflicts.woken_by(&Change::Object(secret("other"))),
            vec![id("b"), id("c")]
        );
        conflicts.set(id("b"), None);
        conflicts.set(id("c"), None);
        assert!(conflicts.lock().waiting.is_empty());
        assert!(conflicts.lock().by_credential.is_empty());
    }
}
