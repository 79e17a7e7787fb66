//! Sharded pub/sub on a Redis Cluster: which node serves an election's channel, and one hub
//! per node, shared by every watch whose channel that node serves.
//!
//! The slot map comes from `CLUSTER SLOTS` on the command connection and is kept for a
//! second: a watch that ended because its node went away asks again, and finds the replica
//! that took the slot over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;
use tokio::time::Instant;

use crate::connection::{ClusterTarget, Target};
use crate::hub::{Hub, HubSettings};

/// How long a slot map is trusted.
const SLOT_MAP_AGE: Duration = Duration::from_secs(1);

/// The slot of `key` in a Redis Cluster: CRC16 (XMODEM) of its hash tag (the text between
/// the first `{` and the next `}`, when not empty), or of the whole key, modulo 16384.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(length) if length > 0 => &bytes[open + 1..open + 1 + length],
            _ => bytes,
        },
        None => bytes,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

/// One range of slots and the primary that serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Range {
    first: u16,
    last: u16,
    host: String,
    port: u16,
}

/// The hubs of a cluster client, one per primary that serves a watched channel.
#[derive(Default)]
pub(crate) struct ShardHubs {
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    slots: tokio::sync::Mutex<Option<(Instant, Vec<Range>)>>,
}

impl std::fmt::Debug for ShardHubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHubs").finish_non_exhaustive()
    }
}

impl ShardHubs {
    /// The hub of the node that serves `channel` now; `None` when the slot map cannot be had
    /// (the watch then ends and its elector polls).
    ///
    /// `slot_map` asks the cluster for `CLUSTER SLOTS`; `template` gives the hub's timeouts and
    /// error context.
    pub async fn hub_for<F, Fut>(
        &self,
        channel: &str,
        cluster: &ClusterTarget,
        template: &HubSettings,
        slot_map: F,
    ) -> Option<Arc<Hub>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Value>>,
    {
        let slot = slot(channel);
        let (host, port) = {
            let mut cached = self.slots.lock().await;
            let fresh = cached
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < SLOT_MAP_AGE);
            if !fresh {
                let ranges = parse_slots(slot_map().await?);
                *cached = Some((Instant::now(), ranges));
            }
            let (_, ranges) = cached.as_ref()?;
            let range = ranges
                .iter()
                .find(|range| (range.first..=range.last).contains(&slot))?;
            (range.host.clone(), range.port)
        };
        let name = format!("{host}:{port}");
        let mut hubs = self
            .hubs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hub) = hubs.get(&name) {
            return Some(hub.clone());
        }
        let client = cluster.node_client(&host, port).ok()?;
        let hub = Arc::new(Hub::new(HubSettings {
            target: Arc::new(Target::Server(client)),
            sharded: true,
            server: format!("{} (node {name})", template.server),
            ..template.clone()
        }));
        hubs.insert(name, hub.clone());
        Some(hub)
    }
}

/// The ranges of a `CLUSTER SLOTS` answer: `[[first, last, [host, port, …], replicas…], …]`.
fn parse_slots(value: Value) -> Vec<Range> {
    let Value::Array(ranges) = value else {
        return Vec::new();
    };
    ranges
        .into_iter()
        .filter_map(|range| {
            let Value::Array(items) = range else {
                return None;
            };
            let number = |value: &Value| match value {
                Value::Int(n) => u16::try_from(*n).ok(),
                _ => None,
            };
            let first = number(items.first()?)?;
            let last = number(items.get(1)?)?;
            let Value::Array(primary) = items.get(2)? else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                Value::SimpleString(text) => text.clone(),
                _ => return None,
            };
            let port = number(primary.get(1)?)?;
            Some(Range {
                first,
                last,
                host,
                port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_as_redis_computes_them() {
        // `CLUSTER KEYSLOT` on Redis 7 gives these.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("leader-election:{orders}:changes"), slot("orders"));
        assert_eq!(slot("a{}b"), slot("a{}b"));
        assert_eq!(slot("123456789"), 0x31C3);
    }

    #[test]
    fn a_slot_map_is_read_and_garbage_is_skipped() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let value = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id")]),
            ]),
            Value::Int(3),
        ]);
        assert_eq!(
            parse_slots(value),
            vec![Range {
                first: 0,
                last: 5460,
                host: "127.0.0.1".into(),
                port: 7000
            }]
        );
        assert!(parse_slots(Value::Nil).is_empty());
    }
}
