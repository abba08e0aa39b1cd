//! How long restores take on this control plane lately: what a user waking a session is told
//! to expect.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

/// Restores the estimate is made of, newest kept.
const KEPT: usize = 20;

#[derive(Debug, Default)]
pub struct RestoreTimes {
    recent: Mutex<VecDeque<Duration>>,
}

impl RestoreTimes {
    pub fn record(&self, took: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(took);
    }

    /// The median of the recent restores; `None` before the first.
    pub fn typical(&self) -> Option<Duration> {
        let mut recent: Vec<Duration> = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        recent.sort();
        recent.get(recent.len() / 2).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_median_of_the_last_twenty() {
        let times = RestoreTimes::default();
        assert_eq!(times.typical(), None);
        for ms in [900, 100, 500] {
            times.record(Duration::from_millis(ms));
        }
        assert_eq!(times.typical(), Some(Duration::from_millis(500)));
        // Twenty quick ones push the slow ones out.
        for _ in 0..KEPT {
            times.record(Duration::from_millis(300));
        }
        assert_eq!(times.typical(), Some(Duration::from_millis(300)));
    }
}
