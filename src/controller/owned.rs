//! The Secrets and ServiceAccounts keyward controls, as one label-selected watch of each
//! sees them (shared by both credential controllers), and what this process's own writes
//! made of them. A pass reads these objects from memory: it asks the API server only about
//! an object the watch does not hold at all (absent, or not keyward's), and not even then
//! when its next step is a create ([`Owned::get_or_absent`]): the create finds a foreign
//! object of that name, fails, and leaves it untouched.
//!
//! Reading from a watch is safe because every write keyward makes is conditional on what
//! was read (a create, a replace on the resourceVersion read, a delete on the uid): a read
//! that lags a change by someone else makes the write fail, never win.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{Event, watcher};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backoff::ObjectId;
use crate::api::labels::keyward_controller;
use crate::runtime::lock;
use crate::store::kubernetes::{self as objects, HasData, is_controlled_by};

/// What [`Owned`] makes of an object the watch does not hold and this process has not
/// written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unheld {
    /// Read it from the API server.
    Read,
    /// Absent, unless a create found its name taken.
    Absent,
}

/// What this process's last write did to an object, until the watch shows it.
#[derive(Debug)]
enum Written<K> {
    /// Created or replaced: the resourceVersion the write returned, and the object.
    Version(String, Arc<K>),
    /// Deleted.
    Gone,
}

impl<K> Clone for Written<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Version(v, o) => Self::Version(v.clone(), o.clone()),
            Self::Gone => Self::Gone,
        }
    }
}

struct Book<K: Resource<DynamicType = ()> + 'static> {
    /// Writes the watch has not shown yet.
    pending: HashMap<ObjectRef<K>, Written<K>>,
    /// The objects each credential (by uid) controls, as the watch shows them.
    by_owner: HashMap<String, HashSet<ObjectRef<K>>>,
    /// Names a create of this process found taken by an object the watch does not hold
    /// (not keyward's): read from the API server until a read finds them free.
    taken: HashSet<ObjectRef<K>>,
}

/// The objects of one kind keyward controls.
pub struct Owned<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    book: Arc<Mutex<Book<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Owned<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            book: self.book.clone(),
        }
    }
}

/// The uid of the object's controller, when it is a keyward credential, and the credential.
fn controller_of(meta: &ObjectMeta) -> Option<(String, ObjectId)> {
    let owner = keyward_controller(meta)?;
    let kind = match owner.kind.as_str() {
        super::api_key::KIND => super::api_key::KIND,
        super::sa_credential::KIND => super::sa_credential::KIND,
        _ => return None,
    };
    Some((
        owner.uid.clone(),
        (kind, meta.namespace.clone(), owner.name.clone()),
    ))
}

fn resource_version<K: Resource>(object: &K) -> Option<&str> {
    object.meta().resource_version.as_deref()
}

