//! Per-token request rates (`[quota] requests_per_second`, `request_burst`): one token bucket
//! per credential (a bearer token or a login cookie), in this instance's memory. Requests
//! without a credential are not counted (they are refused at once), nor are the admin's: the
//! operator's own automation is not throttled by the limits it sets for users.
//!
//! Per instance, not per cluster: behind a load balancer of N instances a token may reach N
//! times the rate. A bucket in Redis would cost a round trip on every request; this costs a
//! hash and a lock.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    AppState,
    error::ApiError,
    extract::{LOGIN_COOKIE, bearer, cookie},
};

/// Buckets past this many are swept of those full again (their callers idle), so a stream of
/// new tokens cannot grow the map without bound.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    /// Keyed by a keyed hash of the credential, so no token is kept here.
    buckets: Mutex<HashMap<u64, Bucket>>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `None` when `per_second` is 0: no limit.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        })
    }

    /// Takes one request from `credential`'s bucket, refilled for the time since its last; when
    /// the bucket is empty, how long until it holds one again.
    pub fn take(&self, credential: &str, now: Instant) -> Result<(), Duration> {
        let key = self.hasher.hash_one(credential);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = self.refilled(*bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

/// The middleware: a request over its credential's rate is answered `429 rate_limited` with
/// `Retry-After`, before any handler runs.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.rate_limit else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let credential = bearer(headers).or_else(|| cookie(headers, LOGIN_COOKIE));
    let Some(credential) = credential.filter(|token| !state.auth.is_admin_token(token)) else {
        return next.run(request).await;
    };
    match limiter.take(credential, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => ApiError::rate_limited(limiter.per_second(), wait).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_wait_for_the_rate() {
        let limiter = RateLimiter::new(10, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.take("alice", start).unwrap();
        }
        let wait = limiter.take("alice", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // Another caller has a bucket of its own.
        limiter.take("bob", start).unwrap();
        // A tenth of a second refills one request, and no more.
        let later = start + Duration::from_millis(100);
        limiter.take("alice", later).unwrap();
        assert!(limiter.take("alice", later).is_err());
        // A long pause refills up to the burst, not past it.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            limiter.take("alice", much_later).unwrap();
        }
        assert!(limiter.take("alice", much_later).is_err());
    }

    #[test]
    fn no_rate_is_no_limiter() {
        assert!(RateLimiter::new(0, 100).is_none());
    }

    #[test]
    fn idle_callers_are_swept_once_the_map_is_large() {
        let limiter = RateLimiter::new(1000, 1).unwrap();
        let start = Instant::now();
        for n in 0..SWEEP_AT {
            limiter.take(&format!("token-{n}"), start).unwrap();
        }
        let later = start + Duration::from_secs(1);
        limiter.take("one more", later).unwrap();
        let held = limiter.buckets.lock().unwrap().len();
        assert_eq!(held, 1, "the refilled buckets went; the new one stayed");
    }
}
