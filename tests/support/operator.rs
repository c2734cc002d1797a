//! A `keyward run` process for one test, scoped to the test's namespace so tests run in
//! parallel without two operators managing the same objects. Killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::operator_kubeconfig_path;

pub struct Operator {
    child: Option<Child>,
    namespace: String,
    dir: tempfile::TempDir,
    runs: usize,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pub metrics_port: u16,
}

impl Operator {
    /// Starts an operator that manages `namespace` and waits until it is ready.
    pub async fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[]).await
    }

    /// Starts an operator with extra `keyward run` flags.
    pub async fn start_with(namespace: &str, args: &[&str]) -> Self {
        Self::start_with_env(namespace, args, &[]).await
    }

    /// Starts a cluster-wide operator (no `--namespace`), as the chart runs it. It acts on
    /// every test's objects: only for a test that runs alone (tests/rbac.rs).
    pub async fn start_cluster_wide(args: &[&str]) -> Self {
        Self::start_with_env("", args, &[]).await
    }

    /// Starts an operator with extra flags and environment variables.
    pub async fn start_with_env(namespace: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut op = Self {
            child: None,
            namespace: namespace.to_owned(),
            dir,
            runs: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics_port: 0,
        };
        op.spawn().await;
        op
    }

    async fn spawn(&mut self) {
        let port = free_port();
        self.metrics_port = port;
        self.runs += 1;
        let out =
            std::fs::File::create(self.dir.path().join(format!("stdout.{}", self.runs))).unwrap();
        let err =
            std::fs::File::create(self.dir.path().join(format!("stderr.{}", self.runs))).unwrap();
        if let Some(lease_namespace) = self
            .args
            .windows(2)
            .find(|w| w[0] == "--leader-elect-namespace")
            .map(|w| w[1].clone())
        {
            super::grant_leader_election(&lease_namespace).await;
        }
        let child = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("run")
            .args(
                (!self.namespace.is_empty())
                    .then_some(["--namespace", self.namespace.as_str()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(&self.args)
            // Tests rotate every few seconds; the default write floor is a minute.
            .args(
                (!self
                    .args
                    .iter()
                    .any(|a| a.starts_with("--min-rotation-interval")))
                .then_some("--min-rotation-interval=1s"),
            )
            .env("KUBECONFIG", operator_kubeconfig_path())
            .env("RUST_LOG", "info,keyward=debug,keyward::client=trace")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("starting keyward run");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(body) = self.get("/readyz").await
                && body.starts_with("HTTP/1.1 200")
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "operator not ready within 30s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process at once (SIGKILL): no cleanup, as in a crash or an eviction.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the process again after `kill`.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    fn read_all(&self, stream: &str) -> String {
        (1..=self.runs)
            .map(|run| {
                std::fs::read_to_string(self.dir.path().join(format!("{stream}.{run}")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Copies every run's stdout and stderr into `to` (for a look after the test).
    #[allow(dead_code)]
    pub fn copy_logs(&self, to: &std::path::Path) {
        let _ = std::fs::create_dir_all(to);
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let _ = std::fs::copy(entry.path(), to.join(entry.file_name()));
            }
        }
    }

    /// What a failing test prints about the operator: whether the process still runs, its
    /// warnings and errors, and the last lines it logged.
    #[allow(dead_code)]
    pub fn summary(&mut self) -> String {
        let state = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => "running".to_owned(),
            Some(Ok(Some(status))) => format!("exited: {status}"),
            Some(Err(err)) => format!("unknown: {err}"),
            None => "not started".to_owned(),
        };
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let notable: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .take(40)
            .copied()
            .collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!(
            "operator {state}, {} lines logged; warnings and errors:\n{}\nlast lines:\n{}",
            lines.len(),
            notable.join("\n"),
            tail.join("\n")
        )
    }

    /// Everything the operator logged (stderr), over every run.
    pub fn logs(&self) -> String {
        self.read_all("stderr")
    }

    /// Everything the operator printed on stdout (the audit trail), over every run.
    pub fn stdout(&self) -> String {
        self.read_all("stdout")
    }

    /// The audit records printed so far.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["audit"] == true)
            .collect()
    }

    /// `GET path` on the metrics server; returns the raw HTTP response.
    pub async fn get(&self, path: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok(out)
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.expect("scraping /metrics")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
