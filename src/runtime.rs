//! What every long-running part of `keyward run` shares, whatever it watches: the backoff
//! of its watches, the longest wait of a requeue, and Kubernetes' time type.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp as JiffTimestamp;
use kube::runtime::watcher;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex` even when a panic elsewhere poisoned it: the maps behind these locks are
/// bookkeeping that stays consistent enough, and losing every later update would be worse.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The longest single wait of a requeue. The controller's timer wheel holds at most about
/// two years, so anything due later is looked at again after this and rescheduled: one
/// reconcile per object per half year is the only cost of a far deadline.
pub const MAX_REQUEUE: StdDuration = StdDuration::from_secs(180 * 24 * 3600);

/// The backoff of every watch: quick to resume after the API server comes back, with
/// jitter so replicas do not retry in step. The delay doubles from 250 ms to 1 s, and the
/// jitter adds up to as much again (backon's jitter is a random fraction of the delay),
/// so no attempt waits more than 2 s.
pub fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(StdDuration::from_millis(250))
        .with_max_delay(StdDuration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// chrono to Kubernetes `Time` (a jiff timestamp in k8s-openapi 0.29).
pub fn to_k8s_time(t: DateTime<Utc>) -> Time {
    let ts = JiffTimestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .unwrap_or(JiffTimestamp::UNIX_EPOCH);
    Time(ts)
}

/// Kubernetes `Time` to chrono.
pub fn from_k8s_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::UNIX_EPOCH)
}
