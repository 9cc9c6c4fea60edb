//! The policy generation protocol over the two slots.
//!
//! Control (one writer) seals generation `g` into slot `g % 2`: it clears the
//! slot's `gen`, writes the image, its length and CRC, stores `gen = g`
//! (Release), then publishes `published_gen = g` (Release). The dataplane's
//! main lcore reads `published_gen`, copies the slot out, and re-checks the
//! slot's `gen` afterwards (seqlock): a changed `gen` means control
//! overwrote it mid-copy, so it retries; a CRC mismatch is a torn or corrupt
//! image and is rejected. A valid image is decoded and checked, the workers
//! swap to it and acknowledge in `worker_gen[w]`; once all have,
//! `applied_gen = g`. A refused image sets `rejected_gen = g` with a reason
//! and the old policy stays in force.

use crate::layout::{Layout, MAX_WORKERS, POLICY_SLOT_BYTES, REASON_BYTES};
use std::sync::atomic::{fence, Ordering};

/// What the dataplane found when it looked for a new policy.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Nothing newer than what it runs.
    Nothing,
    /// Generation `gen` was copied into the buffer and its checksum holds.
    Image(u64),
    /// Generation `gen` is sealed wrong (bad length or checksum): reject it.
    Corrupt(u64, String),
    /// The slot changed while being read; try again shortly.
    Busy,
}

/// What the control process learns about a generation it published.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyOutcome {
    Applied,
    Rejected(String),
    Pending,
}

impl Layout {
    /// Control: seals `image` as the next generation and publishes it.
    /// Only one control process may publish at a time.
    pub fn publish_policy(&self, image: &[u8]) -> Result<u64, String> {
        if image.len() > POLICY_SLOT_BYTES {
            return Err(format!(
                "compiled policy is {} bytes; a slot holds {POLICY_SLOT_BYTES}",
                image.len()
            ));
        }
        let gen = self.policy.published_gen.load(Ordering::Relaxed) + 1;
        let slot = &self.slots[(gen % 2) as usize];
        slot.gen.store(0, Ordering::Relaxed);
        // Release fence: a reader that sees our data writes below also sees gen = 0.
        fence(Ordering::Release);
        // SAFETY: the slot's data is plain bytes inside the mapping; a reader
        // copying concurrently detects the overwrite through `gen` (seqlock).
        unsafe {
            let dst = slot.data.get() as *mut u8;
            std::ptr::copy_nonoverlapping(image.as_ptr(), dst, image.len());
        }
        slot.len.store(image.len() as u64, Ordering::Relaxed);
        slot.checksum.store(crc32fast::hash(image) as u64, Ordering::Relaxed);
        // Release: data, length and checksum are visible before the seal.
        slot.gen.store(gen, Ordering::Release);
        self.policy.published_gen.store(gen, Ordering::Release);
        Ok(gen)
    }

    /// Control: has `gen` been applied or rejected yet?
    pub fn policy_outcome(&self, gen: u64) -> PolicyOutcome {
        // Acquire: pairs with the dataplane's Release after writing the reason.
        if self.policy.rejected_gen.load(Ordering::Acquire) == gen {
            return PolicyOutcome::Rejected(self.rejection_reason());
        }
        if self.policy.applied_gen.load(Ordering::Acquire) >= gen {
            return PolicyOutcome::Applied;
        }
        PolicyOutcome::Pending
    }

    /// The reason written with the latest rejection.
    pub fn rejection_reason(&self) -> String {
        // SAFETY: plain bytes; the dataplane wrote them before its Release
        // store of rejected_gen, which our caller Acquire-loaded.
        let bytes = unsafe { *self.policy.reason.get() };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Dataplane: copies a generation newer than `running` into `buf`.
    pub fn fetch_policy(&self, running: u64, buf: &mut Vec<u8>) -> Fetched {
        // Acquire: pairs with control's Release publish; the slot seal is visible.
        let gen = self.policy.published_gen.load(Ordering::Acquire);
        if gen <= running || gen == self.policy.rejected_gen.load(Ordering::Relaxed) {
            return Fetched::Nothing;
        }
        self.read_slot(gen, buf)
    }

    /// Copies sealed generation `gen` out of its slot (seqlock read + CRC).
    fn read_slot(&self, gen: u64, buf: &mut Vec<u8>) -> Fetched {
        let slot = &self.slots[(gen % 2) as usize];
        if slot.gen.load(Ordering::Acquire) != gen {
            return Fetched::Busy;
        }
        let len = slot.len.load(Ordering::Relaxed);
        let checksum = slot.checksum.load(Ordering::Relaxed);
        if len as usize > POLICY_SLOT_BYTES {
            return Fetched::Corrupt(gen, format!("sealed length {len} exceeds the slot size"));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        // SAFETY: `len` is within the slot; a concurrent overwrite is detected
        // by the gen re-check below and the copy discarded.
        unsafe {
            let src = slot.data.get() as *const u8;
            std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), len as usize);
        }
        // Acquire fence: the copy above is ordered before the re-check.
        fence(Ordering::Acquire);
        if slot.gen.load(Ordering::Relaxed) != gen {
            return Fetched::Busy;
        }
        if crc32fast::hash(buf) as u64 != checksum {
            return Fetched::Corrupt(gen, "checksum mismatch: the image is torn or corrupt".into());
        }
        Fetched::Image(gen)
    }

    /// Dataplane: refuses `gen` with a reason; the running policy stays.
    pub fn reject_policy(&self, gen: u64, reason: &str) {
        let mut bytes = [0u8; REASON_BYTES];
        let n = reason.len().min(REASON_BYTES - 1);
        bytes[..n].copy_from_slice(&reason.as_bytes()[..n]);
        // SAFETY: only the dataplane's main lcore writes the reason; control
        // reads it after Acquire-loading rejected_gen, stored below with Release.
        unsafe { *self.policy.reason.get() = bytes };
        self.policy.rejected_gen.store(gen, Ordering::Release);
    }

    /// Worker `w` acknowledges that it now runs `gen`.
    #[inline]
    pub fn ack_policy(&self, worker: usize, gen: u64) {
        if let Some(g) = self.policy.worker_gen.get(worker) {
            // Release: orders the ack after the worker's switch to the new policy.
            g.store(gen, Ordering::Release);
        }
    }

    /// Dataplane: lowest generation any of the first `workers` workers runs.
    pub fn min_worker_gen(&self, workers: usize) -> u64 {
        self.policy.worker_gen[..workers.min(MAX_WORKERS)]
            .iter()
            .map(|g| g.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Dataplane: all workers run `gen`.
    pub fn set_applied(&self, gen: u64) {
        self.policy.applied_gen.store(gen, Ordering::Release);
    }

    pub fn published_gen(&self) -> u64 {
        self.policy.published_gen.load(Ordering::Acquire)
    }

    pub fn applied_gen(&self) -> u64 {
        self.policy.applied_gen.load(Ordering::Acquire)
    }

    pub fn worker_gen(&self, w: usize) -> u64 {
        self.policy.worker_gen.get(w).map(|g| g.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Control: copies out the image of the generation the dataplane runs
    /// (used after a control restart to keep port slot numbers stable).
    pub fn applied_image(&self, buf: &mut Vec<u8>) -> Option<u64> {
        let gen = self.applied_gen();
        if gen == 0 {
            return None;
        }
        match self.read_slot(gen, buf) {
            Fetched::Image(g) if g == gen => Some(g),
            _ => None,
        }
    }
}
