//! The faults the campaign injects, which backends each applies to, and how a run's schedule
//! picks them.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::target::TargetKind;

/// One kind of fault. The campaign injects one at a time, heals it, and waits for a settled
/// leader before the next, so that every takeover is charged to one fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The instance's connections hold every byte both ways and new ones hang; after the hold
    /// the held bytes arrive late, as TCP retransmits deliver them.
    Cut,
    /// Every open connection of the instance is reset.
    Reset,
    /// The instance's connections are reset and new ones refused for a while.
    Refuse,
    /// Every byte to and from the server is delayed for a while.
    Slow,
    /// Bytes in one direction only are held, then delivered late.
    OneWay,
    /// SIGSTOP, then SIGCONT after a pause past the lease.
    Stop,
    /// SIGKILL; a successor process with a new identity starts soon after.
    Kill,
    /// SIGHUP (the demo exits in order, releasing); a successor starts.
    Hangup,
    /// The server is killed and started again with its data.
    ServerRestart,
    /// The server is killed and started again empty, as one without persistence.
    ServerWipe,
    /// The raft leader of the etcd cluster is killed, then started again.
    RaftLeaderKill,
    /// The record is deleted from outside.
    Delete,
    /// A record naming another holder is written from outside.
    Foreign,
    /// A free record (no holder) is written from outside.
    Free,
    /// A value that is not a record is stored in the key; an operator deletes it later.
    Garbage,
    /// The instance's wall clock is stepped by minutes to hours, then back.
    ClockStep,
    /// The server ends every hint stream while commands go on working.
    HintCut,
    /// Nobody reads the instance's stdout for a while (its pipe is full).
    StdoutStall,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [Self; 18] = [
        Self::Cut,
        Self::Reset,
        Self::Refuse,
        Self::Slow,
        Self::OneWay,
        Self::Stop,
        Self::Kill,
        Self::Hangup,
        Self::ServerRestart,
        Self::ServerWipe,
        Self::RaftLeaderKill,
        Self::Delete,
        Self::Foreign,
        Self::Free,
        Self::Garbage,
        Self::ClockStep,
        Self::HintCut,
        Self::StdoutStall,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cut => "cut, late delivery",
            Self::Reset => "connections reset",
            Self::Refuse => "connections refused",
            Self::Slow => "slow network",
            Self::OneWay => "one-way cut",
            Self::Stop => "SIGSTOP / SIGCONT",
            Self::Kill => "SIGKILL",
            Self::Hangup => "SIGHUP",
            Self::ServerRestart => "server restart",
            Self::ServerWipe => "server restart, data lost",
            Self::RaftLeaderKill => "etcd raft leader killed",
            Self::Delete => "record deleted",
            Self::Foreign => "foreign record",
            Self::Free => "free record",
            Self::Garbage => "not a record",
            Self::ClockStep => "wall-clock step",
            Self::HintCut => "hint streams cut",
            Self::StdoutStall => "stdout stalled",
        }
    }

    /// True when the fault applies to `target` (a file has no network and no server; only
    /// Redis and etcd servers are restarted here; only Redis can end hint streams alone; a
    /// Lease takes no value that is not a record).
    pub fn applies_to(self, target: TargetKind) -> bool {
        match self {
            Self::Cut | Self::Reset | Self::Refuse | Self::Slow | Self::OneWay => {
                target.networked()
            }
            Self::ServerRestart => matches!(target, TargetKind::Redis | TargetKind::Etcd),
            Self::ServerWipe | Self::HintCut => target == TargetKind::Redis,
            Self::RaftLeaderKill => target == TargetKind::Etcd,
            Self::Garbage => target.takes_garbage(),
            Self::Stop
            | Self::Kill
            | Self::Hangup
            | Self::Delete
            | Self::Foreign
            | Self::Free
            | Self::ClockStep
            | Self::StdoutStall => true,
        }
    }

    /// True when the fault is done to one instance (the victim), not to the server or record.
    pub fn has_victim(self) -> bool {
        !matches!(
            self,
            Self::ServerRestart
                | Self::ServerWipe
                | Self::RaftLeaderKill
                | Self::Delete
                | Self::Foreign
                | Self::Free
                | Self::Garbage
                | Self::HintCut
        )
    }
}

/// The order of faults of one run: every kind that applies once, shuffled, then again, until
/// `count` faults; so that a short run sees each kind and a long one sees each about equally.
pub fn schedule(rng: &mut StdRng, target: TargetKind, count: usize) -> Vec<FaultKind> {
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|kind| kind.applies_to(target))
        .collect();
    let mut order = Vec::with_capacity(count);
    while order.len() < count {
        let mut round = kinds.clone();
        round.shuffle(rng);
        order.extend(round);
    }
    order.truncate(count);
    order
}

/// The victim of a fault: the leader most of the time (faults hurt most there), else anyone.
pub fn victim(rng: &mut StdRng, leader: usize, instances: usize) -> usize {
    if rng.random_bool(0.7) {
        leader
    } else {
        rng.random_range(0..instances)
    }
}
