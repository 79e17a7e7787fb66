//! Writes that wait for replicas: the script and a `WAIT` sent together, so that the `WAIT`
//! covers exactly this write.
//!
//! `WAIT n ms` blocks until `n` replicas acknowledged every write the *connection* sent so
//! far. Sent on its own after the script, it could run on another connection than the write
//! (the shared connection may have been made again in between), where it would count replicas
//! for nothing and answer at once. In one pipeline both go out together on one connection and
//! the server runs them back to back.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ScriptInvocation, Value};

/// Runs `invocation` followed by `WAIT replicas timeout_ms`; returns the script's reply and
/// how many replicas acknowledged. A server that lost the script (`NOSCRIPT`: restarted, or
/// a replica just promoted) gets it loaded and the pair sent once more; nothing was written
/// by the refused run.
pub(crate) async fn invoke_and_wait<C: ConnectionLike + Send>(
    connection: &mut C,
    invocation: &ScriptInvocation<'_>,
    replicas: u32,
    timeout_ms: u64,
) -> RedisResult<(Value, i64)> {
    let mut pipe = redis::pipe();
    pipe.invoke_script(invocation)
        .cmd("WAIT")
        .arg(replicas)
        .arg(timeout_ms);
    match pipe.query_async::<(Value, i64)>(connection).await {
        Err(err) if err.kind() == ErrorKind::NoScriptError => {
            invocation.load_async(connection).await?;
            pipe.query_async(connection).await
        }
        other => other,
    }
}
