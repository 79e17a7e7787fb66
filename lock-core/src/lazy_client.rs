//! One client (or connection) shared by every clone of a lock, made on first use and made again
//! after a reset: the scaffolding every networked backend needs, written once.

use std::future::Future;

use tokio::sync::Mutex;

/// A client made on first use, shared, and dropped on request so that the next call makes a
/// new one.
///
/// Backends reset it after failures a client does not recover from by itself: a refused login
/// (the next call logs in anew) or a call that did not answer in time (its connection may be
/// dead without having closed). Each client made gets a generation, and [`reset`](Self::reset)
/// names the generation it is about: a call that failed on an old client cannot drop the new one
/// another call made meanwhile.
#[derive(Debug)]
pub struct LazyClient<C> {
    slot: Mutex<Slot<C>>,
}

#[derive(Debug)]
struct Slot<C> {
    client: Option<C>,
    /// Counts the clients made.
    generation: u64,
}

/// A client with the generation it belongs to (for [`LazyClient::reset`]).
#[derive(Clone, Debug)]
pub struct Made<C> {
    /// The shared client.
    pub client: C,
    /// Its generation.
    pub generation: u64,
}

impl<C> Default for LazyClient<C> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot {
                client: None,
                generation: 0,
            }),
        }
    }
}

impl<C: Clone> LazyClient<C> {
    /// Nothing is made until the first [`get`](Self::get).
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared client, made by `make` now if there is none. Calls wait for one another
    /// while a client is being made, so only one is made; a failed `make` leaves none, and the
    /// next call tries again. Bound the whole call with a timeout where making can hang.
    pub async fn get<E, F, Fut>(&self, make: F) -> Result<Made<C>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(client) = &slot.client {
            return Ok(Made {
                client: client.clone(),
                generation: slot.generation,
            });
        }
        let client = make().await?;
        slot.generation += 1;
        slot.client = Some(client.clone());
        Ok(Made {
            client,
            generation: slot.generation,
        })
    }

    /// Drops the client of `generation` if it is still the shared one; true when it was.
    pub async fn reset(&self, generation: u64) -> bool {
        let mut slot = self.slot.lock().await;
        slot.generation == generation && slot.client.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn made_once_shared_and_reset_by_generation_only() {
        let lazy = LazyClient::new();
        let first = lazy.get(|| async { Ok::<_, ()>("one") }).await.unwrap();
        let again = lazy.get(|| async { Ok::<_, ()>("two") }).await.unwrap();
        assert_eq!((first.client, again.client), ("one", "one"));
        assert!(lazy.reset(first.generation).await);
        let second = lazy.get(|| async { Ok::<_, ()>("two") }).await.unwrap();
        assert_eq!(second.client, "two");
        // A late reset for the first client leaves the second alone.
        assert!(!lazy.reset(first.generation).await);
        let still = lazy.get(|| async { Ok::<_, ()>("three") }).await.unwrap();
        assert_eq!(still.client, "two");
        // A failed make leaves nothing; the next call tries again.
        assert!(lazy.reset(still.generation).await);
        assert_eq!(
            lazy.get(|| async { Err::<&str, _>("refused") })
                .await
                .unwrap_err(),
            "refused"
        );
        assert_eq!(
            lazy.get(|| async { Ok::<_, ()>("four") })
                .await
                .unwrap()
                .client,
            "four"
        );
    }
}