impl<K> Owned<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Watches the objects `api` lists under `selector`. The stream yields, for each change
    /// the watch shows, the credential that controls the object (before and after the
    /// change, when they differ), so that it is reconciled; it must be polled for the store
    /// to fill. A change of nothing but the resourceVersion seen before yields nothing.
    pub fn watch(api: Api<K>, selector: &str) -> (Self, impl Stream<Item = ObjectId> + Send) {
        let (store, writer) = reflector::store();
        let owned = Self {
            store,
            book: Arc::new(Mutex::new(Book {
                pending: HashMap::new(),
                by_owner: HashMap::new(),
                taken: HashSet::new(),
            })),
        };
        let config = super::fresh_lists().labels(selector);
        let events = reflect(
            writer,
            watcher(api, config)
                .backoff(super::watch_backoff())
                // What decisions read is the object, not who wrote which field of it.
                .modify(|o| o.meta_mut().managed_fields = None),
        );
        let book = owned.book.clone();
        let mut seen = Seen::default();
        let changes = events
            .filter_map(|event| futures::future::ready(event.ok()))
            .flat_map(move |event| {
                let mut book = lock(&book);
                futures::stream::iter(seen.record(&mut book, &event))
            });
        (owned, changes)
    }

    /// Whether the watch has listed once.
    pub async fn ready(&self) -> bool {
        super::synced(&self.store).await
    }

    /// The object `name` in `api`'s namespace as it is now: from the watch when it has
    /// shown this process's last write of it, else what that write returned (or nothing,
    /// after a delete), and read from the API server only when this process has written
    /// nothing and the watch does not hold it (absent, or not keyward's).
    pub async fn get(&self, api: &Api<K>, namespace: &str, name: &str) -> kube::Result<Option<K>> {
        self.lookup(api, namespace, name, Unheld::Read).await
    }

    /// As [`Owned::get`], except that an object the watch does not hold and no create of
    /// this process found is taken to be absent, with no request. For a caller whose next
    /// step is to create it, and nothing irreversible before: should an object of that
    /// name exist after all (not keyward's), the create fails (409) and leaves it
    /// untouched, and from then on the name is read from the API server.
    pub async fn get_or_absent(
        &self,
        api: &Api<K>,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<K>> {
        self.lookup(api, namespace, name, Unheld::Absent).await
    }

    async fn lookup(
        &self,
        api: &Api<K>,
        namespace: &str,
        name: &str,
        unheld: Unheld,
    ) -> kube::Result<Option<K>> {
        let reference = ObjectRef::new(name).within(namespace);
        let cached = self.store.get(&reference);
        let (pending, taken) = {
            let book = lock(&self.book);
            let pending = book.pending.get(&reference).cloned();
            (pending, book.taken.contains(&reference))
        };
        match (pending, cached) {
            (None, Some(object)) => Ok(Some(object.as_ref().clone())),
            (Some(Written::Version(v, _)), Some(object))
                if includes(resource_version(object.as_ref()), &v) =>
            {
                Ok(Some(object.as_ref().clone()))
            }
            (Some(Written::Version(_, written)), _) => Ok(Some(written.as_ref().clone())),
            (Some(Written::Gone), _) => Ok(None),
            (None, None) if unheld == Unheld::Absent && !taken => Ok(None),
            (None, None) => {
                let found = api.get_opt(name).await?;
                if found.is_none() && taken {
                    lock(&self.book).taken.remove(&reference);
                }
                Ok(found)
            }
        }
    }

    /// Remembers an object this process wrote, as the API server returned it.
    pub fn wrote(&self, object: &K) {
        if let (Some(version), Some(namespace)) = (resource_version(object), object.namespace()) {
            let reference = ObjectRef::new(&object.name_any()).within(&namespace);
            lock(&self.book).pending.insert(
                reference,
                Written::Version(version.to_owned(), Arc::new(object.clone())),
            );
        }
    }

    /// Deletes exactly the object `meta` describes (see [`objects::delete_exact`]).
    pub async fn delete(&self, api: &Api<K>, meta: &ObjectMeta) -> kube::Result<()> {
        objects::delete_exact(api, meta).await?;
        if let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) {
            lock(&self.book)
                .pending
                .insert(ObjectRef::new(name).within(namespace), Written::Gone);
        }
        Ok(())
    }

    /// Deletes what the credential with `uid` controls in `namespace` under another name
    /// than `keep`: what a renamed spec field left behind.
    pub async fn remove_strays(
        &self,
        api: &Api<K>,
        namespace: &str,
        uid: &str,
        keep: &str,
    ) -> kube::Result<()> {
        let strays: Vec<ObjectRef<K>> = lock(&self.book)
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|r| r.name != keep && r.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect();
        for reference in strays {
            if let Some(stray) = self.store.get(&reference)
                && is_controlled_by(stray.meta(), uid)
            {
                self.delete(api, stray.meta()).await?;
            }
        }
        Ok(())
    }
}

impl<K> Owned<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + HasData
        + Send
        + Sync
        + 'static,
{
    /// Creates or replaces (see [`objects::write`]) and remembers the result.
    pub async fn write(&self, api: &Api<K>, existing: Option<&K>, desired: K) -> kube::Result<K> {
        let reference = ObjectRef::from_obj(&desired);
        match objects::write(api, existing, desired).await {
            Ok(written) => {
                lock(&self.book).taken.remove(&reference);
                self.wrote(&written);
                Ok(written)
            }
            Err(err) => {
                if existing.is_none() && matches!(&err, kube::Error::Api(e) if e.code == 409) {
                    lock(&self.book).taken.insert(reference);
                }
                Err(err)
            }
        }
    }
}

/// What the watch last showed of an object: its resourceVersion and its controller.
type Entry = (Option<String>, Option<(String, ObjectId)>);

/// What the watch last showed of each object, to tell which credentials a change concerns.
struct Seen<K: Resource<DynamicType = ()>> {
    objects: HashMap<ObjectRef<K>, Entry>,
    /// The objects of a re-list in progress.
    relisted: Option<HashMap<ObjectRef<K>, Entry>>,
}

impl<K: Resource<DynamicType = ()>> Default for Seen<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relisted: None,
        }
    }
}

