//! The operator's own HTTP endpoint: Prometheus scrape (`/metrics`) and the kubelet's
//! liveness (`/healthz`) and readiness (`/readyz`) probes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Content type of the OpenMetrics text exposition format, which is what `Metrics::encode` emits.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness and liveness flags shared between the controllers (which set them) and the
/// probe endpoint.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    /// Set when a part of the controller (a watch, the fan-out, the inventory, a
    /// controller) has stopped: the process is on its way out and must not look healthy.
    failed: Arc<AtomicBool>,
}

impl Health {
    /// Starts out not ready: traffic should wait until the caches have synced.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.has_failed()
    }

    /// Marks the process as no longer alive: `/healthz` and `/readyz` fail from now on.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `addr` and serves until `shutdown` completes; in-flight requests are finished first.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_on(listener, metrics, health, shutdown).await
}

/// Like [`serve`] on an already bound listener, so a caller binding port 0 can learn the port.
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

/// Liveness fails only when a part of the controller has stopped; it is not tied to
/// readiness, which would make the kubelet restart an operator that is merely waiting for
/// the API server.
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.has_failed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a part of the controller has stopped",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    /// Minimal HTTP/1.1 GET; `Connection: close` lets the body run to end of stream.
    async fn get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let raw = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header terminator");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status code");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn probes_and_metrics_answer_and_readyz_follows_the_ready_flag() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = Arc::new(Metrics::new());
        metrics.reconcile_error("credential", "Test");
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics, health.clone(), async {
            let _ = stopped.await;
        }));

        let healthz = get(addr, "/healthz").await;
        assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok"));

        let not_ready = get(addr, "/readyz").await;
        assert_eq!(not_ready.status, 503);

        health.set_ready(true);
        let ready = get(addr, "/readyz").await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));

        let scrape = get(addr, "/metrics").await;
        assert_eq!(scrape.status, 200);
        assert_eq!(
            scrape.header("content-type"),
            Some(OPENMETRICS_CONTENT_TYPE)
        );
        assert!(
            scrape.body.contains(
                r#"keyward_reconcile_errors_total{controller="credential",reason="Test"} 1"#
            ),
            "unexpected body:\n{}",
            scrape.body
        );
        assert!(scrape.body.ends_with("# EOF\n"));

        assert_eq!(get(addr, "/nope").await.status, 404);

        // A stopped part of the controller fails both probes.
        health.set_failed();
        assert_eq!(get(addr, "/healthz").await.status, 503);
        assert_eq!(get(addr, "/readyz").await.status, 503);

        stop.send(()).expect("server still listening");
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("server stops after shutdown")
            .expect("server task did not panic");
        assert!(result.is_ok());
    }
}
