//! The Kubernetes client the locks use: kube's, with TCP_NODELAY on its connections.
//!
//! Lock requests are small and their latency is the election's latency. On a kept-alive
//! connection, a request that leaves in two TCP segments waits for the server's delayed ACK
//! before its second segment is sent (Nagle's algorithm): 40 ms on Linux. The benchmark measured
//! it on every read after an idle spell and on the first renew of a term, and it showed up in
//! every crash takeover. kube's client builder has no switch for it, so the locks build the
//! client the way kube documents for custom clients, with the same layers kube's builder uses:
//! base URI, retries of throttled requests (if the config asks for them), authentication, extra
//! headers (impersonation) and the connect, read and write timeouts. Not carried over: kube's
//! request tracing spans, and the expiry of an exec plugin's client certificate (which kube only
//! records for callers to check; the locks never did). A config with a proxy gets kube's own
//! client, which knows how to use proxies (and has Nagle's delay).

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::ConfigExt;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config` whose connections send every write at once.
pub(crate) fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}
