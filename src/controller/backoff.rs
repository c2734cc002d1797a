//! Per-object error backoff: a reconcile that keeps failing is retried exponentially less
//! often, up to a cap, as controller-runtime's rate-limited queue does; a success resets it.
//! The objects in backoff are remembered so they can be retried at once when the API
//! server, unreachable until then, answers again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First retry after a failure.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries.
pub const CAP: Duration = Duration::from_secs(300);

/// An object of one of the controllers, by kind, namespace and name.
pub type ObjectId = (&'static str, Option<String>, String);

#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectId, u32>>,
}

impl Backoff {
    /// Records a failure of `id` and returns how long to wait before retrying it.
    pub fn failed(&self, id: ObjectId) -> Duration {
        let attempts = match self.failures.lock() {
            Ok(mut failures) => {
                let attempts = failures.entry(id).or_insert(0);
                *attempts = attempts.saturating_add(1);
                *attempts
            }
            Err(_) => 1,
        };
        delay(attempts, rand::random::<f64>())
    }

    /// Forgets the failures of `id`: after a successful reconcile, or once it is deleted.
    pub fn succeeded(&self, id: &ObjectId) {
        if let Ok(mut failures) = self.failures.lock()
            && !failures.is_empty()
        {
            failures.remove(id);
        }
    }

    /// Whether the last reconcile of `id` failed.
    pub fn is_failing(&self, id: &ObjectId) -> bool {
        self.failures
            .lock()
            .map(|f| f.contains_key(id))
            .unwrap_or(false)
    }

    /// The objects whose last reconcile failed.
    pub fn failing(&self) -> Vec<ObjectId> {
        self.failures
            .lock()
            .map(|f| f.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// The wait after `attempts` consecutive failures: `BASE * 2^(attempts-1)` capped at `CAP`,
/// less up to 10% by `jitter` (in 0..1) so that objects failing together spread out.
pub fn delay(attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let full = BASE.saturating_mul(1u32 << exponent).min(CAP);
    full.saturating_sub(full.mul_f64(0.1 * jitter.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap() {
        assert_eq!(delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(delay(5, 0.0), Duration::from_secs(16));
        assert_eq!(delay(9, 0.0), Duration::from_secs(256));
        assert_eq!(delay(10, 0.0), CAP);
        assert_eq!(delay(u32::MAX, 0.0), CAP);
        assert!(delay(3, 1.0) >= Duration::from_millis(3600));
    }

    #[test]
    fn a_success_resets_the_backoff() {
        let b = Backoff::default();
        let id: ObjectId = ("ApiKey", Some("ns".into()), "k".into());
        b.failed(id.clone());
        b.failed(id.clone());
        assert!(b.failed(id.clone()) >= Duration::from_millis(3600));
        assert_eq!(b.failing(), vec![id.clone()]);
        b.succeeded(&id);
        assert!(b.failing().is_empty());
        assert!(b.failed(id) <= BASE);
    }
}
