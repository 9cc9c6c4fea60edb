//! The one module that calls DPDK. Every call into `rampart_ffi` lives here,
//! wrapped in a typed API that turns NULL/negative returns and `rte_errno`
//! into [`DpdkError`]s that say what failed and how to fix it. The hot-path
//! wrappers (`rx_burst`, `tx_burst`, [`Mbuf`] accessors) are `#[inline]` and
//! allocation-free.

use rampart_ffi as ffi;
use std::ffi::{CStr, CString};
use std::os::raw::c_void;

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

/// Current TSC. Inlined here rather than called through the C shim: it runs
/// twice per burst on every worker.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter (no memory is touched); every
    // x86-64 CPU has it, and DPDK's rte_rdtsc() executes the same instruction.
    unsafe { core::arch::x86_64::_rdtsc() }
}

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
        // SAFETY: as above.
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
// SAFETY: as above.
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

    /// A new single-segment mbuf holding a copy of `frame`; None when the pool is empty.
    pub fn packet(&self, frame: &[u8]) -> Option<MbufPtr> {
        // SAFETY: the pool is valid; NULL is checked.
        let m = unsafe { ffi::rampart_pktmbuf_alloc(self.0) };
        if m.is_null() {
            return None;
        }
        // SAFETY: m is a fresh mbuf we own; append returns NULL if there is no room.
        let dst = unsafe { ffi::rampart_pktmbuf_append(m, frame.len() as u16) };
        if dst.is_null() {
            free_bulk(&mut [m]);
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
    let conf = ffi::rte_eth_conf::default();
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

/// An mbuf owned by the caller; freed or handed to `tx_burst`.
pub type MbufPtr = *mut ffi::rte_mbuf;

/// Receives up to `out.len()` packets.
#[inline(always)]
pub fn rx_burst(port: PortId, queue: u16, out: &mut [MbufPtr]) -> usize {
    // SAFETY: `out` has room for out.len() pointers; the port/queue is started
    // and polled by this lcore only.
    unsafe { ffi::rampart_rx_burst(port, queue, out.as_mut_ptr(), out.len() as u16) as usize }
}

/// Transmits packets; returns how many were taken (the rest stay owned by the caller).
#[inline(always)]
pub fn tx_burst(port: PortId, queue: u16, pkts: &mut [MbufPtr]) -> usize {
    // SAFETY: pkts holds valid mbufs we own; the tx queue is used by this lcore only.
    unsafe { ffi::rampart_tx_burst(port, queue, pkts.as_mut_ptr(), pkts.len() as u16) as usize }
}

/// Frees packets.
#[inline(always)]
pub fn free_bulk(pkts: &mut [MbufPtr]) {
    if !pkts.is_empty() {
        // SAFETY: each pointer is a valid mbuf we own; none is used afterwards.
        unsafe { ffi::rampart_pktmbuf_free_bulk(pkts.as_mut_ptr(), pkts.len() as u32) }
    }
}

/// Adds `n` references to an mbuf about to be sent to `n` more ports.
///
/// # Safety
/// `m` must be a valid mbuf the caller holds a reference to.
#[inline]
pub unsafe fn add_refs(m: MbufPtr, n: u16) {
    ffi::rampart_mbuf_refcnt_update(m, n as i16)
}

/// The first segment's bytes of an mbuf.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller for the returned lifetime.
#[inline(always)]
pub unsafe fn mbuf_data<'a>(m: MbufPtr) -> &'a [u8] {
    let mb = &*m;
    std::slice::from_raw_parts((mb.buf_addr as *const u8).add(mb.data_off as usize), mb.data_len as usize)
}

/// Total packet length (all segments) of an mbuf.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller.
#[inline(always)]
pub unsafe fn mbuf_pkt_len(m: MbufPtr) -> u32 {
    (*m).pkt_len
}

/// Prefetches an mbuf's packet data.
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline(always)]
pub unsafe fn prefetch_data(m: MbufPtr) {
    let mb = &*m;
    let data = (mb.buf_addr as *const u8).add(mb.data_off as usize);
    // A prefetch is a hint: it never faults, whatever the address.
    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(data as *const i8);
}
