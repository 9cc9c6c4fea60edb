//! The one module that calls DPDK. Every call into `rampart_ffi` lives here,
//! wrapped in a typed API that turns NULL/negative returns and `rte_errno`
//! into [`DpdkError`]s that say what failed and how to fix it. The hot-path
//! wrappers (`rx_burst`, `tx_burst`, [`Mbuf`] accessors) are `#[inline]` and
//! allocation-free.

use arrayvec::ArrayVec;
use rampart_ffi as ffi;
use std::ffi::{CStr, CString};
use std::os::raw::c_void;
use std::ptr::NonNull;

// The pipeline maps DPDK port ids to local indexes in a table of this many entries.
const _: () = assert!(rampart_pipeline::MAX_PORT_IDS == ffi::RTE_MAX_ETHPORTS as usize);

#[derive(Debug, thiserror::Error)]
#[error("{op}: {message} (code {code}){hint}")]
pub struct DpdkError {
    pub op: String,
    pub code: i32,
    pub message: String,
    pub hint: &'static str,
}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::rte_strerror(code.abs())) }.to_string_lossy().into_owned()
}

fn check(op: impl Into<String>, ret: i32) -> Result<i32, DpdkError> {
    if ret >= 0 {
        return Ok(ret);
    }
    Err(DpdkError { op: op.into(), code: ret, message: strerror(ret), hint: "" })
}

fn rte_errno_error(op: impl Into<String>, hint: &'static str) -> DpdkError {
    // SAFETY: reads the calling thread's rte_errno.
    let code = unsafe { ffi::rampart_errno() };
    DpdkError { op: op.into(), code: -code, message: strerror(code), hint }
}

/// Initialises the Environment Abstraction Layer with `args` (argv[0] included).
pub fn eal_init(args: &[String]) -> Result<(), DpdkError> {
    let cstrings: Vec<CString> = args.iter().map(|a| CString::new(a.as_str()).expect("EAL argument without NUL")).collect();
    let mut argv: Vec<*mut libc::c_char> = cstrings.iter().map(|c| c.as_ptr() as *mut libc::c_char).collect();
    // SAFETY: argv points at NUL-terminated strings that outlive the call;
    // EAL may permute argv but does not free it. Called once per process.
    let ret = unsafe { ffi::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    if ret < 0 {
        return Err(rte_errno_error(
            "EAL initialisation",
            "; check hugepages (`make hugepages`, or `dataplane.hugepages = false` for tests), that no other DPDK process uses the same `dataplane.file_prefix`, and the cores in `dataplane.main_core`/`worker_cores` exist",
        ));
    }
    Ok(())
}

/// Releases EAL resources at exit.
pub fn eal_cleanup() {
    // SAFETY: called once, after all lcores have returned and ports are closed.
    unsafe { ffi::rte_eal_cleanup() };
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain query, valid after EAL init.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// Current TSC (the pipeline's: it is no DPDK call).
pub use rampart_pipeline::rdtsc;

/// CPU pause hint for spin loops.
#[inline(always)]
pub fn pause() {
    std::hint::spin_loop()
}

/// The lcore ids of all worker lcores (every enabled lcore but the main one).
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    // SAFETY: lcore iteration queries, valid after EAL init.
    let mut id = unsafe { ffi::rte_get_next_lcore(u32::MAX, 1, 0) };
    while id < ffi::RTE_MAX_LCORE {
        out.push(id);
        // SAFETY: a read-only query of EAL's lcore table, valid after EAL init, for any id.
        id = unsafe { ffi::rte_get_next_lcore(id, 1, 0) };
    }
    out
}

/// Runs `f` on lcore `lcore`. `f` must outlive the lcore's run (use a leaked
/// or joined-before-drop closure); returns once the launch is accepted.
pub fn launch<F: FnOnce() + Send + 'static>(lcore: u32, f: F) -> Result<(), DpdkError> {
    extern "C" fn trampoline<F: FnOnce()>(arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the Box<F> leaked below, consumed exactly once here.
        let f = unsafe { Box::from_raw(arg as *mut F) };
        f();
        0
    }
    let arg = Box::into_raw(Box::new(f)) as *mut c_void;
    // SAFETY: trampoline::<F> matches lcore_function_t; arg is a valid Box<F>.
    let ret = unsafe { ffi::rte_eal_remote_launch(Some(trampoline::<F>), arg, lcore) };
    if ret < 0 {
        // SAFETY: the launch was refused, so the closure was not consumed.
        drop(unsafe { Box::from_raw(arg as *mut F) });
    }
    check(format!("launching lcore {lcore}"), ret).map(|_| ())
}

