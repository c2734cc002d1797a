//! The Kubernetes client of `keyward run`: every request it sends counted by method
//! (`keyward_kube_requests_total`), so a quiet cluster can be shown to cost nothing; sent
//! no faster than `--kube-qps` with bursts of `--kube-burst`; sent again after the server's
//! `Retry-After` when the API server answers 429 (or 503/504); and every write refused
//! while this replica does not hold the leader fence.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode};
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::buffer::BufferLayer;
use tower::filter::{AsyncFilterLayer, FilterLayer};
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder};

use crate::controller::leader::Fence;
use crate::metrics::Metrics;

/// A write refused by the fence: this replica does not (or can no longer be sure that it
/// does) hold the leader Lease. A reconcile fails with it and backs off; nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} refused: this replica does not hold the leader Lease")]
pub struct Fenced {
    pub method: Method,
    pub path: String,
}

/// Default of `--kube-qps`: requests per second, sustained (see docs/controller.md for the
/// measurement behind it).
pub const DEFAULT_QPS: u32 = 500;
/// Default of `--kube-burst`: requests sent at once before `--kube-qps` applies.
pub const DEFAULT_BURST: u32 = 1000;

/// The client-side rate limit (`--kube-qps`, `--kube-burst`). A `qps` of 0 sends without
/// a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub qps: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            qps: DEFAULT_QPS,
            burst: DEFAULT_BURST,
        }
    }
}

impl RateLimit {
    /// The token bucket of this limit: `qps` per second, `burst` (at least 1) at once.
    fn limiter(self) -> Option<Arc<DefaultDirectRateLimiter>> {
        let qps = NonZeroU32::new(self.qps)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Some(Arc::new(RateLimiter::direct(
            Quota::per_second(qps).allow_burst(burst),
        )))
    }
}

/// A client for the cluster of the current kubeconfig (or in-cluster config). Writes other
/// than the leader election's own go out only while `fence` is held.
pub async fn counted(
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    limit: RateLimit,
) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    counted_with(config, metrics, fence, limit)
}

/// [`counted`], from a given configuration.
pub fn counted_with(
    mut config: Config,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    limit: RateLimit,
) -> Result<Client, kube::Error> {
    // kube adds the same retry policy beneath every layer given here; it is turned off
    // there so that a retry is counted and limited like any request.
    config.default_retry = false;
    let limiter = limit.limiter();
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&tower::layer::layer_fn(|inner| {
            layered(inner, metrics.clone(), fence.clone(), limiter.clone())
        }))
        .build())
}

/// The service `inner` (the HTTP stack kube builds) behind this client's layers, from the
/// caller inward: the fence (a refused write is never sent, so never counted or limited);
/// the retry of a 429, 503 or 504 answer, after the server's `Retry-After` when it gives
/// one (kube's own policy, placed here so that each attempt passes the layers below it);
/// the rate limit; the count of what is sent, and of 429 answers.
fn layered<S, B>(
    inner: S,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
) -> impl Service<
    http::Request<Body>,
    Response = http::Response<B>,
    Error = tower::BoxError,
    Future: Send + 'static,
> + Send
+ 'static
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send + Sync + 'static,
    B: Send + 'static,
{
    let throttled = metrics.clone();
    let count = move |request: http::Request<Body>| {
        metrics.kube_request(request.method().as_str());
        if is_write(request.method()) {
            tracing::debug!(
                method = request.method().as_str(),
                path = request.uri().path(),
                "write sent"
            );
        } else {
            tracing::trace!(
                method = request.method().as_str(),
                path = request.uri().path(),
                query = request.uri().query().unwrap_or_default(),
                "read sent"
            );
        }
        request
    };
    // Each attempt waits for its token, then passes the fence at the moment it is sent: a
    // request that waited (for a token, or for the server's Retry-After) while this
    // replica lost the Lease is refused, not sent late.
    ServiceBuilder::new()
        .layer(RetryLayer::new(ServerRetry::default()))
        .layer(AsyncFilterLayer::new(rate_limited::<Body>(limiter)))
        // The layers above hold on to the stack while a request waits (for its token, or
        // to be sent again): the buffer makes what is below shareable.
        .layer(BufferLayer::new(1024))
        .layer(FilterLayer::new(refuse_unfenced::<Body>(fence)))
        .map_request(count)
        .map_response(note_throttled(move || throttled.kube_throttled()))
        .service(inner)
}

