//! Creating, attaching and validating the mapped segment file.

use crate::layout::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("shared-memory segment {path}: {what}: {source}")]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error("shared-memory segment {0} does not exist yet (is rampart-dataplane running with the same `dataplane.shm`?)")]
    Missing(PathBuf),
    #[error("shared-memory segment {0} is in use by a running dataplane (pid {1}); stop it first or choose another `dataplane.shm`")]
    InUse(PathBuf, u32),
    #[error("refusing shared-memory segment {path}: {why}")]
    Foreign { path: PathBuf, why: String },
    #[error("shared-memory segment {0} is still being initialised")]
    NotReady(PathBuf),
}

/// A mapping of the segment. The dataplane's (created) mapping removes the
/// file when dropped; the control process's (attached) one does not.
pub struct Segment {
    layout: NonNull<Layout>,
    path: PathBuf,
    owner: bool,
    inode: u64,
}

// SAFETY: all access to the mapped Layout is through atomics or the
// documented single-writer protocols, which hold across threads too.
unsafe impl Send for Segment {}
// SAFETY: shared references only reach the Layout's atomics and the protocols built
// on them (seqlocked slots, SPSC rings with one producer and one consumer each), which
// are sound with several threads of one process as with two processes.
unsafe impl Sync for Segment {}

const SIZE: usize = std::mem::size_of::<Layout>();

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> ShmError + 'a {
    move |source| ShmError::Io { path: path.to_path_buf(), what, source }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn open(path: &Path, flags: i32, mode: u32) -> Result<i32, std::io::Error> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn map(fd: i32) -> Result<NonNull<Layout>, std::io::Error> {
    // SAFETY: mapping SIZE bytes of an fd we own, shared and read-write; the
    // result is checked for MAP_FAILED.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NonNull::new(p as *mut Layout).expect("mmap never returns NULL on success"))
}

fn inode_of(fd: i32) -> std::io::Result<(u64, u64)> {
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is valid for writes.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_ino, st.st_size as u64))
}

