//! The Kubernetes client the locks use: kube's, with TCP_NODELAY on its connections.
//!
//! Lock requests are small and their latency is the election's latency. On a kept-alive
//! connection, a request that leaves in two TCP segments waits for the server's delayed ACK
//! before its second segment is sent (Nagle's algorithm): 40 ms on Linux. The benchmark measured
//! it on every read after an idle spell and on the first renew of a term, and it showed up in
//! every crash takeover. kube's client builder has no switch for it, so the locks build the
//! client the way kube documents for custom clients, with the same layers kube's builder uses:
//! base URI, retries of throttled requests (if the config asks for them; reads only, see
//! below), authentication, extra headers (impersonation) and the connect, read and write
//! timeouts. Not carried over: kube's
//! request tracing spans, and the expiry of an exec plugin's client certificate (which kube only
//! records for callers to check; the locks never did). A config with a proxy gets kube's own
//! client, which knows how to use proxies (and has Nagle's delay), without its retries.
//!
//! Writes are never retried by the client. kube's retry policy repeats any request answered
//! 429, 503 or 504, but a 503 or 504 from a proxy or load balancer may come after the API
//! server applied the write: the repeat then fails with a 409 Conflict, and a term that started
//! turns into a lost race (leaderless for a lease). Unretried, the write's unknown outcome is
//! [`Unavailable`](lock_core::LockError::Unavailable), and the elector's rule for lost replies
//! (read, and adopt the term if the record is the one it sent) applies.

use http::{Request, Response};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use tower::retry::{Policy, RetryLayer};
use tower::{BoxError, ServiceBuilder};

/// A client for `config` whose connections send every write at once.
pub(crate) fn client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    if config.proxy_url.is_some() {
        // kube's own client cannot be told to retry reads only: no retries at all.
        config.default_retry = false;
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
        .then(|| RetryLayer::new(ReadsOnly(RetryPolicy::server_retry())));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// kube's retry policy, for requests that change nothing (GET, HEAD, OPTIONS) only.
#[derive(Clone)]
struct ReadsOnly(RetryPolicy);

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for ReadsOnly {
    type Future = <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::Future;

    fn retry(
        &mut self,
        request: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        if !request.method().is_safe() {
            return None;
        }
        Policy::<Request<Body>, Response<Res>, BoxError>::retry(&mut self.0, request, result)
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        if !request.method().is_safe() {
            return None;
        }
        Policy::<Request<Body>, Response<Res>, BoxError>::clone_request(&mut self.0, request)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use lock_core::{LeaderElectionRecord, Lock, LockError};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use crate::{KubeLockOptions, LeaseLock};

    /// Requests seen, by method.
    type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

    const LEASE: &str = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"orders","namespace":"team","resourceVersion":"5"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15,"leaseTransitions":1}}"#;

    /// A loopback HTTP server standing for a proxy in front of an API server whose answers
    /// to writes were lost: the first GET gets 503 (throttled, worth a retry), later GETs
    /// the Lease, and every write 504 Gateway Timeout (the write may have landed). It counts
    /// the requests by method; it stops when the test's runtime ends.
    async fn gateway(counts: Counts) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                tokio::spawn(serve(connection, counts.clone()));
            }
        });
        port
    }

    /// Answers the requests of one connection until the client closes it.
    async fn serve(connection: TcpStream, counts: Counts) {
        let mut reader = BufReader::new(connection);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let method = request_line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let seen = {
                let mut counts = counts.lock().unwrap();
                let seen = counts.entry(method.clone()).or_insert(0);
                *seen += 1;
                *seen
            };
            let (status, body) = match (method.as_str(), seen) {
                ("GET", 1) => ("503 Service Unavailable", status_json(503)),
                ("GET", _) => ("200 OK", LEASE.to_owned()),
                _ => ("504 Gateway Timeout", status_json(504)),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn status_json(code: u16) -> String {
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"upstream","reason":"Timeout","code":{code}}}"#
        )
    }

    /// Hole 14 (issue 11): a write answered 504 by a proxy may have landed. Retrying it turned
    /// the term into a lost race (409 on the repeat); it must be sent once and reported as
    /// Unavailable (outcome unknown). Reads are still retried.
    #[tokio::test]
    async fn hole14_a_write_answered_504_is_sent_once_and_is_unavailable() {
        let counts = Counts::default();
        let port = gateway(counts.clone()).await;
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        assert!(config.default_retry, "the client is asked for retries");
        let options = KubeLockOptions::default()
            .with_namespace("team")
            .with_request_timeout(Duration::from_secs(3));
        let lock = LeaseLock::from_config(config, "orders", options).unwrap();

        let read = lock
            .get()
            .await
            .expect("the 503 is retried")
            .expect("a record");
        assert_eq!(read.record.holder_identity, "a");
        let record = LeaderElectionRecord {
            holder_identity: "b".into(),
            lease_duration_seconds: 15,
            leader_transitions: 2,
            ..LeaderElectionRecord::default()
        };
        let err = lock.update(&record, &read.version).await.unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
        let err = lock.create(&record).await.unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");

        let counts = counts.lock().unwrap().clone();
        assert_eq!(
            counts.get("PUT"),
            Some(&1),
            "the PUT was sent once: {counts:?}"
        );
        assert_eq!(
            counts.get("POST"),
            Some(&1),
            "the POST was sent once: {counts:?}"
        );
        assert_eq!(
            counts.get("GET"),
            Some(&2),
            "the GET was retried once: {counts:?}"
        );
    }
}
