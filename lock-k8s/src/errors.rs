//! Turns what the API server and the client report into the lock's error kinds.

use std::time::Duration;

use lock_core::LockError;

use crate::LockKind;

/// What an error message names: the lock, its kind and its namespace.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    /// The lock, as `describe` names it.
    pub lock: String,
    /// The kind of object.
    pub kind: LockKind,
    /// The object's namespace.
    pub namespace: String,
}

impl ErrorContext {
    /// Maps an error of the request `verb` (`get`, `create`, `update`, `watch`…):
    /// - 401 and 403 are `Forbidden`, naming the user, the verb, the resource and the
    ///   namespace, and how to grant what is missing;
    /// - 404 on `update` and 409 Conflict are `Conflict`, 409 AlreadyExists is `AlreadyExists`
    ///   (the callers decide which applies);
    /// - 400 and 422 (the server rejected what was sent) are `InvalidConfig`;
    /// - 404 for the namespace (on `create`: the namespace does not exist) is `Misconfigured`;
    /// - an object that cannot be deserialized (a time beyond what a record can hold, written
    ///   by another client) is `Corrupt`;
    /// - everything else (connection failures, timeouts, 429, 5xx) is `Unavailable`, worded
    ///   from the status's code, reason and message (one line, never the status's Debug dump).
    pub fn map(&self, verb: &str, err: kube::Error) -> LockError {
        let kube::Error::Api(status) = &err else {
            return match err {
                kube::Error::SerdeError(err) => LockError::Corrupt {
                    lock: self.lock.clone(),
                    reason: format!(
                        "the {} cannot be read as one ({err}); it was written by another client \
                         with values outside what a record can hold",
                        self.kind.rbac_resource()
                    ),
                },
                kube::Error::Auth(_) => LockError::Forbidden {
                    lock: self.lock.clone(),
                    reason: format!("cannot authenticate to the API server: {err}"),
                },
                kube::Error::Service(_) | kube::Error::HyperError(_) => {
                    let reason = format!(
                        "cannot reach the API server: {}: check the server address in the \
                         kubeconfig (--kubeconfig) and that the API server is running",
                        with_causes(&err)
                    );
                    LockError::unavailable_because(self.lock.clone(), reason, err)
                }
                _ => {
                    let reason = with_causes(&err);
                    LockError::unavailable_because(self.lock.clone(), reason, err)
                }
            };
        };
        match status.code {
            401 => LockError::Forbidden {
                lock: self.lock.clone(),
                reason: format!(
                    "the API server refused the credentials ({}): check the token or \
                     certificate in the kubeconfig, or the pod's service account token",
                    status.message
                ),
            },
            403 => LockError::Forbidden {
                lock: self.lock.clone(),
                reason: self.forbidden(verb, &status.message),
            },
            400 | 422 => LockError::InvalidConfig(format!(
                "{}: the API server rejected the {verb}: {} ({})",
                self.lock, status.message, status.reason
            )),
            404 if is_missing_namespace(status) => LockError::Misconfigured {
                lock: self.lock.clone(),
                reason: format!(
                    "namespace \"{namespace}\" does not exist: create it (`kubectl create \
                     namespace {namespace}`) or pass --namespace (the API server said: {})",
                    status.message,
                    namespace = self.namespace
                ),
            },
            code => {
                let reason = if status.reason.is_empty() {
                    format!(
                        "the API server answered the {verb} with {code}: {}",
                        status.message
                    )
                } else {
                    format!(
                        "the API server answered the {verb} with {code} {}: {}",
                        status.reason, status.message
                    )
                };
                LockError::unavailable_because(self.lock.clone(), reason, err)
            }
        }
    }

    /// The call took longer than `limit`.
    pub fn timed_out(&self, limit: Duration) -> LockError {
        LockError::timed_out(self.lock.clone(), limit)
    }

    /// The message for a 403: who may not do what where, and how to grant it.
    fn forbidden(&self, verb: &str, server_message: &str) -> String {
        let user = user_in_message(server_message).unwrap_or("this client");
        let resource = self.kind.rbac_resource();
        let namespace = &self.namespace;
        format!(
            "forbidden: user {user} cannot {verb} {resource} in namespace {namespace}: grant it \
             with a Role allowing get, list, watch, create, update on {resource} in {namespace} \
             and a RoleBinding to {user} (see deploy/ in the repository, or \
             `kubectl create role leader-election -n {namespace} --verb=get,list,watch,create,update \
             --resource={resource}`); the API server said: {server_message}"
        )
    }
}

