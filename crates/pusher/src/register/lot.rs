//! The registration budget and the parking lot: how registrations stay out of the way of
//! pushes, and how the writes of one device stay in order.
//!
//! A registration that must write its device document is written at once only when a
//! registration slot is free (at most [`Lot::new`]'s `slots` writes run at a time, so
//! registrations can never hold the whole AMQP prefetch window) **and** no write of the
//! same device is in progress. Otherwise it is *parked*: its delivery is acked at once
//! and the latest update per device waits here, to be written by the drainer as soon as
//! a slot is free and the device is idle. A newer registration replaces a parked older
//! one, and a registration written at once supersedes the parked one of its device, so
//! an older registration never overwrites a newer one. The lot is bounded: beyond
//! [`MAX_PARKED`] devices a registration is settled without update (the phone registers
//! again within minutes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Most devices parked at once.
pub const MAX_PARKED: usize = 50_000;

/// A device: (account database, device id).
pub type DeviceKey = (String, String);

/// Slots, busy devices and parked work `J` (the write of one device).
#[derive(Debug)]
pub struct Lot<J> {
    slots: Arc<Semaphore>,
    inner: Arc<Mutex<Inner<J>>>,
    /// Bumped whenever a slot or a device may have become free, or work was parked.
    wake: Arc<watch::Sender<u64>>,
}

#[derive(Debug)]
struct Inner<J> {
    busy: HashSet<DeviceKey>,
    parked: HashMap<DeviceKey, J>,
    /// Parking order (may hold keys already taken; skipped then).
    order: VecDeque<DeviceKey>,
}

/// The right to write one device now: a slot, and the device marked busy. Dropping it
/// frees both and wakes the drainer.
#[derive(Debug)]
pub struct Claim<J> {
    key: DeviceKey,
    _slot: OwnedSemaphorePermit,
    inner: Arc<Mutex<Inner<J>>>,
    wake: Arc<watch::Sender<u64>>,
}

impl<J> Drop for Claim<J> {
    fn drop(&mut self) {
        lock(&self.inner).busy.remove(&self.key);
        bump(&self.wake);
    }
}

/// What became of a registration offered to the lot.
#[derive(Debug)]
pub enum Offer<J> {
    /// Write it now (the job, handed back), holding the claim.
    Now(Claim<J>, J),
    /// Parked: the drainer writes it (or a newer one of the device) later.
    Parked,
    /// The lot is full: settle without update (the job, handed back).
    Full(J),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|v| *v = v.wrapping_add(1));
}

