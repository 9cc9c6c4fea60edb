//! The current [`Runtime`], read by every worker and replaced by the main lcore, RCU
//! style: workers load a pointer (no lock, no reference count), and the main lcore frees
//! a replaced runtime only once every worker has reported that it moved past it.
//!
//! Each runtime carries an epoch (a swap counter). A worker reads through its own
//! [`Reader`]: whenever it finds a new epoch, it stores that epoch in its slot, which
//! tells the main lcore it holds no reference into any older runtime — its previous
//! borrow ended before it read again (the borrow checker sees to that: a reader's
//! runtime borrows the reader mutably). The main lcore holds the one [`Publisher`]: its
//! [`Publisher::publish`] waits for all slots to reach the new epoch, then frees the old
//! runtime, and the runtime its [`Publisher::current`] lends cannot be held across that.

use rampart_pipeline::runtime::Runtime;
use rampart_shm::MAX_WORKERS;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a swap waits for the workers before it gives up freeing the old runtime.
const GRACE: Duration = Duration::from_secs(5);

pub struct RuntimeCell {
    /// Null until the first policy is applied.
    current: AtomicPtr<Runtime>,
    /// The epoch of the runtime each worker runs.
    worker_epoch: [AtomicU64; MAX_WORKERS],
    workers: usize,
    /// Whether the publisher was handed out.
    published: AtomicBool,
    /// Rung after each swap: wakes workers that wait for traffic (`dpdk::RxWaiter`).
    pub doorbell: crate::dpdk::Doorbell,
}

impl RuntimeCell {
    pub fn new(workers: usize) -> RuntimeCell {
        RuntimeCell {
            current: AtomicPtr::new(std::ptr::null_mut()),
            worker_epoch: std::array::from_fn(|_| AtomicU64::new(0)),
            workers: workers.min(MAX_WORKERS),
            published: AtomicBool::new(false),
            doorbell: crate::dpdk::Doorbell::new().expect("an eventfd for the workers' doorbell"),
        }
    }

    /// The main lcore's handle, the only one that replaces the runtime; None if it was
    /// handed out already.
    pub fn publisher(self: &Arc<Self>) -> Option<Publisher> {
        (!self.published.swap(true, Ordering::AcqRel)).then(|| Publisher { cell: self.clone(), epoch: 0 })
    }

    /// Worker `worker`'s handle (one per worker thread).
    pub fn reader(&self, worker: usize) -> Reader<'_> {
        Reader { cell: self, worker, seen: 0 }
    }
}

/// The main lcore's handle on the runtime (there is one): it publishes new runtimes and
/// frees the ones they replace.
pub struct Publisher {
    cell: Arc<RuntimeCell>,
    /// The last epoch handed out.
    epoch: u64,
}

impl Publisher {
    /// The runtime in force. It stays valid for the borrow: only this (unique) publisher
    /// replaces or frees it, and that takes `&mut self`.
    pub fn current(&self) -> Option<&Runtime> {
        let p = self.cell.current.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from Box::into_raw and is freed only by
        // `publish`/`clear`, which need `&mut self` and so wait for this borrow to end.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Publishes `rt` to the workers and frees the previous runtime once
    /// no worker can hold it, calling `waiting` while it waits (the heartbeat). After
    /// [`GRACE`] without every worker's report, the old runtime is left allocated rather
    /// than freed under a worker; returns false then.
    pub fn publish(&mut self, mut rt: Runtime, mut waiting: impl FnMut()) -> bool {
        self.epoch += 1;
        let epoch = self.epoch;
        rt.epoch = epoch;
        let cell = &self.cell;
        // Release: the workers' Acquire load sees a fully built runtime.
        let old = cell.current.swap(Box::into_raw(Box::new(rt)), Ordering::AcqRel);
        cell.doorbell.ring();
        let deadline = Instant::now() + GRACE;
        // Acquire: pairs with each worker's Release store of the epoch it now runs.
        while !cell.worker_epoch[..cell.workers].iter().all(|e| e.load(Ordering::Acquire) >= epoch) {
            if Instant::now() > deadline {
                return false;
            }
            waiting();
            std::thread::sleep(Duration::from_micros(50));
        }
        if !old.is_null() {
            // SAFETY: every worker reported an epoch newer than `old`'s, so none holds a
            // reference into it; it came from Box::into_raw and is freed once.
            drop(unsafe { Box::from_raw(old) });
        }
        true
    }

    /// Frees the runtime at shutdown. Only once every worker has returned.
    pub fn clear(&mut self) {
        let old = self.cell.current.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: the workers have returned (caller's contract), so nobody references
            // it; it came from Box::into_raw.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

/// A worker's view of the current runtime.
pub struct Reader<'a> {
    cell: &'a RuntimeCell,
    worker: usize,
    seen: u64,
}

impl Reader<'_> {
    /// The runtime to use for the next bursts, and whether it is new to this worker; None
    /// before the first policy. Borrowing the reader mutably, the runtime cannot be held
    /// across the next call, after which the main lcore may free it.
    #[inline(always)]
    pub fn enter(&mut self) -> Option<(&Runtime, bool)> {
        // Acquire: pairs with the main lcore's Release swap of a fully built runtime.
        let p = self.cell.current.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // We store a newer epoch (below) only after the borrow of any older runtime ended.
        // SAFETY: the main lcore frees this runtime only after our slot shows an epoch
        // past it, and the returned borrow ends before our next call (it borrows `self`).
        let rt = unsafe { &*p };
        let fresh = rt.epoch != self.seen;
        if fresh {
            self.seen = rt.epoch;
            // Release: we hold no reference into an older runtime any more.
            self.cell.worker_epoch[self.worker].store(rt.epoch, Ordering::Release);
        }
        Some((rt, fresh))
    }
}