/// True when `err` is the API server's 409 with the given reason (`AlreadyExists`,
/// `Conflict`).
pub(crate) fn is_status(err: &kube::Error, code: u16, reason: Option<&str>) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == code && reason.is_none_or(|reason| status.reason == reason))
}

/// A client error as one line, without kube's variant tags (`ServiceError: `, `HyperError: `)
/// and with its causes, which say what happened where the error itself says "client error
/// (Connect)".
fn with_causes(err: &kube::Error) -> String {
    let mut text = err.to_string();
    for tag in ["ServiceError: ", "HyperError: "] {
        if let Some(rest) = text.strip_prefix(tag) {
            text = rest.to_owned();
        }
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True for the API server's 404 about a namespace (`namespaces "x" not found`), as a create
/// in a namespace that does not exist is answered.
fn is_missing_namespace(status: &kube::core::Status) -> bool {
    let by_details = status
        .details
        .as_ref()
        .is_some_and(|details| details.kind == "namespaces");
    by_details || status.message.starts_with("namespaces \"")
}

/// The user in an API server message such as `User "alice" cannot update resource …`.
fn user_in_message(message: &str) -> Option<&str> {
    let start = message.find("User \"")? + "User \"".len();
    let rest = &message[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }))
    }

    fn context() -> ErrorContext {
        ErrorContext {
            lock: "https://k8s/apis/coordination.k8s.io/v1/namespaces/team/leases/orders".into(),
            kind: LockKind::Lease,
            namespace: "team".into(),
        }
    }

    #[test]
    fn forbidden_names_user_verb_resource_and_namespace() {
        let err = status(
            403,
            "Forbidden",
            r#"leases.coordination.k8s.io "orders" is forbidden: User "alice" cannot update resource "leases" in API group "coordination.k8s.io" in the namespace "team""#,
        );
        let mapped = context().map("update", err);
        let LockError::Forbidden { reason, .. } = &mapped else {
            panic!("not forbidden: {mapped:?}");
        };
        assert!(
            reason.starts_with(
                "forbidden: user alice cannot update leases.coordination.k8s.io in namespace team"
            ),
            "{reason}"
        );
        assert!(reason.contains("deploy/"), "{reason}");
    }

    #[test]
    fn conflicts_and_server_errors() {
        assert!(is_status(
            &status(409, "AlreadyExists", "x"),
            409,
            Some("AlreadyExists")
        ));
        assert!(!is_status(
            &status(409, "Conflict", "x"),
            409,
            Some("AlreadyExists")
        ));
        assert!(context()
            .map("get", status(503, "ServiceUnavailable", "x"))
            .is_retryable());
        assert!(matches!(
            context().map("create", status(422, "Invalid", "x")),
            LockError::InvalidConfig(_)
        ));
        let busy = context()
            .map("update", status(503, "ServiceUnavailable", "etcd is down"))
            .to_string();
        assert!(
            busy.ends_with(
                "the API server answered the update with 503 ServiceUnavailable: etcd is down"
            ),
            "{busy}"
        );
        assert!(!busy.contains("Status {"), "{busy}");
    }

    #[test]
    fn a_missing_namespace_is_misconfigured_and_says_what_to_do() {
        let err = context().map(
            "create",
            status(404, "NotFound", r#"namespaces "team" not found"#),
        );
        assert!(matches!(err, LockError::Misconfigured { .. }), "{err:?}");
        assert!(
            err.to_string().contains(
                "namespace \"team\" does not exist: create it (`kubectl create namespace team`) \
                 or pass --namespace"
            ),
            "{err}"
        );
    }

    #[test]
    fn user_is_found_in_the_message() {
        assert_eq!(
            user_in_message(r#"User "system:serviceaccount:a:b" cannot get"#),
            Some("system:serviceaccount:a:b")
        );
        assert_eq!(user_in_message("no user here"), None);
    }
}
