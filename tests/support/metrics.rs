//! Reading the inventory's metrics and feeding it stores, for the tests that run it in-process.

use std::time::Duration;

use kube::api::Api;
use serde::de::DeserializeOwned;

/// The value of `keyward_inventory_findings{tenant, finding}` (0 when absent).
pub fn gauge(metrics: &str, tenant: &str, finding: &str) -> i64 {
    let prefix =
        format!("keyward_inventory_findings{{tenant=\"{tenant}\",finding=\"{finding}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A reflector store of every `K`, fed by a task that stops with the test.
pub fn store<K>(client: &kube::Client) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|_| async {});
    tokio::spawn(stream);
    reader
}

/// Waits (bounded) until the metrics satisfy `cond`.
pub async fn wait_metrics(
    metrics: &keyward::metrics::Metrics,
    what: &str,
    within: Duration,
    cond: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = metrics.encode();
        if cond(&text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {within:?}:\n{}",
            text.lines()
                .filter(|l| l.starts_with("keyward_inventory_findings"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Requests the inventory's own client has sent, from its counter.
pub fn requests(metrics: &keyward::metrics::Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("keyward_kube_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