/// (magic, ABI version, inode, size) of an open segment file, read without mapping it.
/// A file too short to hold them has an all-zero magic.
fn identity(fd: i32) -> std::io::Result<([u8; 8], u32, u64, u64)> {
    let (inode, size) = inode_of(fd)?;
    let mut bytes = [0u8; ABI_VERSION_OFFSET + 4];
    // SAFETY: fd is open; pread writes at most bytes.len() bytes into our buffer.
    let n = unsafe { libc::pread(fd, bytes.as_mut_ptr() as *mut libc::c_void, bytes.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if (n as usize) < bytes.len() {
        return Ok(([0; 8], 0, inode, size));
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[MAGIC_OFFSET..MAGIC_OFFSET + 8]);
    let abi = u32::from_ne_bytes(bytes[ABI_VERSION_OFFSET..ABI_VERSION_OFFSET + 4].try_into().expect("4 bytes"));
    Ok((magic, abi, inode, size))
}

impl Segment {
    /// Dataplane: creates a fresh segment at `path` with `mode` (e.g. 0o600).
    /// A leftover file from a dataplane that died is replaced; one owned by a
    /// live dataplane is refused.
    pub fn create(path: &Path, mode: u32, workers: u32, tsc_hz: u64, tsc_now: u64) -> Result<Segment, ShmError> {
        if let Ok(existing) = Segment::attach_any(path) {
            let pid = existing.header().owner_pid.load(Ordering::Relaxed);
            if pid_alive(pid) && pid != std::process::id() {
                return Err(ShmError::InUse(path.to_path_buf(), pid));
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(path, "create its directory"))?;
        }
        let _ = std::fs::remove_file(path);
        let fd = open(path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode).map_err(io(path, "create"))?;
        // SAFETY: fd is ours; fchmod sets the exact mode despite the umask.
        unsafe { libc::fchmod(fd, mode) };
        // SAFETY: extends the new file to SIZE bytes of zeros (the Layout's initial state).
        let r = unsafe { libc::ftruncate(fd, SIZE as libc::off_t) };
        let mapped = if r != 0 { Err(std::io::Error::last_os_error()) } else { map(fd) };
        let (inode, _) = inode_of(fd).unwrap_or((0, 0));
        // SAFETY: closing our own fd; the mapping stays valid.
        unsafe { libc::close(fd) };
        let layout = mapped.map_err(io(path, "size and map"))?;
        let seg = Segment { layout, path: path.to_path_buf(), owner: true, inode };
        // SAFETY: the mapping is fresh, all-zero and not yet visible as Ready
        // to anyone, so these plain (non-atomic) header fields have one writer.
        unsafe {
            let h = std::ptr::addr_of_mut!((*layout.as_ptr()).header);
            (*h).abi_version = ABI_VERSION;
            (*h).layout_size = SIZE as u32;
            (*h).record_sizes = record_sizes();
            (*h).max_workers = MAX_WORKERS as u32;
            (*h).max_ports = MAX_PORTS as u32;
            (*h).magic = MAGIC;
        }
        let h = seg.header();
        h.owner_pid.store(std::process::id(), Ordering::Relaxed);
        h.instance.store(crate::realtime_ns() ^ ((std::process::id() as u64) << 32), Ordering::Relaxed);
        h.workers.store(workers, Ordering::Relaxed);
        h.tsc_hz.store(tsc_hz, Ordering::Relaxed);
        h.tsc_at_start.store(tsc_now, Ordering::Relaxed);
        h.realtime_ns_at_start.store(crate::realtime_ns(), Ordering::Relaxed);
        h.dataplane_heartbeat_ns.store(crate::monotonic_ns(), Ordering::Relaxed);
        // Release: everything above is visible to an attacher that sees Ready.
        h.state.store(SegmentState::Ready as u32, Ordering::Release);
        Ok(seg)
    }

    /// Control: attaches to a running dataplane's segment, refusing one that
    /// is foreign (magic, ABI or layout differ), corrupt or not ready.
    pub fn attach(path: &Path) -> Result<Segment, ShmError> {
        let seg = Segment::attach_any(path)?;
        // Acquire: pairs with the creator's Release store of Ready.
        if seg.header().state.load(Ordering::Acquire) != SegmentState::Ready as u32 {
            return Err(ShmError::NotReady(path.to_path_buf()));
        }
        Ok(seg)
    }

    fn attach_any(path: &Path) -> Result<Segment, ShmError> {
        let fd = open(path, libc::O_RDWR, 0).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ShmError::Missing(path.to_path_buf())
            } else {
                ShmError::Io { path: path.to_path_buf(), what: "open", source: e }
            }
        })?;
        // The identity fields first, read from the file: a segment of another ABI version
        // usually has another size too, and must be named as such.
        let checked = identity(fd).and_then(|(magic, abi, inode, size)| {
            if magic != MAGIC {
                return Ok(Err("bad magic (not a Rampart segment)".to_string()));
            }
            if abi != ABI_VERSION {
                return Ok(Err(format!(
                    "it speaks ABI version {abi}, this build speaks {ABI_VERSION}; upgrade both processes together (the dataplane keeps forwarding under its current policy meanwhile)"
                )));
            }
            if size as usize != SIZE {
                return Ok(Err(format!("its size is {size} bytes, this build's layout is {SIZE}")));
            }
            map(fd).map(|m| Ok((m, inode)))
        });
        // SAFETY: closing our own fd; a mapping made from it stays valid.
        unsafe { libc::close(fd) };
        let (layout, inode) = match checked.map_err(io(path, "map"))? {
            Ok(v) => v,
            Err(why) => return Err(ShmError::Foreign { path: path.to_path_buf(), why }),
        };
        let seg = Segment { layout, path: path.to_path_buf(), owner: false, inode };
        let h = seg.header();
        let why = if h.layout_size as usize != SIZE || h.record_sizes != record_sizes() {
            Some("layout sizes differ from this build's".to_string())
        } else if h.max_workers as usize != MAX_WORKERS || h.max_ports as usize != MAX_PORTS {
            Some("limits differ from this build's".to_string())
        } else {
            None
        };
        match why {
            Some(why) => Err(ShmError::Foreign { path: path.to_path_buf(), why }),
            None => Ok(seg),
        }
    }

    pub fn layout(&self) -> &Layout {
        // SAFETY: the mapping is SIZE bytes, page-aligned, lives as long as
        // self, and Layout is ShmSafe (valid for any bytes, shared access only).
        unsafe { self.layout.as_ref() }
    }

    pub fn header(&self) -> &Header {
        &self.layout().header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `path` now names a different file than the one mapped (the dataplane restarted).
    pub fn replaced(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => std::os::unix::fs::MetadataExt::ino(&m) != self.inode,
            Err(_) => true,
        }
    }

    /// Nanoseconds since the dataplane's last heartbeat.
    pub fn dataplane_heartbeat_age_ns(&self) -> u64 {
        crate::monotonic_ns().saturating_sub(self.header().dataplane_heartbeat_ns.load(Ordering::Relaxed))
    }

    /// Whether the owning dataplane process still exists.
    pub fn owner_alive(&self) -> bool {
        pid_alive(self.header().owner_pid.load(Ordering::Relaxed))
    }
}

