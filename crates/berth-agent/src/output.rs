//! The output of a terminal or a process: a bounded backlog for clients that attach late, and a
//! bounded broadcast for clients attached now. Writers never wait for readers; a reader that
//! falls behind loses the oldest chunks it missed.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::broadcast;

/// One read's worth of output, shared by every reader.
pub type Chunk = Arc<[u8]>;

/// Chunks a reader may lag behind before it loses the oldest.
const BROADCAST_CHUNKS: usize = 256;

#[derive(Debug)]
pub struct OutputLog {
    /// Backlog and broadcast share one lock, so a reader's snapshot and subscription line up
    /// with no chunk lost or doubled.
    inner: Mutex<Inner>,
    backlog_limit: usize,
}

#[derive(Debug)]
struct Inner {
    backlog: VecDeque<Chunk>,
    backlog_bytes: usize,
    live: broadcast::Sender<Chunk>,
}

impl OutputLog {
    /// Keeps at least the last `backlog_limit` bytes for late readers.
    pub fn new(backlog_limit: usize) -> Self {
        let inner = Inner {
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            live: broadcast::channel(BROADCAST_CHUNKS).0,
        };
        Self {
            inner: Mutex::new(inner),
            backlog_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, chunk: Chunk) {
        let mut inner = self.lock();
        inner.backlog_bytes += chunk.len();
        inner.backlog.push_back(chunk.clone());
        while inner.backlog_bytes
            > self.backlog_limit + inner.backlog.front().map_or(0, |c| c.len())
        {
            let dropped = inner.backlog.pop_front().map_or(0, |c| c.len());
            inner.backlog_bytes -= dropped;
        }
        let _ = inner.live.send(chunk);
    }

    /// The backlog as it is now, and a subscription to everything after it.
    pub fn attach(&self) -> (Vec<Chunk>, broadcast::Receiver<Chunk>) {
        let inner = self.lock();
        (
            inner.backlog.iter().cloned().collect(),
            inner.live.subscribe(),
        )
    }
}

/// `first` plus whatever output is already queued behind it, up to `max` bytes: under a flood,
/// one frame carries many reads instead of one frame per read.
pub fn coalesce(first: &[u8], live: &mut broadcast::Receiver<Chunk>, max: usize) -> Vec<u8> {
    let mut frame = first.to_vec();
    while frame.len() < max {
        match live.try_recv() {
            Ok(more) => frame.extend_from_slice(&more),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_keeps_at_least_its_limit_and_not_much_more() {
        let log = OutputLog::new(10);
        for i in 0..10u8 {
            log.push(Arc::from(vec![i; 4]));
        }
        let (backlog, _) = log.attach();
        let bytes: usize = backlog.iter().map(|c| c.len()).sum();
        assert!((10..=14).contains(&bytes), "{bytes}");
        assert_eq!(backlog.last().unwrap()[0], 9);
    }

    #[test]
    fn a_late_reader_gets_the_backlog_then_what_follows() {
        let log = OutputLog::new(100);
        log.push(Arc::from(&b"one"[..]));
        let (backlog, mut live) = log.attach();
        log.push(Arc::from(&b"two"[..]));
        log.push(Arc::from(&b"three"[..]));
        assert_eq!(&*backlog[0], b"one");
        let first = live.try_recv().unwrap();
        assert_eq!(coalesce(&first, &mut live, 1024), b"twothree");
    }
}