/// Waits for every worker lcore to return.
pub fn wait_all_lcores() {
    // SAFETY: called on the main lcore.
    unsafe { ffi::rte_eal_mp_wait_lcore() };
}

/// A packet-buffer pool.
pub struct Mempool(*mut ffi::rte_mempool);

// SAFETY: DPDK mempools are multi-thread safe (per-lcore caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: every operation on a shared &Mempool (get, put, counts) is thread-safe in
// DPDK: per-lcore caches are per calling thread, the backing ring is lock-free MPMC.
unsafe impl Sync for Mempool {}

impl Mempool {
    pub fn create(name: &str, mbufs: u32) -> Result<Mempool, DpdkError> {
        let c = CString::new(name).expect("pool name");
        // SAFETY: valid name; sizes are plain values; NULL is checked.
        let p = unsafe {
            ffi::rte_pktmbuf_pool_create(c.as_ptr(), mbufs, 256, 0, ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16, -1)
        };
        if p.is_null() {
            return Err(rte_errno_error(
                format!("creating the packet pool ({mbufs} mbufs)"),
                "; raise `dataplane.memory_mb` or lower `dataplane.mbufs`",
            ));
        }
        Ok(Mempool(p))
    }

    /// A new single-segment mbuf holding a copy of `frame`; None when the pool is empty
    /// or the frame does not fit.
    pub fn packet(&self, frame: &[u8]) -> Option<Mbuf> {
        // SAFETY: the pool is valid; NULL is checked.
        let m = Mbuf(NonNull::new(unsafe { ffi::rampart_pktmbuf_alloc(self.0) })?);
        // SAFETY: m is a fresh mbuf we own; append returns NULL if there is no room (m is
        // then freed by its drop).
        let dst = unsafe { ffi::rampart_pktmbuf_append(m.0.as_ptr(), u16::try_from(frame.len()).ok()?) };
        if dst.is_null() {
            return None;
        }
        // SAFETY: `dst` points at frame.len() writable bytes inside m's buffer.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), dst as *mut u8, frame.len()) };
        Some(m)
    }

    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { ffi::rte_mempool_in_use_count(self.0) }
    }
}

/// A DPDK ethdev port id.
pub type PortId = u16;

/// Hot-plugs a device from its devargs (`net_vhost0,iface=...`, `net_tap0`,
/// a PCI address) and returns its port id.
pub fn probe(devargs: &str) -> Result<PortId, DpdkError> {
    let c = CString::new(devargs).map_err(|_| DpdkError { op: format!("probing {devargs:?}"), code: -22, message: "NUL in device string".into(), hint: "" })?;
    // SAFETY: valid NUL-terminated devargs; called from the main lcore only.
    let ret = unsafe { ffi::rte_dev_probe(c.as_ptr()) };
    check(format!("attaching device {devargs:?}"), ret).map_err(|mut e| {
        e.hint = "; check the device string, that its driver is installed, and the socket path";
        e
    })?;
    port_by_name(device_name(devargs)).ok_or_else(|| DpdkError {
        op: format!("attaching device {devargs:?}"),
        code: -19,
        message: "probed, but no ethdev port appeared".into(),
        hint: "; is it a network device?",
    })
}

/// The device name of devargs: everything before the first comma.
pub fn device_name(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or(devargs)
}

pub fn port_by_name(name: &str) -> Option<PortId> {
    let c = CString::new(name).ok()?;
    let mut id: u16 = 0;
    // SAFETY: valid name and out-pointer.
    (unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) } == 0).then_some(id)
}

