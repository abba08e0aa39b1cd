//! Writing records off the request's path: a bounded queue drained by one task, which writes
//! what has arrived in batches and now and then runs a chore (forgetting old records). The
//! audit log and sessions' timelines are written this way.

use std::{future::Future, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

/// Where records go; cheap to clone. The default writes nothing (for parts tested without).
#[derive(Debug)]
pub struct Queued<T>(Option<mpsc::Sender<T>>);

impl<T> Clone for Queued<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Queued<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: Send + 'static> Queued<T> {
    /// A queue of `capacity` records and its task: `write` gets what has arrived, at most
    /// `batch` at a time, in order; `chore` runs every `every` (first at once).
    pub fn spawn<W, Written, C, Done>(
        capacity: usize,
        batch: usize,
        write: W,
        every: Duration,
        chore: C,
    ) -> (Self, JoinHandle<()>)
    where
        W: Fn(Vec<T>) -> Written + Send + 'static,
        Written: Future<Output = ()> + Send,
        C: Fn() -> Done + Send + 'static,
        Done: Future<Output = ()> + Send,
    {
        let (sender, mut records) = mpsc::channel::<T>(capacity);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    first = records.recv() => {
                        let Some(first) = first else { return };
                        let mut arrived = vec![first];
                        while arrived.len() < batch {
                            match records.try_recv() {
                                Ok(record) => arrived.push(record),
                                Err(_) => break,
                            }
                        }
                        write(arrived).await;
                    }
                    _ = tick.tick() => chore().await,
                }
            }
        });
        (Self(Some(sender)), task)
    }

    /// Queues `record`; gives it back when the queue is full (the writer is far behind), so
    /// the caller can count or log what is dropped. A queue whose task has ended (the instance
    /// is stopping) drops it silently.
    pub fn push(&self, record: T) -> Result<(), T> {
        match &self.0 {
            Some(sender) => match sender.try_send(record) {
                Err(mpsc::error::TrySendError::Full(record)) => Err(record),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::Queued;

    #[tokio::test(start_paused = true)]
    async fn records_are_written_in_order_in_batches_and_the_chore_runs_on_time() {
        let written = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let chores = Arc::new(Mutex::new(0));
        let (queue, task) = {
            let (written, chores) = (written.clone(), chores.clone());
            Queued::spawn(
                4,
                3,
                move |batch| {
                    written.lock().unwrap().push(batch);
                    std::future::ready(())
                },
                Duration::from_secs(60),
                move || {
                    *chores.lock().unwrap() += 1;
                    std::future::ready(())
                },
            )
        };
        for n in 0..4 {
            queue.push(n).unwrap();
        }
        assert_eq!(queue.push(4), Err(4), "full: the record comes back");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*written.lock().unwrap(), [vec![0, 1, 2], vec![3]]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(*chores.lock().unwrap(), 2, "at once, then every minute");
        task.abort();
        assert_eq!(
            Queued::<u32>::default().push(1),
            Ok(()),
            "nowhere to go: dropped"
        );
    }
}
