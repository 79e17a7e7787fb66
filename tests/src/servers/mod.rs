//! Real servers for tests: each runs on a free loopback port, keeps its files in a temporary
//! directory and is stopped when dropped. A missing server binary is a loud failure that names
//! the command that installs it.

pub mod etcd;
pub mod etcd_cluster;
pub mod kube;
pub mod kube_controller_manager;
pub mod ports;
pub mod process;
pub mod redis;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod tls;