/// Configures `rxq` receive and `txq` transmit queues and starts the port.
pub fn start_port(port: PortId, rxq: u16, txq: u16, pool: &Mempool) -> Result<(), DpdkError> {
    let mut conf = ffi::rte_eth_conf::default();
    // vhost-user ports get rx interrupts (the guest's kicks), so an idle worker can wait
    // for traffic instead of waking on a timer ([`RxWaiter`]); they cost nothing while
    // the worker polls, since the guest kicks only when a worker armed them.
    if driver_name(port).as_deref() == Some("net_vhost") {
        conf.intr_conf.set_rxq(1);
    }
    // SAFETY: conf is a valid default configuration; the port id exists.
    check(format!("configuring port {port}"), unsafe { ffi::rte_eth_dev_configure(port, rxq, txq, &conf) })?;
    // SAFETY: port is valid.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) }.max(0) as u32;
    for q in 0..rxq {
        // SAFETY: default rx conf (NULL), pool is valid for the process lifetime.
        check(format!("rx queue {q} of port {port}"), unsafe {
            ffi::rte_eth_rx_queue_setup(port, q, 1024, socket, std::ptr::null(), pool.0)
        })?;
    }
    for q in 0..txq {
        // SAFETY: default tx conf (NULL).
        check(format!("tx queue {q} of port {port}"), unsafe {
            ffi::rte_eth_tx_queue_setup(port, q, 1024, socket, std::ptr::null())
        })?;
    }
    // SAFETY: port configured above.
    check(format!("starting port {port}"), unsafe { ffi::rte_eth_dev_start(port) })?;
    // Promiscuous: we switch frames for many guest MACs. Not all PMDs support it.
    // SAFETY: port started.
    let _ = unsafe { ffi::rte_eth_promiscuous_enable(port) };
    Ok(())
}

/// The name of a port's driver ("net_vhost", "net_null", ...).
fn driver_name(port: PortId) -> Option<String> {
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: info is a valid out-parameter; an invalid port id makes the call fail.
    if unsafe { ffi::rte_eth_dev_info_get(port, &mut info) } != 0 || info.driver_name.is_null() {
        return None;
    }
    // SAFETY: on success driver_name points at the driver's static NUL-terminated name.
    Some(unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned())
}

/// Stops, closes and hot-unplugs a port. No worker may use it any more.
pub fn remove_port(port: PortId, devargs: &str) -> Result<(), DpdkError> {
    // SAFETY: port id valid; no lcore polls it (caller's contract).
    unsafe {
        ffi::rte_eth_dev_stop(port);
        ffi::rte_eth_dev_close(port);
    }
    let name = CString::new(device_name(devargs)).expect("device name");
    let bus = if device_name(devargs).starts_with("net_") { c"vdev" } else { c"pci" };
    // SAFETY: valid bus and device names.
    check(format!("detaching {}", device_name(devargs)), unsafe { ffi::rte_eal_hotplug_remove(bus.as_ptr(), name.as_ptr()) })?;
    Ok(())
}

/// Link status (up) of a port.
pub fn link_up(port: PortId) -> bool {
    let mut link = ffi::rte_eth_link::default();
    // SAFETY: valid out-pointer.
    unsafe { ffi::rte_eth_link_get_nowait(port, &mut link) };
    link.link_status() != 0
}

/// One reference to a packet buffer (`rte_mbuf`), owned by this thread: not `Copy`;
/// transmitting or freeing it consumes it, and dropping it frees it. Bursts of them are
/// received into, sent from and freed out of an [`MbufBurst`] in one DPDK call each.
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// DPDK frees and transmits mbufs from any thread (the pool's caches are per calling thread).
// SAFETY: an mbuf reference may move to another lcore; the handle is unique, so no two
// threads use it at once.
unsafe impl Send for Mbuf {}