impl<J> Lot<J> {
    /// A lot with `slots` concurrent writes.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            inner: Arc::new(Mutex::new(Inner {
                busy: HashSet::new(),
                parked: HashMap::new(),
                order: VecDeque::new(),
            })),
            wake: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Offers the newest registration of `key`: a claim to write it now, parked, or
    /// refused. The second value is the older parked registration of the same device
    /// that this one supersedes, if any (it will never be written).
    pub fn offer(&self, key: DeviceKey, job: J) -> (Offer<J>, Option<J>) {
        let mut inner = lock(&self.inner);
        if !inner.busy.contains(&key)
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            // Newer than anything parked for this device.
            let superseded = inner.parked.remove(&key);
            inner.busy.insert(key.clone());
            return (Offer::Now(self.claim(key, slot), job), superseded);
        }
        if !inner.parked.contains_key(&key) {
            if inner.parked.len() >= MAX_PARKED {
                return (Offer::Full(job), None);
            }
            inner.order.push_back(key.clone());
        }
        let superseded = inner.parked.insert(key, job);
        drop(inner);
        bump(&self.wake);
        (Offer::Parked, superseded)
    }

    /// The oldest parked job whose device is idle, with its claim, if a slot is free.
    pub fn next_ready(&self) -> Option<(Claim<J>, J)> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let mut inner = lock(&self.inner);
        let Inner {
            busy,
            parked,
            order,
        } = &mut *inner;
        // Drop keys that were taken by a direct write meanwhile.
        order.retain(|k| parked.contains_key(k));
        let at = order.iter().position(|k| !busy.contains(k))?;
        let key = order.remove(at)?;
        let job = parked.remove(&key)?;
        busy.insert(key.clone());
        drop(inner);
        Some((self.claim(key, slot), job))
    }

    /// A receiver that sees a change whenever a slot or a device may have become free,
    /// or work was parked. Mark it seen *before* looking at the lot, so no wake-up is
    /// lost between the look and the wait.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Devices waiting in the lot.
    pub fn parked(&self) -> usize {
        lock(&self.inner).parked.len()
    }

    /// Nothing parked and nothing being written.
    pub fn is_idle(&self) -> bool {
        let inner = lock(&self.inner);
        inner.parked.is_empty() && inner.busy.is_empty()
    }

    /// Empties the lot (at exit), handing back what was never written.
    pub fn take_all(&self) -> Vec<J> {
        let mut inner = lock(&self.inner);
        inner.order.clear();
        inner.parked.drain().map(|(_, j)| j).collect()
    }

    fn claim(&self, key: DeviceKey, slot: OwnedSemaphorePermit) -> Claim<J> {
        Claim {
            key,
            _slot: slot,
            inner: self.inner.clone(),
            wake: self.wake.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: &str) -> DeviceKey {
        ("account%2Fa".to_string(), d.to_string())
    }

    #[test]
    fn writes_at_once_while_slots_last_then_parks() {
        let lot = Lot::new(1);
        let Offer::Now(claim, _) = lot.offer(key("a"), 1).0 else {
            panic!("first write runs at once");
        };
        assert!(
            matches!(lot.offer(key("b"), 2).0, Offer::Parked),
            "no slot left"
        );
        assert!(lot.next_ready().is_none(), "the slot is still taken");
        drop(claim);
        let (_claim, job) = lot.next_ready().expect("b is ready once a slot is free");
        assert_eq!(job, 2);
        assert_eq!(lot.parked(), 0);
    }

    #[test]
    fn one_device_is_written_in_order_and_the_newest_wins() {
        let lot = Lot::new(4);
        let Offer::Now(first, _) = lot.offer(key("a"), 1).0 else {
            panic!("at once");
        };
        assert!(
            matches!(lot.offer(key("a"), 2).0, Offer::Parked),
            "a is busy"
        );
        assert!(
            matches!(lot.offer(key("a"), 3), (Offer::Parked, Some(2))),
            "replaces 2"
        );
        assert_eq!(lot.parked(), 1);
        assert!(lot.next_ready().is_none(), "a is still being written");
        drop(first);
        let (_c, job) = lot.next_ready().expect("a is idle now");
        assert_eq!(job, 3, "the newest registration of the device");
    }

    #[test]
    fn a_direct_write_supersedes_the_parked_registration_of_its_device() {
        let lot = Lot::new(1);
        let Offer::Now(other, _) = lot.offer(key("x"), 0).0 else {
            panic!("at once");
        };
        assert!(matches!(lot.offer(key("a"), 1).0, Offer::Parked));
        drop(other);
        let (Offer::Now(_c, _), Some(1)) = lot.offer(key("a"), 2) else {
            panic!("slot free and a idle: written at once, superseding the parked 1");
        };
        assert_eq!(lot.parked(), 0, "the older parked one is gone");
        assert!(lot.next_ready().is_none());
    }

    #[test]
    fn a_full_lot_refuses() {
        let lot = Lot::new(1);
        let Offer::Now(_c, _) = lot.offer(key("busy"), 0).0 else {
            panic!("at once");
        };
        for i in 0..MAX_PARKED {
            assert!(matches!(lot.offer(key(&i.to_string()), 0).0, Offer::Parked));
        }
        assert!(matches!(lot.offer(key("one more"), 0).0, Offer::Full(0)));
        assert!(
            matches!(lot.offer(key("0"), 1), (Offer::Parked, Some(0))),
            "a device already parked is still replaced"
        );
    }

    #[test]
    fn a_watcher_marked_seen_before_looking_never_misses_a_wake_up() {
        let lot = Lot::new(1);
        let mut rx = lot.watch();
        rx.borrow_and_update();
        let Offer::Now(claim, _) = lot.offer(key("a"), 1).0 else {
            panic!("at once");
        };
        assert!(!rx.has_changed().unwrap(), "a write at once wakes nobody");
        assert!(matches!(lot.offer(key("b"), 2).0, Offer::Parked));
        assert!(rx.has_changed().unwrap(), "parking wakes the drainer");
        rx.borrow_and_update();
        assert!(!lot.is_idle());
        drop(claim);
        assert!(rx.has_changed().unwrap(), "a freed slot wakes the drainer");
        let (claim, _) = lot.next_ready().expect("b");
        drop(claim);
        assert!(lot.is_idle());
        assert!(lot.take_all().is_empty());
    }
}
