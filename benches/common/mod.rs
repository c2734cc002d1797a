//! What the benchmarks share: their knobs, the local plane's kubeconfig, the operator's
//! request counter and memory, and concurrent creation.
// Each bench includes this module and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::api::{Api, PostParams};
use serde_json::Value;

/// The number in environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `KEYWARD_KUBECONFIG`, or the local plane's admin kubeconfig.
/// `keyward run` (the binary `bin`) for a bench: cluster-wide, JSON logs filtered by
/// `log`, metrics on a free loopback port (returned), the local plane's kubeconfig, stdout
/// discarded, stderr to `stderr`, killed when dropped. The caller adds its own flags.
/// Under `KEYWARD_BENCH_OPERATOR_WRAPPER` (a command, space-separated, such as a heap
/// profiler), that command runs the binary.
pub fn operator(
    bin: &std::path::Path,
    log: &str,
    stderr: std::process::Stdio,
) -> std::io::Result<(tokio::process::Command, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let wrapper = std::env::var("KEYWARD_BENCH_OPERATOR_WRAPPER").unwrap_or_default();
    let mut wrapper = wrapper.split_whitespace();
    let mut command = match wrapper.next() {
        Some(program) => {
            let mut command = tokio::process::Command::new(program);
            command.args(wrapper).arg(bin);
            command
        }
        None => tokio::process::Command::new(bin),
    };
    command
        .args(["run", "--log-format", "json", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", kubeconfig())
        .env("RUST_LOG", log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    Ok((command, port))
}

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KEYWARD_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/kubeconfig"))
}

/// Requests the operator serving `/metrics` on `port` has sent (-1 when it cannot be read).
pub async fn requests(port: u16) -> f64 {
    let Ok(body) = scrape(port).await else {
        return -1.0;
    };
    body.lines()
        .filter(|l| l.starts_with("keyward_kube_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET /metrics over a plain TCP connection (the bench needs nothing more).
pub async fn scrape(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Waits until the operator sent nothing for 3 s; returns its request count.
pub async fn settled(port: u16) -> f64 {
    let mut last = requests(port).await;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = requests(port).await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Creates every object, 48 at a time; one that fails is left out.
pub async fn create_all<K>(api: &Api<K>, objects: Vec<Value>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(objects)
        .for_each_concurrent(48, |o| {
            let api = api.clone();
            async move {
                if let Ok(object) = serde_json::from_value::<K>(o) {
                    let _ = api.create(&PostParams::default(), &object).await;
                }
            }
        })
        .await;
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The API server's `apiserver_request_duration_seconds` histogram, summed over the series
/// whose labels `select` accepts: (upper bound, cumulative count) per bucket.
pub async fn apiserver_latency(
    client: &kube::Client,
    select: impl Fn(&str, &str) -> bool,
) -> Vec<(f64, f64)> {
    let request = http::Request::get("/metrics").body(Vec::new());
    let Ok(request) = request else {
        return Vec::new();
    };
    let text = client.request_text(request).await.unwrap_or_default();
    let label = |line: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        line.split_once(&key)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(value, _)| value.to_owned())
            .unwrap_or_default()
    };
    let mut buckets: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_duration_seconds_bucket{"))
    {
        let (verb, resource) = (label(line, "verb"), label(line, "resource"));
        if !select(&verb, &resource) {
            continue;
        }
        let le = match label(line, "le").as_str() {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap_or(f64::INFINITY),
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let entry = buckets.entry(le.to_bits()).or_insert((le, 0.0));
        entry.1 += count;
    }
    let mut out: Vec<(f64, f64)> = buckets.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The quantile `q` of the requests between two readings of [`apiserver_latency`], as the
/// upper bound of the bucket it falls in, and how many requests there were.
pub fn latency_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let want = total * q;
    let at = delta
        .iter()
        .find(|(_, n)| *n >= want && total > 0.0)
        .map_or(f64::NAN, |(le, _)| *le);
    (at, total)
}

/// What a steady stream of writes saw: how many it completed in how long, and the client
/// side latency of each.
pub struct Load {
    pub done: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Vec<f64>,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Another client of the API server: `rate` merge patches per second of ConfigMaps
/// `load-0..load-99` in `namespace` (which it creates), at most 64 in flight (a write
/// that finds 64 in flight is skipped, so a slow server lowers the rate), until `stop`
/// turns true.
pub async fn steady_writes(
    client: kube::Client,
    namespace: String,
    rate: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Load {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let maps: Vec<Value> = (0..100)
        .map(|i| serde_json::json!({"metadata": {"name": format!("load-{i}")}, "data": {"n": "0"}}))
        .collect();
    create_all(&api, maps).await;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        n += 1;
        let (api, latencies, failed) = (api.clone(), latencies.clone(), failed.clone());
        tasks.spawn(async move {
            let sent = std::time::Instant::now();
            let patch = serde_json::json!({"data": {"n": n.to_string()}});
            let result = api
                .patch(
                    &format!("load-{}", n % 100),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await;
            drop(slot);
            match result {
                Ok(_) => latencies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(sent.elapsed().as_secs_f64()),
                Err(_) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let latencies = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Load {
        done: latencies.len(),
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        elapsed,
        latencies,
    }
}
