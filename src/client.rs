//! The Kubernetes client of `keyward run`, with every request counted by method
//! (`keyward_kube_requests_total`), so a quiet cluster can be shown to cost nothing, and
//! every write refused while this replica does not hold the leader fence.

use std::sync::Arc;

use http::Method;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::filter::FilterLayer;
use tower::util::MapRequestLayer;

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

/// A client for the cluster of the current kubeconfig (or in-cluster config). Writes other
/// than the leader election's own go out only while `fence` is held.
pub async fn counted(metrics: Arc<Metrics>, fence: Arc<Fence>) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    counted_with(config, metrics, fence)
}

/// [`counted`], from a given configuration.
pub fn counted_with(
    config: Config,
    metrics: Arc<Metrics>,
    fence: Arc<Fence>,
) -> Result<Client, kube::Error> {
    let count = MapRequestLayer::new(move |request: http::Request<Body>| {
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
    });
    // Outside the counter: a refused write is never sent, so it is not counted.
    let fenced = FilterLayer::new(refuse_unfenced::<Body>(fence));
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&count)
        .with_layer(&fenced)
        .build())
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
}
