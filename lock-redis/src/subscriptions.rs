//! The hub's book of watched channels: who watches each channel, what the server has been asked,
//! and which `SUBSCRIBE` or `UNSUBSCRIBE` to send next; it ends the watches of a refused channel
//! or a lost connection. No I/O: the hub sends what this asks for and reports the answers back.

use std::collections::HashMap;
use std::sync::Arc;

use lock_core::backend::Hint;

use lock_core::backend::Inbox;

/// Tells one watch from another.
pub(crate) type WatchId = u64;

/// A command the hub has to send on the pub/sub connection, for one channel.
///
/// Every command names one channel: the client library matches each reply to one command, and
/// `SUBSCRIBE a b` would send two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `SUBSCRIBE channel`.
    Subscribe(Arc<str>),
    /// `UNSUBSCRIBE channel`.
    Unsubscribe(Arc<str>),
}

/// Where one channel stands on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not subscribed, and nothing asked.
    Unsubscribed,
    /// `SUBSCRIBE` sent, no answer yet.
    Subscribing,
    /// Subscribed: messages are handed to the watchers.
    Subscribed,
    /// `UNSUBSCRIBE` sent, no answer yet.
    Unsubscribing,
}

/// One channel: its watchers and its state. At most one command per channel is on its way, so
/// the answers come back in the order the state expects.
#[derive(Debug)]
struct Channel {
    watchers: Vec<(WatchId, Arc<Inbox>)>,
    state: State,
}

/// Every channel somebody watches (or that is still being unsubscribed from).
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    channels: HashMap<Arc<str>, Channel>,
    /// Watchers of all channels together (the hub asks after every event).
    watchers: usize,
    connected: bool,
}

impl Subscriptions {
    /// True when nobody watches anything: the hub needs no connection.
    pub fn is_unwatched(&self) -> bool {
        self.watchers == 0
    }

