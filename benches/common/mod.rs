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
pub fn operator(
    bin: &std::path::Path,
    log: &str,
    stderr: std::process::Stdio,
) -> std::io::Result<(tokio::process::Command, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = tokio::process::Command::new(bin);
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
