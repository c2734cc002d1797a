//! The Kubernetes client of `keyward run`, with every request counted by method
//! (`keyward_kube_requests_total`), so a quiet cluster can be shown to cost nothing.

use std::sync::Arc;

use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::util::MapRequestLayer;

use crate::metrics::Metrics;

/// A client for the cluster of the current kubeconfig (or in-cluster config).
pub async fn counted(metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    let count = MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.kube_request(request.method().as_str());
        request
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&count).build())
}