/// Up to `N` owned mbufs: what `rx_burst` fills, `tx_burst` sends and [`free_bulk`] frees.
pub type MbufBurst<const N: usize> = ArrayVec<Mbuf, N>;

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own this reference to a valid mbuf, and it is never used again.
        unsafe { ffi::rampart_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl Mbuf {
    #[inline(always)]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: the handle owns a reference to a valid mbuf for its whole life.
        unsafe { self.0.as_ref() }
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let mb = self.raw();
        // SAFETY: buf_addr + data_off starts data_len initialised bytes inside the
        // mbuf's buffer, which stays valid while we hold the reference.
        unsafe { std::slice::from_raw_parts((mb.buf_addr as *const u8).add(mb.data_off as usize), mb.data_len as usize) }
    }

    /// The packet's length over all segments.
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// How many segments the packet is chained over.
    #[inline(always)]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Whether the L4 checksum was left to the device: the sender (a guest's virtio
    /// `NEEDS_CSUM`) computed only its pseudo-header part. DPDK's vhost library marks such
    /// a packet with TX checksum-offload flags (or, in its compliant mode, as "L4 checksum
    /// not computed").
    #[inline(always)]
    pub fn l4_checksum_partial(&self) -> bool {
        let f = self.raw().ol_flags;
        f & ffi::RTE_MBUF_F_TX_L4_MASK != 0 || f & ffi::RTE_MBUF_F_RX_L4_CKSUM_MASK as u64 == ffi::RTE_MBUF_F_RX_L4_CKSUM_NONE as u64
    }

    /// The packet's bytes followed by the rest of its buffer, and the packet's length:
    /// what the pipeline may read and rewrite in place. None unless the buffer is ours
    /// alone (a received, direct mbuf with one reference), so a rewrite never shows
    /// through another reference.
    #[inline(always)]
    pub fn room_mut(&mut self) -> Option<(&mut [u8], usize)> {
        let mb = self.raw();
        if mb.refcnt != 1 || mb.ol_flags & (ffi::RTE_MBUF_F_INDIRECT | ffi::RTE_MBUF_F_EXTERNAL) != 0 {
            return None;
        }
        let (off, room, len) = (mb.data_off as usize, mb.buf_len.saturating_sub(mb.data_off) as usize, mb.data_len as usize);
        // The buffer is buf_len bytes from buf_addr, and data_off <= buf_len.
        // SAFETY: those bytes are inside the buffer, and no other reference to it exists
        // (checked above), so for the borrow of `self` they are ours to read and write.
        let buf = unsafe { std::slice::from_raw_parts_mut((mb.buf_addr as *mut u8).add(off), room) };
        Some((buf, len))
    }

    /// Makes the packet `len` bytes of one segment whose checksums are all complete: an
    /// answer the pipeline wrote over it in place. `len` must fit the buffer's room.
    #[inline]
    pub fn set_answer(&mut self, len: u16) {
        // SAFETY: we hold the only reference (the pipeline wrote through `room_mut`), and
        // data_len/pkt_len within the buffer's room describe bytes just written.
        let mb = unsafe { self.0.as_mut() };
        debug_assert!(mb.data_off as usize + len as usize <= mb.buf_len as usize);
        mb.data_len = len;
        mb.pkt_len = len as u32;
        mb.ol_flags &= !ffi::RTE_MBUF_F_TX_OFFLOAD_MASK;
    }

    /// Copies a chained packet into its first segment; false when it does not fit (the
    /// packet stays chained).
    #[cold]
    pub fn linearize(&mut self) -> bool {
        // SAFETY: we own the mbuf; linearize only moves data within its own segments.
        unsafe { ffi::rampart_pktmbuf_linearize(self.0.as_ptr()) == 0 }
    }

    /// Prefetches the packet's first bytes.
    #[inline(always)]
    pub fn prefetch_data(&self) {
        let mb = self.raw();
        let data = (mb.buf_addr as *const u8).wrapping_add(mb.data_off as usize);
        // SAFETY: a prefetch is only a hint: it never faults, whatever the address.
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(data as *const i8) };
    }

    /// Hands out `copies` references to this packet (for a flood to several ports): the
    /// first is this one, the others add a reference each.
    #[inline]
    pub fn share(self, copies: usize, mut each: impl FnMut(Mbuf)) {
        if copies == 0 {
            return;
        }
        if copies > 1 {
            // SAFETY: we hold a reference, so the mbuf is live; each new handle below owns
            // one of the references added here.
            unsafe { ffi::rampart_mbuf_refcnt_update(self.0.as_ptr(), copies as i16 - 1) };
        }
        for _ in 1..copies {
            each(Mbuf(self.0));
        }
        each(self);
    }
}

/// Receives up to `N - out.len()` packets into `out`; returns how many arrived.
#[inline(always)]
pub fn rx_burst<const N: usize>(port: PortId, queue: u16, out: &mut MbufBurst<N>) -> usize {
    let have = out.len();
    let room = (N - have) as u16;
    // Mbuf is a transparent NonNull<rte_mbuf>: the spare capacity is pointer slots.
    // SAFETY: DPDK fills at most `room` of those slots; the port/queue is started and
    // polled by this lcore only.
    let n = unsafe { ffi::rampart_rx_burst(port, queue, out.as_mut_ptr().add(have) as *mut *mut ffi::rte_mbuf, room) as usize };
    // SAFETY: rx_burst initialised the first n slots with valid mbufs, each now ours.
    unsafe { out.set_len(have + n) };
    n
}

/// Transmits the packets of `pkts`; the ones taken leave it, the rest (a full ring) stay,
/// in order. Returns how many were taken.
#[inline(always)]
pub fn tx_burst<const N: usize>(port: PortId, queue: u16, pkts: &mut MbufBurst<N>) -> usize {
    let len = pkts.len();
    // SAFETY: the array holds `len` valid mbufs we own (transparent pointers); the tx
    // queue is used by this lcore only.
    let sent = unsafe { ffi::rampart_tx_burst(port, queue, pkts.as_mut_ptr() as *mut *mut ffi::rte_mbuf, len as u16) as usize };
    // SAFETY: the first `sent` mbufs now belong to the device: forget them by moving the
    // unsent ones to the front and shortening the array, without dropping any.
    unsafe {
        let p = pkts.as_mut_ptr();
        std::ptr::copy(p.add(sent), p, len - sent);
        pkts.set_len(len - sent);
    }
    sent
}

