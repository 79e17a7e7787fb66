//! A Redis server's view of its clients (`CLIENT LIST`), for tests that count the connections
//! a process opens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One line of `CLIENT LIST`: its fields by name (`id`, `flags`, `sub`, `ssub`, …).
pub type ClientInfo = HashMap<String, String>;

/// The server's connections other than `admin`'s own.
///
/// # Panics
/// When the server does not answer `CLIENT ID` or `CLIENT LIST`.
pub async fn other_connections(admin: &mut redis::aio::MultiplexedConnection) -> Vec<ClientInfo> {
    let own: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(admin)
        .await
        .expect("CLIENT ID");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|field| field.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect::<ClientInfo>()
        })
        .filter(|info| info.get("id").map(String::as_str) != Some(own.to_string().as_str()))
        .collect()
}

/// Asks `CLIENT LIST` until `done` holds for the other connections (a connection that was just
/// closed may still be listed for a moment), within `limit`; returns them.
pub async fn connections_until(
    admin: &mut redis::aio::MultiplexedConnection,
    limit: Duration,
    done: impl Fn(&[ClientInfo]) -> bool,
) -> Vec<ClientInfo> {
    let deadline = Instant::now() + limit;
    loop {
        let connections = other_connections(admin).await;
        if done(&connections) || Instant::now() > deadline {
            return connections;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The field `name` of a connection, or "" when it has none.
pub fn field<'a>(info: &'a ClientInfo, name: &str) -> &'a str {
    info.get(name).map_or("", String::as_str)
}
