//! Credentials and permissions, as every server backend's tests check them: a user limited to
//! what the lock needs can elect and hand over; a wrong password is a clear error that never
//! shows the password.

use std::future::Future;
use std::time::Duration;

use lock_core::{Lock, LockError, LockResult};

use lock_core::testing::conformance::{config, Candidate};

/// Candidate "a" leads on `first`; "b" on `second` (a lock on the same election) follows, and
/// takes over within a second when "a" releases, with a greater fencing token.
pub async fn release_hands_over(first: impl Lock + 'static, second: impl Lock + 'static) {
    let mut a = Candidate::start(first, config("a").with_release_on_cancel(true), None);
    let first_term = a.started(Duration::from_secs(10)).await;
    let mut b = Candidate::start(second, config("b"), None);
    b.sees_leader("a", Duration::from_secs(10)).await;
    a.stop().await;
    let second_term = b.started(Duration::from_secs(1)).await;
    assert!(second_term.fencing_token() > first_term.fencing_token());
    b.stop().await;
}

/// Connects with a wrong `password` (the connection itself, or the first read, must fail) and
/// asserts a `Forbidden` error that says authentication failed and does not show the password.
pub async fn assert_wrong_password_refused<L: Lock>(
    password: &str,
    connect: impl Future<Output = LockResult<L>>,
) {
    let err = match connect.await {
        Ok(lock) => lock.get().await.expect_err("a wrong password must fail"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(matches!(err, LockError::Forbidden { .. }), "{message}");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(
        !message.contains(password),
        "the password is never shown: {message}"
    );
}