/// Frees every packet of `pkts` in one call.
#[inline(always)]
pub fn free_bulk<const N: usize>(pkts: &mut MbufBurst<N>) {
    let len = pkts.len();
    if len > 0 {
        // SAFETY: the array holds `len` valid mbufs we own; after the call none is used
        // again (the length is set to 0 without dropping them).
        unsafe {
            ffi::rampart_pktmbuf_free_bulk(pkts.as_mut_ptr() as *mut *mut ffi::rte_mbuf, len as u32);
            pkts.set_len(0);
        }
    }
}

/// An idle worker's wait for traffic: one epoll set of the rx interrupt fds of its
/// (port, queue) pairs, plus the [`Doorbell`] the main lcore rings when it publishes a
/// runtime. For vhost-user the interrupt is the guest's kick, which a guest sends only
/// while [`RxWaiter::arm`] has asked for it. Edge-triggered: each new kick (or ring)
/// wakes the wait once, and a kick counter nobody drains never makes it spin.
pub struct RxWaiter {
    epoll: std::os::fd::OwnedFd,
    queues: Vec<(PortId, u16)>,
    /// Whether every queue has an interrupt: only then may the worker wait on them alone.
    complete: bool,
}

impl RxWaiter {
    /// A waiter for `queues`; `complete()` is false if one of them has no rx interrupt
    /// (a device without them, or a vhost port started without them).
    pub fn new(queues: impl IntoIterator<Item = (PortId, u16)>, doorbell: &Doorbell) -> std::io::Result<RxWaiter> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: a plain syscall; on success the fd is new and owned by the OwnedFd.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by epoll_create1 and is owned by nobody else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut w = RxWaiter { epoll, queues: queues.into_iter().collect(), complete: true };
        w.add(doorbell.0.as_raw_fd(), u64::MAX)?;
        for i in 0..w.queues.len() {
            let (port, queue) = w.queues[i];
            // SAFETY: port and queue exist (the caller's runtime lists them, started).
            let qfd = unsafe { ffi::rte_eth_dev_rx_intr_ctl_q_get_fd(port, queue) };
            if qfd < 0 || w.add(qfd, i as u64).is_err() {
                w.complete = false;
            }
        }
        Ok(w)
    }

    fn add(&mut self, fd: i32, data: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: data };
        // SAFETY: both fds are open (ours; DPDK's stays open while the port is started,
        // and epoll forgets it by itself when DPDK closes it); ev is a valid event.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether every queue can wake the worker (a worker without queues waits for the
    /// doorbell alone).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Asks for interrupts on every queue (the guest starts kicking). Poll the queues
    /// once more before [`Self::wait`]: what arrived before this did not kick.
    pub fn arm(&self) {
        for &(port, queue) in &self.queues {
            // SAFETY: port and queue exist; a vhost port without a guest ignores it.
            unsafe { ffi::rte_eth_dev_rx_intr_enable(port, queue) };
        }
    }

    /// Stops the interrupts again (polling needs no kicks).
    pub fn disarm(&self) {
        for &(port, queue) in &self.queues {
            // SAFETY: as in arm.
            unsafe { ffi::rte_eth_dev_rx_intr_disable(port, queue) };
        }
    }

    /// Sleeps until a queue is kicked, the doorbell rings or `timeout_ms` pass.
    pub fn wait(&self, timeout_ms: i32) {
        use std::os::fd::AsRawFd;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: events is a valid buffer of 8 entries; the epoll fd is ours. EINTR is
        // harmless: the caller polls again either way.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout_ms) };
    }
}

/// An eventfd the main lcore writes after publishing a runtime, so that workers waiting
/// in [`RxWaiter::wait`] take it up at once (its counter is never read: the waiters are
/// edge-triggered).
pub struct Doorbell(std::os::fd::OwnedFd);

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain syscall; on success the fd is new and owned by the OwnedFd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        Ok(Doorbell(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes every waiting worker.
    pub fn ring(&self) {
        use std::os::fd::AsRawFd;
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd; non-blocking, and a
        // full counter (after 2^64 - 2 rings) only means the waiters time out instead.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}
