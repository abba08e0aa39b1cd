//! What a user waking a session is told to expect: how long restores take on this control
//! plane lately, and, while the host is full, the restores waiting for room in the order the
//! actor will start them. The actor keeps both here, so a session's `GET` reads them without
//! a round trip through it.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// Restores the estimate is made of, newest kept.
const KEPT: usize = 20;

#[derive(Debug, Default)]
pub struct WakeOutlook {
    recent: Mutex<VecDeque<Duration>>,
    waiting: Mutex<WaitingForRoom>,
}

#[derive(Debug)]
struct WaitingForRoom {
    /// Sessions whose restore waits for room, the next to start first.
    order: VecDeque<String>,
    /// How long it takes lately for a session to end and make room.
    room_every: Duration,
}

impl Default for WaitingForRoom {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            // Until sessions end and say otherwise.
            room_every: Duration::from_secs(30),
        }
    }
}

/// Where a waking session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeEstimate {
    /// Its place among the restores waiting for room (1 is next); `None` when it waits for
    /// none.
    pub position: Option<u32>,
    /// How long until it is awake: the room it waits for, then a typical restore. `None`
    /// before the first restore, unless it waits for room.
    pub millis: Option<u64>,
}

impl WakeOutlook {
    pub fn record(&self, took: Duration) {
        let mut recent = lock(&self.recent);
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(took);
    }

    /// The median of the recent restores; `None` before the first.
    pub fn typical(&self) -> Option<Duration> {
        let mut recent: Vec<Duration> = lock(&self.recent).iter().copied().collect();
        recent.sort();
        recent.get(recent.len() / 2).copied()
    }

    /// How long it takes lately for a session to end and make room: what the actor tells
    /// queued creates and waiting restores alike.
    pub fn room_every(&self) -> Duration {
        lock(&self.waiting).room_every
    }

    /// Counts one more session's end, `gap` after the one before it.
    pub fn session_ended_after(&self, gap: Duration) {
        let mut waiting = lock(&self.waiting);
        waiting.room_every = waiting.room_every.mul_f64(0.8) + gap.mul_f64(0.2);
    }

    /// `id`'s restore waits for room, after those already waiting (once, however often asked).
    pub fn wait_for_room(&self, id: &str) {
        let mut waiting = lock(&self.waiting);
        if !waiting.order.iter().any(|waiting| waiting == id) {
            waiting.order.push_back(id.to_owned());
        }
    }

    /// `id`'s restore no longer waits; whether it did.
    pub fn stop_waiting(&self, id: &str) -> bool {
        let mut waiting = lock(&self.waiting);
        let before = waiting.order.len();
        waiting.order.retain(|waiting| waiting != id);
        waiting.order.len() != before
    }

    /// The restore to start next, taken out of the queue.
    pub fn next_waiting(&self) -> Option<String> {
        lock(&self.waiting).order.pop_front()
    }

    /// Puts a restore taken with [`Self::next_waiting`] back at the head of the queue.
    pub fn keep_first(&self, id: String) {
        lock(&self.waiting).order.push_front(id);
    }

    pub fn any_waiting(&self) -> bool {
        !lock(&self.waiting).order.is_empty()
    }

    /// Every restore waiting for room, the next first.
    pub fn waiting(&self) -> Vec<String> {
        lock(&self.waiting).order.iter().cloned().collect()
    }

    pub fn estimate(&self, id: &str) -> WakeEstimate {
        let typical = self.typical();
        let waiting = lock(&self.waiting);
        let position = waiting.order.iter().position(|waiting| waiting == id);
        let Some(ahead) = position else {
            return WakeEstimate {
                position: None,
                millis: typical.map(millis),
            };
        };
        // Each restore ahead, and this one, needs a session to end first.
        let rooms = u32::try_from(ahead + 1).unwrap_or(u32::MAX);
        WakeEstimate {
            position: Some(rooms),
            millis: Some(millis(
                waiting
                    .room_every
                    .saturating_mul(rooms)
                    .saturating_add(typical.unwrap_or_default()),
            )),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Every change is one push, pop or retain: a panic elsewhere leaves the data whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_median_of_the_last_twenty() {
        let outlook = WakeOutlook::default();
        assert_eq!(outlook.typical(), None);
        for ms in [900, 100, 500] {
            outlook.record(Duration::from_millis(ms));
        }
        assert_eq!(outlook.typical(), Some(Duration::from_millis(500)));
        // Twenty quick ones push the slow ones out.
        for _ in 0..KEPT {
            outlook.record(Duration::from_millis(300));
        }
        assert_eq!(outlook.typical(), Some(Duration::from_millis(300)));
    }

    #[test]
    fn a_restore_waiting_for_room_is_told_its_place_and_the_wait_before_it() {
        let outlook = WakeOutlook::default();
        // A gap of 10 s after the first guess of 30 s.
        outlook.session_ended_after(Duration::from_secs(10));
        assert_eq!(outlook.room_every(), Duration::from_secs(26));
        assert_eq!(
            outlook.estimate("a"),
            WakeEstimate {
                position: None,
                millis: None
            }
        );
        outlook.record(Duration::from_millis(700));
        for id in ["a", "b", "a"] {
            outlook.wait_for_room(id);
        }
        assert_eq!(outlook.waiting(), ["a", "b"], "once each, in order");
        assert_eq!(
            outlook.estimate("b"),
            WakeEstimate {
                position: Some(2),
                millis: Some(52_700)
            }
        );

        // The first starts; the second moves up.
        let next = outlook.next_waiting().unwrap();
        assert_eq!(outlook.estimate("b").position, Some(1));
        outlook.keep_first(next);
        assert_eq!(outlook.estimate("a").position, Some(1));
        assert!(outlook.stop_waiting("a") && !outlook.stop_waiting("a"));
        assert_eq!(
            outlook.estimate("a"),
            WakeEstimate {
                position: None,
                millis: Some(700)
            }
        );
    }
}