/// Whether an object at resourceVersion `shown` includes the write that returned `written`.
/// The API server's resourceVersions are etcd revisions, so a later one is larger; should
/// one not be a number, only the very same version counts.
pub fn includes(shown: Option<&str>, written: &str) -> bool {
    match (shown.map(str::parse::<u64>), written.parse::<u64>()) {
        (Some(Ok(shown)), Ok(written)) => shown >= written,
        _ => shown == Some(written),
    }
}

impl<K: Resource<DynamicType = ()> + Clone> Seen<K> {
    fn record(&mut self, book: &mut Book<K>, event: &Event<K>) -> Vec<ObjectId> {
        let mut woken = Vec::new();
        match event {
            Event::Apply(object) => {
                let (reference, entry) = Self::entry(object);
                // This process's own write, shown back: the pass that made it knows it.
                let own = matches!(book.pending.get(&reference),
                    Some(Written::Version(v, _)) if entry.0.as_deref() == Some(v.as_str()));
                Self::confirm(book, &reference, Some(object));
                let mut wakes = Vec::new();
                self.replace(book, reference, Some(entry), &mut wakes);
                if !own {
                    woken.extend(wakes);
                }
            }
            Event::Delete(object) => {
                let (reference, _) = Self::entry(object);
                Self::confirm(book, &reference, None);
                self.replace(book, reference, None, &mut woken);
            }
            Event::Init => self.relisted = Some(HashMap::new()),
            Event::InitApply(object) => {
                let (reference, entry) = Self::entry(object);
                self.relisted
                    .get_or_insert_with(HashMap::new)
                    .insert(reference, entry);
            }
            Event::InitDone => {
                let listed = self.relisted.take().unwrap_or_default();
                let gone: Vec<ObjectRef<K>> = self
                    .objects
                    .keys()
                    .filter(|r| !listed.contains_key(*r))
                    .cloned()
                    .collect();
                for reference in gone {
                    Self::confirm(book, &reference, None);
                    self.replace(book, reference, None, &mut woken);
                }
                for (reference, entry) in listed {
                    if let Some(Written::Version(v, _)) = book.pending.get(&reference)
                        && includes(entry.0.as_deref(), v)
                    {
                        book.pending.remove(&reference);
                    }
                    self.replace(book, reference, Some(entry), &mut woken);
                }
                // A deletion the re-list shows (the object is not listed) is confirmed too.
                book.pending
                    .retain(|r, w| !matches!(w, Written::Gone) || self.objects.contains_key(r));
            }
        }
        woken
    }

    fn entry(object: &K) -> (ObjectRef<K>, Entry) {
        (
            ObjectRef::from_obj(object),
            (
                object.meta().resource_version.clone(),
                controller_of(object.meta()),
            ),
        )
    }

    /// Forgets a pending write the watch now shows.
    fn confirm(book: &mut Book<K>, reference: &ObjectRef<K>, object: Option<&K>) {
        let shown = match (book.pending.get(reference), object) {
            (Some(Written::Version(v, _)), Some(o)) => includes(resource_version(o), v),
            (Some(Written::Gone), None) => true,
            _ => false,
        };
        if shown {
            book.pending.remove(reference);
        }
    }