impl std::ops::Deref for Segment {
    type Target = Layout;
    fn deref(&self) -> &Layout {
        self.layout()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner {
            self.header().state.store(SegmentState::Stopping as u32, Ordering::Release);
            if !self.replaced() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        // SAFETY: unmapping exactly the region mapped in create/attach; no
        // references into it outlive self (they borrow from it).
        unsafe { libc::munmap(self.layout.as_ptr() as *mut libc::c_void, SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Fetched, PolicyOutcome};
    use crate::{EventRecord, PolicyImage};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-shm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn create_attach_and_mode() {
        let p = tmp("mode");
        let seg = Segment::create(&p, 0o600, 2, 1_000, 0).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
        let ctl = Segment::attach(&p).unwrap();
        assert_eq!(ctl.header().workers.load(Ordering::Relaxed), 2);
        assert!(!ctl.replaced());
        // A second live creator is refused.
        let err = Segment::create(&p, 0o600, 1, 1, 0);
        assert!(err.is_ok(), "same pid may recreate (restart in tests)");
        assert!(ctl.replaced(), "recreating replaces the file");
        drop(seg);
    }

    #[test]
    fn foreign_or_corrupt_segments_are_refused() {
        let p = tmp("foreign");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        assert!(matches!(Segment::attach(&p), Err(ShmError::Foreign { .. })));
        std::fs::write(&p, vec![0u8; SIZE]).unwrap();
        let e = Segment::attach(&p).err().unwrap();
        assert!(e.to_string().contains("bad magic"), "{e}");
        let seg = Segment::create(&p, 0o600, 1, 1, 0).unwrap();
        // Corrupt the ABI version through a raw write to the file.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_at(&99u32.to_ne_bytes(), 8).unwrap();
        }
        let e = Segment::attach(&p).err().unwrap();
        assert!(e.to_string().contains("ABI version 99") && e.to_string().contains(&format!("this build speaks {ABI_VERSION}")), "{e}");
        drop(seg);
        assert!(matches!(Segment::attach(&p), Err(ShmError::Missing(_))), "owner removes the file");
        // Another ABI version with another layout size is named by its version, not its size.
        let mut other = vec![0u8; 8192];
        other[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        other[ABI_VERSION_OFFSET..ABI_VERSION_OFFSET + 4].copy_from_slice(&(ABI_VERSION - 1).to_ne_bytes());
        std::fs::write(&p, other).unwrap();
        let e = Segment::attach(&p).err().unwrap();
        assert!(matches!(e, ShmError::Foreign { .. }) && e.to_string().contains(&format!("ABI version {}", ABI_VERSION - 1)), "{e}");
        std::fs::write(&p, b"RAMP").unwrap();
        assert!(Segment::attach(&p).err().unwrap().to_string().contains("bad magic"), "a file shorter than the header");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn generation_handshake() {
        let p = tmp("gen");
        let dp = Segment::create(&p, 0o600, 2, 1, 0).unwrap();
        let ctl = Segment::attach(&p).unwrap();
        let img = crate::image::tests_support::sample().encode();
        let mut buf = Vec::new();
        assert_eq!(dp.fetch_policy(0, &mut buf), Fetched::Nothing);
        let g = ctl.publish_policy(&img).unwrap();
        assert_eq!(g, 1);
        assert_eq!(ctl.policy_outcome(g), PolicyOutcome::Pending);
        assert_eq!(dp.fetch_policy(0, &mut buf), Fetched::Image(1));
        assert_eq!(PolicyImage::decode(&buf).unwrap(), crate::image::tests_support::sample());
        dp.ack_policy(0, 1);
        assert_eq!(dp.min_worker_gen(2), 0, "worker 1 has not acknowledged yet");
        dp.ack_policy(1, 1);
        assert_eq!(dp.min_worker_gen(2), 1);
        dp.set_applied(1);
        assert_eq!(ctl.policy_outcome(1), PolicyOutcome::Applied);
        assert_eq!(dp.fetch_policy(1, &mut buf), Fetched::Nothing);
        // A restarted control process reads back the applied image.
        let mut back = Vec::new();
        assert_eq!(ctl.applied_image(&mut back), Some(1));
        assert_eq!(back, img);
        // Rejection keeps the reason and is not fetched again.
        let g2 = ctl.publish_policy(b"garbage").unwrap();
        assert_eq!(dp.fetch_policy(1, &mut buf), Fetched::Image(2));
        let why = PolicyImage::decode(&buf).unwrap_err();
        dp.reject_policy(g2, &why);
        assert_eq!(ctl.policy_outcome(g2), PolicyOutcome::Rejected(why));
        assert_eq!(dp.fetch_policy(1, &mut buf), Fetched::Nothing);
        assert_eq!(ctl.applied_gen(), 1, "old policy stays in force");
    }

    #[test]
    fn torn_image_is_detected() {
        let p = tmp("torn");
        let dp = Segment::create(&p, 0o600, 1, 1, 0).unwrap();
        let g = dp.publish_policy(&[7u8; 1000]).unwrap();
        // Flip a byte after sealing: the CRC no longer matches.
        // SAFETY: test-only write into the slot's plain bytes.
        unsafe { (*dp.slots[(g % 2) as usize].data.get())[10] ^= 0xff };
        let mut buf = Vec::new();
        assert!(matches!(dp.fetch_policy(0, &mut buf), Fetched::Corrupt(1, _)));
        // A slot whose seal is cleared (control mid-write) is busy, not applied.
        let g = dp.publish_policy(&[1u8; 10]).unwrap();
        dp.slots[(g % 2) as usize].gen.store(0, Ordering::Relaxed);
        assert_eq!(dp.fetch_policy(0, &mut buf), Fetched::Busy);
        // A sealed length beyond the slot is corrupt.
        dp.slots[(g % 2) as usize].gen.store(g, Ordering::Relaxed);
        dp.slots[(g % 2) as usize].len.store(u64::MAX, Ordering::Relaxed);
        assert!(matches!(dp.fetch_policy(0, &mut buf), Fetched::Corrupt(..)));
    }

    #[test]
    fn concurrent_publish_never_yields_a_torn_image() {
        let p = tmp("race");
        let dp = std::sync::Arc::new(Segment::create(&p, 0o600, 1, 1, 0).unwrap());
        let ctl = Segment::attach(&p).unwrap();
        let reader = {
            let dp = dp.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let (mut images, mut running) = (0, 0);
                while running < 2000 {
                    match dp.fetch_policy(running, &mut buf) {
                        Fetched::Image(g) => {
                            let v = buf[0];
                            assert!(buf.iter().all(|&b| b == v), "torn image accepted at gen {g}");
                            assert_eq!(buf.len(), 1000 + v as usize);
                            running = g;
                            images += 1;
                        }
                        Fetched::Corrupt(g, why) => panic!("gen {g} corrupt: {why}"),
                        _ => std::hint::spin_loop(),
                    }
                }
                images
            })
        };
        for i in 0..2000u32 {
            let v = (i % 251) as u8;
            ctl.publish_policy(&vec![v; 1000 + v as usize]).unwrap();
        }
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn event_rings_live_in_the_segment() {
        let p = tmp("ring");
        let dp = Segment::create(&p, 0o600, 1, 1, 0).unwrap();
        let ctl = Segment::attach(&p).unwrap();
        dp.events[0].push(EventRecord { value: 42, ..Default::default() });
        assert_eq!(ctl.events[0].pop().unwrap().0.value, 42);
    }
}