/// Counts each 429 Too Many Requests answer (the retry layer above sends the request
/// again).
fn note_throttled<B>(
    on_throttled: impl Fn() + Clone,
) -> impl Fn(http::Response<B>) -> http::Response<B> + Clone {
    move |response| {
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            tracing::debug!("the API server answered 429 Too Many Requests");
            on_throttled();
        }
        response
    }
}

/// Attempts after the first, at most.
const RETRIES: u32 = 5;
/// The first wait before an attempt when the server names none; doubled each time.
const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest wait before an attempt, whatever the server's `Retry-After` says: a pass
/// that waits keeps its place among the passes doing work.
const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a request again when the API server answers 429 Too Many Requests (API Priority
/// and Fairness rejected it), 503 or 504: after the server's `Retry-After` (in seconds)
/// when it gives one, otherwise 250 ms doubled each time, never longer than 10 s, at
/// most 5 times. What still fails is the reconcile's error, and backs off as errors do.
#[derive(Clone, Debug, Default)]
struct ServerRetry {
    attempts: u32,
}

impl ServerRetry {
    /// How long to wait before sending again after `response`, if at all.
    fn wait<B>(&self, response: &http::Response<B>) -> Option<std::time::Duration> {
        let retried = [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ];
        if !retried.contains(&response.status()) || self.attempts >= RETRIES {
            return None;
        }
        let server = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let backoff = FIRST_WAIT.saturating_mul(1 << self.attempts.min(16));
        Some(server.unwrap_or(backoff).min(LONGEST_WAIT))
    }
}

impl<B> tower::retry::Policy<http::Request<Body>, http::Response<B>, tower::BoxError>
    for ServerRetry
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut http::Request<Body>,
        result: &mut Result<http::Response<B>, tower::BoxError>,
    ) -> Option<Self::Future> {
        let wait = self.wait(result.as_ref().ok()?)?;
        self.attempts += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &http::Request<Body>) -> Option<http::Request<Body>> {
        // A streamed body cannot be sent twice; such a request is not retried.
        let body = request.body().try_clone()?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// The rate limit's filter: a request waits for its token. The leader election's Lease
/// requests never wait: a renewal queued behind a burst of writes could let the Lease
/// lapse, and they are few (one every few seconds).
fn rate_limited<B: Send + 'static>(
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
) -> impl FnMut(
    http::Request<B>,
) -> futures::future::BoxFuture<'static, Result<http::Request<B>, tower::BoxError>>
+ Clone {
    move |request| {
        let limiter = limiter.clone().filter(|_| !is_lease(request.uri().path()));
        Box::pin(async move {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            Ok(request)
        })
    }
}

/// The fence's filter: a request that needs the fence passes only while it is held.
fn refuse_unfenced<B>(
    fence: Arc<Fence>,
) -> impl Fn(http::Request<B>) -> Result<http::Request<B>, Fenced> + Clone {
    move |request| {
        if is_fenced(request.method(), request.uri().path()) && !fence.is_held() {
            return Err(Fenced {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            });
        }
        Ok(request)
    }
}

fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// Whether a request needs the fence: every write (POST, PUT, PATCH, DELETE) except those
/// to coordination.k8s.io Leases, which the election itself makes (they are safe without
/// it: each carries the resourceVersion it read).
pub fn is_fenced(method: &Method, path: &str) -> bool {
    is_write(method) && !is_lease(path)
}

