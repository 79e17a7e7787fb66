//! Leader election over Redis: the election record under one key, compare-and-swap by a
//! server-side Lua script, change hints over pub/sub.
//!
//! [`RedisLock`] implements [`lock_core::Lock`], so the one
//! [`LeaderElector`](lock_core::LeaderElector) runs over it like over any other lock.
//! [`RedisLock::connect`] makes a lock for one election; a process that takes part in many
//! elections makes one [`RedisClient`] and calls [`RedisClient::lock`] for each, so that all
//! of them share one command connection and one pub/sub connection (see the example there).
//!
//! - **One key per election**: the hash `leader-election:{orders}` (the prefix is
//!   [configurable](RedisLockOptions::key_prefix)) holds the record as client-go's JSON and a
//!   version counter kept by the server. The name sits in a Redis Cluster hash tag.
//! - **Atomic on the server**: `create` and `update` are one `EVALSHA` of one
//!   [script](SCRIPT_SOURCE) that compares the version, writes, sets or removes the expiry for
//!   abandoned elections and announces the write.
//! - **Hints, not truth**: [`watch`](lock_core::Lock::watch) subscribes to the key's channel on
//!   the client's one pub/sub connection, which every watch of the client's elections shares.
//!   One keep-alive `PING` a minute per client notices a connection that died without
//!   closing. A watch that cannot be served ends (see [Safety](#safety)).
//! - **Many elections, two connections**: the locks that one [`RedisClient`] makes share its
//!   multiplexed command connection and its pub/sub connection, whether there is one election
//!   or ten thousand.
//! - **Secure deployments**: `rediss://` URLs use rustls (with a custom CA file if needed),
//!   users and passwords go in the URL, and [`acl_setuser_line`] prints the least an ACL user
//!   needs.
//!
//! # Safety
//!
//! What the lock guarantees, and what it cannot, when Redis or someone else misbehaves:
//!
//! - **Never overwriting what is not a record.** An update writes only over the exact bytes
//!   this lock read (and parsed as a record with client-go's rules) or wrote at the version it
//!   names; a version it has not seen is read first. Lua's cjson cannot check a record as
//!   strictly as [`LeaderElectionRecord::from_json`](lock_core::LeaderElectionRecord::from_json)
//!   (it cannot tell `15` from `15.0` or `[]` from `{}`), so the script compares bytes
//!   instead of parsing. Anything else in the key is [`Corrupt`](lock_core::LockError::Corrupt)
//!   and left untouched. A valid record edited by hand *without* a version bump is a conflict:
//!   the elector reads the edit instead of overwriting it (a forced handover).
//! - **Versions** are canonical decimal counters (no sign, no leading zero, `"0"` allowed) up
//!   to 2^53 - 1, the same rule in the script and the client, which never normalises one; a
//!   stored version that breaks it is `Corrupt`, and an update past the largest version is
//!   refused as `Corrupt` before anything is written. A new record's version starts above
//!   the server clock in microseconds and above the highest version the election ever had,
//!   kept in the hash `{key}:versions` next to the record, which a `DEL` of the record leaves:
//!   a version never repeats after a deletion, even when the server clock stepped back. (Should
//!   versions still go back, after `FLUSHALL` or a lost dataset, the elector reads again on a
//!   hint older than what it knows instead of dropping it.)
//! - **Lost records and fencing tokens.** The token is the record's `leaderTransitions`; there
//!   is no counter that survives the record's loss, so [`token_floor`](lock_core::Lock::token_floor)
//!   stays 0. A Redis without persistence that restarts, a failover to a replica that lagged,
//!   `FLUSHALL` or `DEL` lose the record (and `FLUSHALL` or a lost dataset the `:versions`
//!   key): then only each candidate's memory of the highest token it observed keeps tokens
//!   growing, and a candidate started after the loss starts again from 0. Where tokens guard
//!   anything that outlives Redis's data, run it with `appendonly yes` and `appendfsync
//!   always` (no acknowledged write lost on a crash, a disk sync per write) or `everysec` (the
//!   default: a crash may lose the last second, and with it a term's token).
//! - **Expiry.** [`abandoned_ttl`](RedisLockOptions::abandoned_ttl) must be at least twice the
//!   lease of every record written (a write with a longer lease fails as
//!   [`InvalidConfig`](lock_core::LockError::InvalidConfig)), the script never sets an expiry
//!   below twice the written lease, and a write without the option `PERSIST`s the key, so that
//!   an expiry an earlier setting left never fires under a leader that renews normally.
//! - **Hints only wake.** A `DEL` publishes nothing, so a standby that saw a long lease learns
//!   of the deletion from the elector's confirming read (at least once a minute however quiet
//!   the hints). Anyone allowed to `PUBLISH` on the channel can send any hint; the elector
//!   acts only on what a read or a compare-and-swap shows. A watch **ends** (its stream returns
//!   `None`) when its `SUBSCRIBE` is refused, when the pub/sub connection is lost, fails its
//!   keep-alive or cannot be made, and at once during the short back-off after such a failure:
//!   the elector then polls at its retry period and calls `watch` again later, which connects
//!   again on the client's one pub/sub connection.
//!
//! ```no_run
//! use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, Lock};
//! use lock_redis::{RedisLock, RedisLockOptions};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RedisLockOptions::default().with_tls_ca("/etc/redis/ca.pem");
//! let lock = RedisLock::connect(
//!     "rediss://elector:secret@redis.internal:6380",
//!     "orders",
//!     options,
//! )
//! .await?;
//! println!("electing on {}", lock.describe());
//!
//! let elector = LeaderElector::new(lock, ElectionConfig::new("worker-a"))?;
//! let mut events = elector.subscribe();
//! let cancel = CancellationToken::new();
//! tokio::spawn(elector.run(cancel.clone()));
//! while let Some(event) = events.recv().await {
//!     if let ElectionEvent::StartedLeading(term) = event {
//!         println!("leading with fencing token {}", term.fencing_token());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod acl;
mod announcement;
mod client;
mod cluster;
mod connection;
mod counter;
mod errors;
mod hints;
mod hub;
mod link;
mod lock;
mod names;
mod options;
mod replicas;
mod script;
mod seen;
mod sentinel;
mod session;
mod shards;
mod subscriptions;

pub use acl::{acl_rules, acl_setuser_line, ACL_COMMANDS};
pub use client::RedisClient;
pub use lock::RedisLock;
pub use options::{
    RedisLockOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_REPLICA_TIMEOUT,
    DEFAULT_RESPONSE_TIMEOUT,
};
pub use script::SCRIPT_SOURCE;