    /// How many channels have watchers.
    pub fn watched_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|channel| !channel.watchers.is_empty())
            .count()
    }

    /// A new watcher of `channel`. If the channel is subscribed already its watcher gets
    /// [`Hint::Changed`] at once; otherwise it gets it when the subscription is confirmed.
    pub fn watch(&mut self, id: WatchId, channel: &str, inbox: Arc<Inbox>) -> Option<Request> {
        let entry = self
            .channels
            .entry(Arc::from(channel))
            .or_insert_with(|| Channel {
                watchers: Vec::new(),
                state: State::Unsubscribed,
            });
        if entry.state == State::Subscribed {
            inbox.push(Hint::Changed);
        }
        entry.watchers.push((id, inbox));
        self.watchers += 1;
        self.next_request(channel)
    }

    /// A watcher of `channel` is gone; the last one's leaving unsubscribes.
    pub fn unwatch(&mut self, id: WatchId, channel: &str) -> Option<Request> {
        let entry = self.channels.get_mut(channel)?;
        let before = entry.watchers.len();
        entry.watchers.retain(|(watcher, _)| *watcher != id);
        self.watchers -= before - entry.watchers.len();
        self.next_request(channel)
    }

    /// The connection is up (again): every watched channel is to be subscribed.
    pub fn connected(&mut self) -> Vec<Request> {
        self.connected = true;
        let channels: Vec<Arc<str>> = self.channels.keys().cloned().collect();
        channels
            .iter()
            .filter_map(|channel| self.next_request(channel))
            .collect()
    }

    /// The connection is gone (or could not be made): nothing is subscribed, and every
    /// watch ends (its inbox is closed), so that its elector polls instead of trusting a
    /// stream that cannot deliver. A later watch starts afresh on a new connection.
    pub fn disconnected(&mut self) {
        self.connected = false;
        for (_, channel) in self.channels.drain() {
            for (_, inbox) in channel.watchers {
                inbox.close();
            }
        }
        self.watchers = 0;
    }

    /// The server confirmed `SUBSCRIBE channel`: its watchers get [`Hint::Changed`], since
    /// writes may have been missed before.
    pub fn subscribed(&mut self, channel: &str) -> Option<Request> {
        let entry = self.channels.get_mut(channel)?;
        entry.state = State::Subscribed;
        for (_, inbox) in &entry.watchers {
            inbox.push(Hint::Changed);
        }
        self.next_request(channel)
    }

    /// The server answered `UNSUBSCRIBE channel` (also with a refusal: either way no watcher
    /// is left to care).
    pub fn unsubscribed(&mut self, channel: &str) -> Option<Request> {
        self.channels.get_mut(channel)?.state = State::Unsubscribed;
        self.next_request(channel)
    }

    /// The server refused `SUBSCRIBE channel` (an ACL without the channel, say): the
    /// channel's watches end, and it is forgotten. Returns how many watches ended.
    pub fn refused(&mut self, channel: &str) -> usize {
        let Some(entry) = self.channels.remove(channel) else {
            return 0;
        };
        for (_, inbox) in &entry.watchers {
            inbox.close();
        }
        self.watchers -= entry.watchers.len();
        entry.watchers.len()
    }

    /// The server ended `channel`'s subscription on its own: if it was subscribed or being
    /// subscribed (not being unsubscribed by the hub), its watches end as after a refusal.
    /// Returns how many ended.
    pub fn dropped_by_server(&mut self, channel: &str) -> usize {
        match self.channels.get(channel) {
            Some(entry) if matches!(entry.state, State::Subscribed | State::Subscribing) => {
                self.refused(channel)
            }
            _ => 0,
        }
    }

    /// True while `channel`'s subscription is asked for and not confirmed.
    pub fn is_subscribing(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|entry| entry.state == State::Subscribing)
    }

    /// True while `channel`'s unsubscription is asked for and not confirmed.
    pub fn is_unsubscribing(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|entry| entry.state == State::Unsubscribing)
    }

    /// Hands a message on `channel` to its watchers, making the hint only if someone takes
    /// it. Messages are dropped while the subscription is not confirmed: the confirmation's
    /// [`Hint::Changed`] follows and covers them.
    pub fn deliver(&self, channel: &str, hint: impl FnOnce() -> Hint) -> usize {
        let Some(entry) = self.channels.get(channel) else {
            return 0;
        };
        if entry.state != State::Subscribed || entry.watchers.is_empty() {
            return 0;
        }
        let hint = hint();
        for (_, inbox) in &entry.watchers {
            inbox.push(hint.clone());
        }
        entry.watchers.len()
    }

    /// The command `channel` needs now, if any; marks it as sent. Forgets a channel that is
    /// neither watched nor subscribed.
    fn next_request(&mut self, channel: &str) -> Option<Request> {
        let connected = self.connected;
        let entry = self.channels.get_mut(channel)?;
        let watched = !entry.watchers.is_empty();
        match (entry.state, watched) {
            (State::Unsubscribed, false) => {
                self.channels.remove(channel);
                None
            }
            (State::Unsubscribed, true) if connected => {
                entry.state = State::Subscribing;
                Some(Request::Subscribe(Arc::from(channel)))
            }
            (State::Subscribed, false) if connected => {
                entry.state = State::Unsubscribing;
                Some(Request::Unsubscribe(Arc::from(channel)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_subscription_the_server_ends_on_its_own_ends_its_watches_but_not_one_being_unsubscribed() {
        let mut book = Subscriptions::default();
        book.connected();
        let inbox = Arc::new(Inbox::default());
        assert_eq!(
            book.watch(1, "c", inbox.clone()),
            Some(Request::Subscribe("c".into()))
        );
        assert!(book.is_subscribing("c"));
        book.subscribed("c");
        assert_eq!(book.dropped_by_server("c"), 1);
        assert!(book.is_unwatched());
        // The hub's own unsubscription is answered on its request, not here.
        let other = Arc::new(Inbox::default());
        book.watch(2, "d", other);
        book.subscribed("d");
        assert_eq!(book.unwatch(2, "d"), Some(Request::Unsubscribe("d".into())));
        assert!(book.is_unsubscribing("d"));
        assert_eq!(book.dropped_by_server("d"), 0);
    }

    use super::*;

    use lock_core::backend::{Version, Versioned};
    use lock_core::LeaderElectionRecord;

    fn record() -> Hint {
        Hint::Record(Versioned {
            record: LeaderElectionRecord::default(),
            version: Version::ordered(1),
        })
    }

    fn subscribe(channel: &str) -> Option<Request> {
        Some(Request::Subscribe(channel.into()))
    }

    fn unsubscribe(channel: &str) -> Option<Request> {
        Some(Request::Unsubscribe(channel.into()))
    }

    #[test]
    fn one_subscribe_per_channel_and_changed_for_every_watcher() {
        let mut book = Subscriptions::default();
        assert!(book.connected().is_empty());
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        assert_eq!(book.watch(1, "x", a.clone()), subscribe("x"));
        assert_eq!(book.watch(2, "x", b.clone()), None, "already asked");
        assert!(a.drain().is_empty(), "nothing before the confirmation");
        assert_eq!(book.deliver("x", record), 0, "not confirmed yet");

        assert_eq!(book.subscribed("x"), None);
        assert_eq!(a.drain(), [Hint::Changed]);
        assert_eq!(b.drain(), [Hint::Changed]);

        // A late watcher gets its Changed at once: the channel is subscribed.
        let c = Arc::new(Inbox::default());
        assert_eq!(book.watch(3, "x", c.clone()), None);
        assert_eq!(c.drain(), [Hint::Changed]);

        assert_eq!(book.deliver("x", record), 3);
        assert_eq!(a.drain(), [record()]);
        assert_eq!(book.deliver("y", record), 0, "another channel");
    }

    #[test]
    fn the_last_watcher_leaving_unsubscribes() {
        let mut book = Subscriptions::default();
        book.connected();
        let inbox = Arc::new(Inbox::default());
        book.watch(1, "x", inbox.clone());
        book.watch(2, "x", inbox.clone());
        book.subscribed("x");
        assert_eq!(book.unwatch(1, "x"), None);
        assert_eq!(book.unwatch(2, "x"), unsubscribe("x"));
        assert!(book.is_unwatched());
        // Watched again before the server answered: subscribed again after the answer.
        assert_eq!(book.watch(3, "x", inbox.clone()), None);
        assert_eq!(book.unsubscribed("x"), subscribe("x"));
        book.subscribed("x");
        assert_eq!(book.unwatch(3, "x"), unsubscribe("x"));
        assert_eq!(book.unsubscribed("x"), None);
        assert!(book.channels.is_empty(), "forgotten");
    }

    #[test]
    fn leaving_before_the_confirmation_unsubscribes_after_it() {
        let mut book = Subscriptions::default();
        book.connected();
        book.watch(1, "x", Arc::new(Inbox::default()));
        assert_eq!(book.unwatch(1, "x"), None, "SUBSCRIBE still on its way");
        assert_eq!(book.subscribed("x"), unsubscribe("x"));
    }

    #[test]
    fn a_connection_subscribes_every_channel_watched_before_it() {
        let mut book = Subscriptions::default();
        let inbox = Arc::new(Inbox::default());
        // Watches made before the connection wait for it.
        assert_eq!(book.watch(1, "x", inbox.clone()), None);
        assert_eq!(book.watch(2, "y", inbox.clone()), None);
        book.watch(3, "z", Arc::new(Inbox::default()));
        book.unwatch(3, "z");
        let mut requests = book.connected();
        requests.sort_by_key(|request| format!("{request:?}"));
        assert_eq!(requests, [subscribe("x").unwrap(), subscribe("y").unwrap()]);
        book.subscribed("x");
        book.subscribed("y");
        assert_eq!(
            inbox.drain(),
            [Hint::Changed],
            "coalesced for the two channels"
        );
    }

    #[test]
    fn a_refused_subscription_ends_the_channels_watches() {
        let mut book = Subscriptions::default();
        book.connected();
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        book.watch(1, "x", a.clone());
        book.watch(2, "y", b.clone());
        assert_eq!(book.refused("x"), 1);
        assert!(ended(&a));
        assert!(!ended(&b), "another channel");
        assert_eq!(book.watched_channels(), 1);
        assert_eq!(book.unwatch(1, "x"), None, "already forgotten");
        // Watched again: asked again.
        assert_eq!(
            book.watch(3, "x", Arc::new(Inbox::default())),
            subscribe("x")
        );
    }

    #[test]
    fn a_lost_connection_ends_every_watch() {
        let mut book = Subscriptions::default();
        book.connected();
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        book.watch(1, "x", a.clone());
        book.watch(2, "y", b.clone());
        book.subscribed("x");
        book.disconnected();
        assert!(book.is_unwatched());
        assert_eq!(a.drain(), [Hint::Changed], "what waited is still given");
        assert!(ended(&a) && ended(&b));
        assert_eq!(book.unwatch(1, "x"), None);
        assert!(book.connected().is_empty(), "nothing to subscribe again");
    }

    /// True when the inbox's watch has ended.
    fn ended(inbox: &Inbox) -> bool {
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        inbox.poll_next(&mut cx) == std::task::Poll::Ready(None)
    }
}