/// `/apis/coordination.k8s.io/<version>/namespaces/<ns>/leases[/<name>]`.
fn is_lease(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/');
    segments.next() == Some("apis")
        && segments.next() == Some("coordination.k8s.io")
        && segments.next().is_some_and(|version| !version.is_empty())
        && segments.next() == Some("namespaces")
        && segments.next().is_some_and(|ns| !ns.is_empty())
        && segments.next() == Some("leases")
        && segments.next().is_none_or(|name| !name.is_empty())
        && segments.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/keyward-system/leases/keyward";

    #[test]
    fn every_write_needs_the_fence() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for path in [
                "/api/v1/namespaces/team-a/secrets/k",
                "/api/v1/namespaces/team-a/serviceaccounts/sa/token",
                "/apis/keyward.io/v1alpha1/namespaces/team-a/apikeys/k/status",
                "/apis/keyward.io/v1alpha1/tenants/acme/status",
                "/apis/events.k8s.io/v1/namespaces/team-a/events",
                "/apis/apps/v1/namespaces/team-a/deployments/web",
            ] {
                assert!(is_fenced(&method, path), "{method} {path}");
            }
        }
    }

    #[test]
    fn reads_and_watches_pass_without_the_fence() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            for path in ["/api/v1/namespaces/team-a/secrets", "/readyz", LEASE] {
                assert!(!is_fenced(&method, path), "{method} {path}");
            }
        }
    }

    #[test]
    fn the_elections_own_lease_writes_pass_without_the_fence() {
        assert!(!is_fenced(&Method::PUT, LEASE));
        assert!(!is_fenced(
            &Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/keyward-system/leases"
        ));
    }

    #[test]
    fn look_alikes_of_the_lease_path_need_the_fence() {
        for path in [
            // Another group's "leases", a namespace named like the group, a sub-path,
            // another coordination.k8s.io resource, a missing namespace.
            "/apis/keyward.io/v1/namespaces/ns/leases/keyward",
            "/api/v1/namespaces/coordination.k8s.io/secrets/leases",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/keyward/status",
            "/apis/coordination.k8s.io/v1beta1/namespaces/ns/leasecandidates/keyward",
            "/apis/coordination.k8s.io/v1/namespaces//leases/keyward",
            "/apis/coordination.k8s.io/v1/leases/keyward",
        ] {
            assert!(is_fenced(&Method::PUT, path), "{path}");
        }
    }

    /// The layer in front of a service that answers every request it is given.
    async fn through_fence(fence: Arc<Fence>, method: Method, path: &str) -> Result<(), String> {
        use tower::{Layer, Service, ServiceExt};
        let layer = FilterLayer::new(refuse_unfenced::<()>(fence));
        let server =
            tower::service_fn(|_: http::Request<()>| async { Ok::<_, tower::BoxError>(()) });
        let mut service = layer.layer(server);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .map_err(|e| e.to_string())?;
        service
            .ready()
            .await
            .map_err(|e| e.to_string())?
            .call(request)
            .await
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_writes_but_not_reads_or_the_lease() {
        let fence = Arc::new(Fence::closed());
        let secret = "/api/v1/namespaces/team-a/secrets/k";
        let refused = through_fence(fence.clone(), Method::PATCH, secret).await;
        assert_eq!(
            refused,
            Err(format!(
                "PATCH {secret} refused: this replica does not hold the leader Lease"
            ))
        );
        assert_eq!(
            through_fence(fence.clone(), Method::GET, secret).await,
            Ok(())
        );
        assert_eq!(through_fence(fence, Method::PUT, LEASE).await, Ok(()));
    }

    #[tokio::test]
    async fn an_open_fence_lets_writes_through() {
        let secret = "/api/v1/namespaces/team-a/secrets/k";
        assert_eq!(
            through_fence(Arc::new(Fence::open()), Method::DELETE, secret).await,
            Ok(())
        );
    }
    fn request(method: Method, path: &str) -> http::Request<Body> {
        let mut request = http::Request::new(Body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().unwrap_or_default();
        request
    }

    fn sample(metrics: &Metrics, series: &str) -> Option<String> {
        metrics.encode().lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_owned)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_sent_again_after_the_servers_retry_after_and_both_are_counted() {
        use tower::ServiceExt;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = {
            let sent = sent.clone();
            tower::service_fn(move |_: http::Request<Body>| {
                let n = sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let mut response = http::Response::new(String::new());
                    if n == 0 {
                        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                        response
                            .headers_mut()
                            .insert("Retry-After", http::HeaderValue::from_static("3"));
                    }
                    Ok::<_, tower::BoxError>(response)
                }
            })
        };
        let metrics = Arc::new(Metrics::new());
        let client = layered(server, metrics.clone(), Arc::new(Fence::open()), None);
        let started = tokio::time::Instant::now();
        let answer = client
            .oneshot(request(Method::PATCH, "/api/v1/namespaces/a/secrets/k"))
            .await
            .map(|r| r.status());
        assert_eq!(answer.ok(), Some(StatusCode::OK));
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(3),
            "sent again after {:?}, before the server's Retry-After of 3 s",
            started.elapsed()
        );
        // Both attempts were sent, so both are counted; the 429 is counted as such.
        assert_eq!(
            sample(&metrics, "keyward_kube_requests_total{method=\"PATCH\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&metrics, "keyward_kube_throttled_total").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_retry_waits_what_the_server_says_but_never_long_and_not_forever() {
        let answer = |status: StatusCode, retry_after: Option<&'static str>| {
            let mut response = http::Response::new(());
            *response.status_mut() = status;
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("Retry-After", http::HeaderValue::from_static(after));
            }
            response
        };
        let secs = std::time::Duration::from_secs;
        let first = ServerRetry::default();
        let busy = answer(StatusCode::TOO_MANY_REQUESTS, Some("3"));
        assert_eq!(first.wait(&busy), Some(secs(3)));
        // A server asking for a day is waited on for 10 s; a date or garbage is ignored.
        let day = answer(StatusCode::SERVICE_UNAVAILABLE, Some("86400"));
        assert_eq!(first.wait(&day), Some(secs(10)));
        let date = answer(
            StatusCode::GATEWAY_TIMEOUT,
            Some("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(
            first.wait(&date),
            Some(std::time::Duration::from_millis(250))
        );
        let doubled = ServerRetry { attempts: 3 };
        assert_eq!(
            doubled.wait(&answer(StatusCode::SERVICE_UNAVAILABLE, None)),
            Some(secs(2))
        );
        // Other answers are the caller's; and after five attempts, so is this one.
        assert_eq!(first.wait(&answer(StatusCode::CONFLICT, None)), None);
        assert_eq!(
            first.wait(&answer(StatusCode::INTERNAL_SERVER_ERROR, None)),
            None
        );
        assert_eq!(ServerRetry { attempts: RETRIES }.wait(&busy), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waited_to_be_sent_again_meets_the_fence_again() {
        use tower::ServiceExt;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fence = Arc::new(Fence::open());
        let server = {
            let (sent, fence) = (sent.clone(), fence.clone());
            tower::service_fn(move |_: http::Request<Body>| {
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The Lease is lost while the first attempt's answer asks to wait.
                fence.close();
                async move {
                    let mut response = http::Response::new(String::new());
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response
                        .headers_mut()
                        .insert("Retry-After", http::HeaderValue::from_static("1"));
                    Ok::<_, tower::BoxError>(response)
                }
            })
        };
        let client = layered(server, Arc::new(Metrics::new()), fence, None);
        let answer = client
            .oneshot(request(Method::PATCH, "/api/v1/namespaces/a/secrets/k"))
            .await;
        assert!(
            answer
                .err()
                .is_some_and(|e| e.to_string().contains("does not hold the leader Lease")),
            "the second attempt was not refused"
        );
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_rate_limit_holds_what_exceeds_its_burst_but_never_the_leases_requests() {
        use futures::FutureExt;
        let limit = RateLimit { qps: 1, burst: 2 };
        let mut filter = rate_limited::<()>(limit.limiter());
        let get = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(())
                .unwrap_or_default()
        };
        let secret = "/api/v1/namespaces/a/secrets/k";
        // The burst goes at once; the next request waits for a token (one a second).
        assert!(filter(get(secret)).now_or_never().is_some());
        assert!(filter(get(secret)).now_or_never().is_some());
        assert!(filter(get(secret)).now_or_never().is_none());
        // The election's renewal does not wait behind the writes.
        assert!(filter(get(LEASE)).now_or_never().is_some());
        // No limit: nothing waits.
        let mut unlimited = rate_limited::<()>(RateLimit { qps: 0, burst: 1 }.limiter());
        for _ in 0..100 {
            assert!(unlimited(get(secret)).now_or_never().is_some());
        }
    }
}