    /// Records the object's new state; wakes the credentials it concerns when it changed.
    fn replace(
        &mut self,
        book: &mut Book<K>,
        reference: ObjectRef<K>,
        now: Option<Entry>,
        woken: &mut Vec<ObjectId>,
    ) {
        let before = match &now {
            Some(entry) => self.objects.insert(reference.clone(), entry.clone()),
            None => self.objects.remove(&reference),
        };
        if before.as_ref().map(|b| &b.0) == now.as_ref().map(|n| &n.0) {
            return;
        }
        let owner_before = before.and_then(|b| b.1);
        let owner_now = now.and_then(|n| n.1);
        if let Some((uid, id)) = &owner_before
            && owner_now.as_ref().map(|o| &o.0) != Some(uid)
        {
            if let Some(set) = book.by_owner.get_mut(uid) {
                set.remove(&reference);
                if set.is_empty() {
                    book.by_owner.remove(uid);
                }
            }
            woken.push(id.clone());
        }
        if let Some((uid, id)) = owner_now {
            book.by_owner
                .entry(uid)
                .or_default()
                .insert(reference.clone());
            woken.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn secret(name: &str, version: &str, owner: Option<(&str, &str)>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("team".to_owned()),
                resource_version: Some(version.to_owned()),
                owner_references: owner.map(|(kind, uid)| {
                    vec![OwnerReference {
                        api_version: "keyward.io/v1alpha1".to_owned(),
                        kind: kind.to_owned(),
                        name: format!("{name}-owner"),
                        uid: uid.to_owned(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    fn book() -> Book<Secret> {
        Book {
            pending: HashMap::new(),
            by_owner: HashMap::new(),
            taken: HashSet::new(),
        }
    }

    fn key(name: &str) -> ObjectId {
        ("ApiKey", Some("team".to_owned()), format!("{name}-owner"))
    }

    #[test]
    fn a_change_by_someone_else_wakes_the_controlling_credential() {
        let (mut seen, mut book) = (Seen::default(), book());
        let s = secret("a", "10", Some(("ApiKey", "u1")));
        assert_eq!(
            seen.record(&mut book, &Event::Apply(s.clone())),
            vec![key("a")]
        );
        // The same version again (a watch restart) changes nothing.
        assert!(seen.record(&mut book, &Event::Apply(s)).is_empty());
        let edited = secret("a", "11", Some(("ApiKey", "u1")));
        assert_eq!(
            seen.record(&mut book, &Event::Apply(edited.clone())),
            vec![key("a")]
        );
        assert_eq!(
            seen.record(&mut book, &Event::Delete(edited)),
            vec![key("a")]
        );
        assert!(book.by_owner.is_empty());
    }

    #[test]
    fn an_own_write_shown_back_wakes_nobody_and_is_forgotten() {
        let (mut seen, mut book) = (Seen::default(), book());
        let reference = ObjectRef::new("a").within("team");
        book.pending.insert(
            reference.clone(),
            Written::Version(
                "12".to_owned(),
                Arc::new(secret("a", "12", Some(("ApiKey", "u1")))),
            ),
        );
        // An earlier change, still in flight when the write returned, is someone else's.
        let earlier = secret("a", "11", Some(("ApiKey", "u1")));
        assert_eq!(
            seen.record(&mut book, &Event::Apply(earlier)),
            vec![key("a")]
        );
        assert!(book.pending.contains_key(&reference));
        let own = secret("a", "12", Some(("ApiKey", "u1")));
        assert!(seen.record(&mut book, &Event::Apply(own)).is_empty());
        assert!(book.pending.is_empty());
    }

    #[test]
    fn a_relist_wakes_the_owners_of_what_changed_or_went_away_meanwhile() {
        let (mut seen, mut book) = (Seen::default(), book());
        for (name, uid) in [("a", "u1"), ("b", "u2"), ("c", "u3")] {
            seen.record(
                &mut book,
                &Event::Apply(secret(name, "5", Some(("ApiKey", uid)))),
            );
        }
        book.pending
            .insert(ObjectRef::new("c").within("team"), Written::Gone);
        let mut woken = Vec::new();
        for event in [
            Event::Init,
            Event::InitApply(secret("a", "5", Some(("ApiKey", "u1")))),
            Event::InitApply(secret("b", "9", Some(("ApiKey", "u2")))),
            Event::InitDone,
        ] {
            woken.extend(seen.record(&mut book, &event));
        }
        woken.sort();
        assert_eq!(woken, vec![key("b"), key("c")]);
        assert!(book.pending.is_empty(), "the deletion is confirmed");
        assert!(!book.by_owner.contains_key("u3"));
    }

    #[test]
    fn a_new_controller_and_the_old_one_are_both_woken() {
        let (mut seen, mut book) = (Seen::default(), book());
        seen.record(
            &mut book,
            &Event::Apply(secret("a", "5", Some(("ApiKey", "u1")))),
        );
        let taken = secret("a", "6", Some(("ServiceAccountCredential", "u2")));
        let woken = seen.record(&mut book, &Event::Apply(taken));
        assert_eq!(
            woken,
            vec![
                key("a"),
                (
                    "ServiceAccountCredential",
                    Some("team".to_owned()),
                    "a-owner".to_owned()
                )
            ]
        );
        assert!(!book.by_owner.contains_key("u1"));
        assert_eq!(book.by_owner.get("u2").map(HashSet::len), Some(1));
        // Not a keyward credential's: nobody to wake.
        let foreign = secret("x", "7", None);
        assert!(seen.record(&mut book, &Event::Apply(foreign)).is_empty());
    }

    #[test]
    fn resource_versions_compare_as_revisions_when_they_are_numbers() {
        assert!(includes(Some("12"), "12"));
        assert!(includes(Some("13"), "12"));
        assert!(!includes(Some("9"), "12"));
        assert!(!includes(None, "12"));
        assert!(includes(Some("opaque"), "opaque"));
        assert!(!includes(Some("other"), "opaque"));
    }
}
