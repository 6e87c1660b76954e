//! Puts gateway messages back in order, per channel.
//!
//! Serenity reads gateway events in order but runs the handler of each in a task of its own, and
//! tokio starts tasks spawned in a burst in no fixed order (the last one spawned often first):
//! without this, a burst of 200 messages reached the runtime with 192 of them out of place.
//! Discord message ids (snowflakes) grow with time within a channel, so each message is held
//! briefly and a channel's held messages are released in id order: a message goes out once it
//! has been held for [`Reorder`]'s hold time, together with every older one of its channel.
//! A message that comes later than that is released after its own hold, out of place but
//! never dropped.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// Messages waiting to be released, by channel and id.
#[derive(Debug)]
pub(crate) struct Reorder<T> {
    hold: Duration,
    channels: HashMap<u64, BTreeMap<u64, (Instant, T)>>,
}

impl<T> Reorder<T> {
    pub(crate) fn new(hold: Duration) -> Self {
        Self { hold, channels: HashMap::new() }
    }

    /// Holds `item`, message `id` of `channel`, which arrived at `now`.
    pub(crate) fn push(&mut self, channel: u64, id: u64, item: T, now: Instant) {
        self.channels.entry(channel).or_default().insert(id, (now, item));
    }

    /// When the next message is due, if any is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.channels.values().flat_map(|held| held.values()).map(|(arrived, _)| *arrived + self.hold).min()
    }

    /// The messages due at `now`, each channel's in id order: per channel, every message up to
    /// the newest one held for the hold time.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<T> {
        let mut released = Vec::new();
        self.channels.retain(|_, held| {
            let newest_due = held.iter().rev().find(|(_, (arrived, _))| *arrived + self.hold <= now).map(|(id, _)| *id);
            if let Some(newest_due) = newest_due {
                let later = held.split_off(&(newest_due + 1));
                released.extend(std::mem::replace(held, later).into_values().map(|(_, item)| item));
            }
            !held.is_empty()
        });
        released
    }

    /// Every held message, each channel's in id order (at shutdown).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.channels.drain().flat_map(|(_, held)| held.into_values().map(|(_, item)| item)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(30);

    #[test]
    fn a_channel_s_messages_come_out_in_id_order_after_the_hold() {
        let start = Instant::now();
        let mut order = Reorder::new(HOLD);
        order.push(1, 30, "third", start);
        order.push(1, 10, "first", start + Duration::from_millis(1));
        order.push(2, 5, "other channel", start + Duration::from_millis(2));
        order.push(1, 20, "second", start + Duration::from_millis(3));
        assert_eq!(order.next_due(), Some(start + HOLD));
        assert!(order.due(start + Duration::from_millis(29)).is_empty(), "nothing before its hold");
        // The newest id held long enough is 30: everything older of channel 1 goes with it.
        assert_eq!(order.due(start + HOLD), ["first", "second", "third"]);
        assert_eq!(order.next_due(), Some(start + Duration::from_millis(32)));
        assert_eq!(order.due(start + Duration::from_millis(32)), ["other channel"]);
        assert_eq!(order.next_due(), None);
    }

    #[test]
    fn newer_messages_wait_for_their_own_hold_and_late_ones_are_not_lost() {
        let start = Instant::now();
        let mut order = Reorder::new(HOLD);
        order.push(1, 10, "a", start);
        order.push(1, 20, "b", start + Duration::from_millis(20));
        assert_eq!(order.due(start + HOLD), ["a"], "b has not been held long enough");
        // Older than b, and in before b was released: it goes out first, with b.
        order.push(1, 5, "older", start + Duration::from_millis(35));
        assert_eq!(order.due(start + Duration::from_millis(50)), ["older", "b"]);
        // Older than everything released already: out of place after its own hold, not lost.
        order.push(1, 7, "late", start + Duration::from_millis(55));
        assert!(order.due(start + Duration::from_millis(84)).is_empty());
        assert_eq!(order.due(start + Duration::from_millis(85)), ["late"]);
        order.push(3, 1, "x", start);
        order.push(3, 2, "y", start);
        assert_eq!(order.drain(), ["x", "y"]);
    }
}
