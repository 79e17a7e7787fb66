//! A kube-rs controller that reconciles only while this replica leads: the controller runs as
//! the leader's work, so it starts with every term and is dropped the moment the term ends;
//! each reconcile also checks the term, never acting on a term that is over.
//!
//! ```sh
//! cargo run -p leader-election --features k8s --example kube_controller
//! ```
//! It uses the kubeconfig (or the pod's service account), elects on a Lease named
//! `configmap-controller` in the current namespace, and logs the ConfigMaps it reconciles.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};
use leader_election::{
    default_identity, open, shutdown_on_signal, ElectionConfig, LeaderElector, Leadership,
};

/// Reconciles one ConfigMap, under the term that runs the controller.
async fn reconcile(object: Arc<ConfigMap>, term: Arc<Leadership>) -> Result<Action, kube::Error> {
    if !term.is_leader() {
        // The term ended between the event and now: leave the object to the next leader.
        return Ok(Action::await_change());
    }
    println!(
        "reconciling {} under fencing token {}",
        object.name_any(),
        term.fencing_token()
    );
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_object: Arc<ConfigMap>, error: &kube::Error, _term: Arc<Leadership>) -> Action {
    eprintln!("reconcile failed: {error}");
    Action::requeue(Duration::from_secs(5))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    let lock = open("k8s://lease", "configmap-controller").await?;
    let config = ElectionConfig::new(default_identity()).with_release_on_cancel(true);
    let elector = LeaderElector::new(lock, config)?;
    let outcome = elector
        .run_leading(shutdown_on_signal(), |term| {
            let configmaps = Api::<ConfigMap>::default_namespaced(client.clone());
            async move {
                println!("leading: starting the controller");
                Controller::new(configmaps, Default::default())
                    .run(reconcile, error_policy, Arc::new(term))
                    .for_each(|_| async {})
                    .await;
            }
        })
        .await;
    println!("{outcome:?}");
    Ok(())
}
