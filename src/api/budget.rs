//! The memory that list pages may hold, across every connection at once
//! (`response_buffer_bytes`).
//!
//! A page of up to 1,000 items is built whole (names and values from Redis, then its JSON body)
//! and stays in memory until the client has read it; a client that pipelines list requests and
//! never reads holds two pages (one being written, one waiting for it) until `write_timeout`
//! cuts it. So each list request reserves room before it reads Redis: `ITEM_BYTES` per item of
//! its `limit` while the page is built, then just its body's allocation, held inside the body's
//! `Bytes` until hyper has handed the last byte to the kernel. A request that finds no room
//! waits for it up to `redis.command_timeout`, then answers 503 `busy`; single timestamps,
//! problem documents and the OpenAPI document (one shared copy) are small and not counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::bounds::room_for;
use super::problem::ApiError;

#[derive(Clone)]
pub struct ResponseBudget {
    permits: Arc<Semaphore>,
    /// How long a request may wait for room.
    wait: Duration,
    /// Bytes reserved now (`timestamp_api_response_buffer_bytes`).
    held: IntGauge,
}

impl ResponseBudget {
    pub fn new(bytes: usize, wait: Duration, held: IntGauge) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(bytes)),
            wait,
            held,
        }
    }

    /// The room a page of `limit` items needs while it is built, once it is there.
    pub async fn reserve(&self, limit: usize) -> Result<Reservation, ApiError> {
        let bytes = room_for(limit);
        // The configuration check keeps the budget above the largest page's reservation, so
        // every reservation can be granted once enough pages are read.
        let permits = u32::try_from(bytes).map_err(|_| ApiError::Busy)?;
        let acquired =
            tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(permits)).await;
        let Ok(Ok(permit)) = acquired else {
            return Err(ApiError::Busy);
        };
        self.held.add(gauge_value(bytes));
        Ok(Reservation {
            permit,
            held: self.held.clone(),
        })
    }
}

/// Room in the budget, given back when dropped.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    held: IntGauge,
}

impl Reservation {
    /// The page's body, which keeps this reservation, cut to the body's allocation (its
    /// capacity, which outgrows its length as it is built), until the last copy of the bytes is
    /// dropped (hyper drops it once it is written out).
    pub fn hold(mut self, body: Vec<u8>) -> Bytes {
        let extra = self.permit.num_permits().saturating_sub(body.capacity());
        if let Some(extra) = self.permit.split(extra) {
            self.held.sub(gauge_value(extra.num_permits()));
        }
        Bytes::from_owner(Held {
            body,
            _reservation: self,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.sub(gauge_value(self.permit.num_permits()));
    }
}

fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A page's body and the room it holds.
struct Held {
    body: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> ResponseBudget {
        ResponseBudget::new(
            bytes,
            Duration::from_millis(50),
            IntGauge::new("held", "held").unwrap(),
        )
    }

    #[tokio::test]
    async fn a_body_holds_its_allocation_until_its_last_copy_is_dropped() {
        let budget = budget(room_for(10));
        let reservation = budget.reserve(10).await.unwrap();
        assert_eq!(budget.held.get(), 10 * 1024 + 1024);
        let mut page = Vec::with_capacity(300);
        page.extend_from_slice(&[b'x'; 200]);
        let body = reservation.hold(page);
        assert_eq!(budget.held.get(), 300);
        let written_in_part = body.slice(100..);
        drop(body);
        assert_eq!(budget.held.get(), 300);
        assert_eq!(budget.permits.available_permits(), room_for(10) - 300);
        drop(written_in_part);
        assert_eq!(budget.held.get(), 0);
        assert_eq!(budget.permits.available_permits(), room_for(10));
    }

    #[tokio::test]
    async fn a_request_without_room_waits_then_is_busy() {
        let budget = budget(room_for(10));
        let first = budget.reserve(10).await.unwrap();
        assert!(matches!(budget.reserve(1).await, Err(ApiError::Busy)));
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(1).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first.hold(Vec::new()));
        assert!(waiting.await.unwrap().is_ok());
    }
}
