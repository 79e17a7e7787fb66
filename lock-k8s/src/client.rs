//! The Kubernetes client the locks use: kube's, with TCP_NODELAY on its connections.
//!
//! Lock requests are small and their latency is the election's latency. On a kept-alive
//! connection, a request that leaves in two TCP segments waits for the server's delayed ACK
//! before its second segment is sent (Nagle's algorithm): 40 ms on Linux. That was measured on
//! every read after an idle spell and on the first renew of a term, and showed up in every crash
//! takeover. kube's own client builder has no switch for it, so the locks build the client the
//! way kube documents for custom clients, with the same base URI, authentication, extra headers
//! and timeouts.

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use tower::{BoxError, ServiceBuilder};

/// A client for `config` whose connections send every write at once.
pub(crate) fn client(config: &kube::Config) -> Result<kube::Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}
