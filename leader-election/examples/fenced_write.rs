//! A fenced write: the protected store itself refuses a deposed leader's late write.
//!
//! The leader writes its result to etcd in one transaction that also keeps a fence key: the
//! write lands only if the fence holds no greater fencing token than this term's, and it moves
//! the fence up to this term's token. A leader that was paused past its term (a GC pause, a
//! frozen VM) and wakes up to write finds the fence moved on by its successor, and the store
//! refuses it, whatever the leader believes.
//!
//! ```sh
//! cargo run -p leader-election --features etcd --example fenced_write -- etcd://127.0.0.1:2379
//! ```

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use leader_election::{open, CancellationToken, ElectionConfig, LeaderElector, LockUrl};

/// Where the fence (the greatest token that wrote) and the protected value live.
const FENCE: &str = "example/reports/fence";
const RESULT: &str = "example/reports/result";

/// Writes `value` if no term with a greater token has written: one etcd transaction. Tokens
/// are zero-padded so that etcd's byte-wise comparison orders them as numbers.
async fn fenced_put(
    etcd: &mut Client,
    token: u64,
    value: &str,
) -> Result<bool, etcd_client::Error> {
    let token = format!("{token:020}");
    let txn = Txn::new()
        .when([Compare::value(FENCE, CompareOp::Greater, token.as_str())])
        .or_else([
            TxnOp::put(FENCE, token.as_str(), None),
            TxnOp::put(RESULT, value, None),
        ]);
    // The comparison holding means a later term already wrote: nothing was written.
    Ok(!etcd.txn(txn).await?.succeeded())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "etcd://127.0.0.1:2379".to_owned());
    let LockUrl::Etcd { endpoints, .. } = LockUrl::parse(&url)? else {
        return Err(format!("{url} is not an etcd:// URL").into());
    };
    let mut etcd = Client::connect(&endpoints, None).await?;

    // Two writers lead one after the other; each writes once, then hands over.
    let mut tokens = Vec::new();
    for identity in ["writer-a", "writer-b"] {
        let lock = open(&url, "reports").await?;
        let config = ElectionConfig::new(identity).with_release_on_cancel(true);
        let store = etcd.clone();
        let tokens = &mut tokens;
        LeaderElector::new(lock, config)?
            .run_leading(CancellationToken::new(), |term| {
                let mut store = store.clone();
                tokens.push(term.fencing_token());
                async move {
                    let token = term.fencing_token();
                    let report = format!("report of term {token}");
                    let landed = fenced_put(&mut store, token, &report).await;
                    println!("term {token}: write landed: {landed:?}");
                }
            })
            .await;
    }

    // The first writer, deposed, writes late: the store refuses its token.
    let stale = tokens[0];
    let landed = fenced_put(&mut etcd, stale, "a late write").await?;
    println!("term {stale} (deposed): write landed: {landed}");
    assert!(!landed, "the store refuses a token below its fence");
    Ok(())
}
