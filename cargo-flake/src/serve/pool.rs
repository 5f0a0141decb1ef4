//! A small pool of history connections for the blocking handlers.

use std::sync::{Arc, Mutex};

use flake_core::store::events::EventConfig;
use flake_core::store::{Location, Store, StoreError};

/// Idle connections kept; more are opened under load and closed after.
const IDLE: usize = 8;

/// Connections to one history, shared by the handlers.
#[derive(Clone, Debug)]
pub struct Pool {
    location: Arc<Location>,
    events: Arc<EventConfig>,
    idle: Arc<Mutex<Vec<Store>>>,
}

/// A borrowed connection, back in the pool when dropped.
pub struct Conn {
    store: Option<Store>,
    idle: Arc<Mutex<Vec<Store>>>,
}

impl Pool {
    /// A pool over `location` whose runs decide webhook events by
    /// `events`; connections open on first use.
    pub fn new(location: Location, events: EventConfig) -> Pool {
        Pool {
            location: Arc::new(location),
            events: Arc::new(events),
            idle: Arc::default(),
        }
    }

    /// A connection (blocking: call it on the blocking pool).
    pub fn get(&self) -> Result<Conn, StoreError> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let store = match idle {
            Some(s) => s,
            None => {
                let mut store = Store::connect(&self.location)?;
                store.set_events((*self.events).clone());
                store
            }
        };
        Ok(Conn {
            store: Some(store),
            idle: self.idle.clone(),
        })
    }
}

impl std::ops::Deref for Conn {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Store {
        self.store.as_mut().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection that panicked mid-transaction is dropped, not reused:
        // the backends roll back an unfinished writer on drop anyway.
        if std::thread::panicking() {
            return;
        }
        if let (Some(store), Ok(mut idle)) = (self.store.take(), self.idle.lock())
            && idle.len() < IDLE
        {
            idle.push(store);
        }
    }
}
