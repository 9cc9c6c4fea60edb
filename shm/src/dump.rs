//! The flow dump: `rampartctl flows` reads the dataplane's flow table a page at a time
//! through one bounded region of the segment, never all at once.
//!
//! Protocol (one dump at a time; the control process serialises its dumps):
//! 1. Control takes a dump id from [`FlowDump::requested`] and asks for the page at
//!    cursor 0 with a [`CommandKind::DumpFlows`](crate::ring::CommandKind::DumpFlows)
//!    command whose `value` is the [`DumpRequest`].
//! 2. The main lcore fills the page with up to [`DUMP_PAGE_RECORDS`] flows of the table
//!    from that cursor on ([`FlowDump::answer`]), then publishes the record count, the
//!    cursor of the next page (or [`DUMP_END`]) and the request it answers.
//! 3. Control copies the page out ([`FlowDump::read`]) once the page answers its own
//!    request, and asks for the next cursor, until [`DUMP_END`].
//!
//! `generation` is a seqlock: odd while the main lcore writes, bumped to the next even
//! value when the page is complete. A reader that sees it odd, or changed across its
//! copy, or a page answering another request (a late answer to a request that timed
//! out) does not take the page and looks again. The records are stored as 64-bit atomic
//! words, so even a torn copy is a defined read that is then discarded.
//!
//! A dump is not a snapshot: flows that start or end while it is read may or may not be
//! listed, as with any walk of a live table. Each flow listed was read consistently.

use crate::layout::ShmSafe;
use rampart_flow::{FlowRecord, FlowState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Flows in one page of the dump region (96 bytes each: 768 KiB).
pub const DUMP_PAGE_RECORDS: usize = 8192;
/// The `next` cursor of a dump's last page.
pub const DUMP_END: u64 = u64::MAX;
/// [`DumpedFlow::rule`] of a flow no rule of the running policy decided.
pub const NO_RULE: u32 = u32::MAX;

/// One flow as the dump lists it. Plain integers, no padding: it travels as
/// [`DUMP_FLOW_WORDS`] 64-bit words.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpedFlow {
    /// Address of the endpoint that opened the flow (IPv4 as IPv4-mapped IPv6).
    pub src_addr: [u8; 16],
    /// Address of the other endpoint.
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub zone: u16,
    pub proto: u8,
    /// `rampart_flow::FlowState as u8` (see [`DumpedFlow::state_name`]).
    pub state: u8,
    /// Port slot of the guest that owns the flow.
    pub owner: u16,
    pub _reserved: u16,
    /// Index of the running policy's rule that decided the flow, or [`NO_RULE`].
    pub rule: u32,
    /// Packets from the opener, from the other end.
    pub packets: [u64; 2],
    /// Bytes from the opener, from the other end.
    pub bytes: [u64; 2],
    /// Milliseconds since the flow started, since its last valid packet.
    pub age_ms: u64,
    pub idle_ms: u64,
}

/// 64-bit words of one [`DumpedFlow`].
pub const DUMP_FLOW_WORDS: usize = std::mem::size_of::<DumpedFlow>() / 8;
const _: () = assert!(std::mem::size_of::<DumpedFlow>() == 96);
// No padding: the fields' sizes add up to the whole, so every byte is initialised and
// the words hold exactly the fields.
const _: () = assert!(16 + 16 + 2 + 2 + 2 + 1 + 1 + 2 + 2 + 4 + 16 + 16 + 8 + 8 == std::mem::size_of::<DumpedFlow>());
const _: () = assert!(std::mem::align_of::<DumpedFlow>() <= 8);

impl DumpedFlow {
    /// The record of `r` at `now_ms`, with the rule index the running policy knows it by.
    pub fn from_record(r: &FlowRecord, rule: Option<u32>, now_ms: u64) -> DumpedFlow {
        let k = r.opener_key();
        DumpedFlow {
            src_addr: k.src_addr,
            dst_addr: k.dst_addr,
            src_port: k.src_port,
            dst_port: k.dst_port,
            zone: k.zone,
            proto: k.proto,
            state: r.state as u8,
            owner: r.owner as u16,
            _reserved: 0,
            rule: rule.unwrap_or(NO_RULE),
            packets: [r.packets_from_initiator() as u64, r.packets_from_responder() as u64],
            bytes: [r.bytes_from_initiator() as u64, r.bytes_from_responder() as u64],
            age_ms: now_ms.saturating_sub(r.start_ms),
            idle_ms: now_ms.saturating_sub(r.last_ms),
        }
    }

    /// The state's name as `/proc/net/nf_conntrack` and the event log spell it
    /// (`established`, `syn_sent`, …); `unknown` for a code this build does not know.
    pub fn state_name(&self) -> &'static str {
        FlowState::ALL.get(self.state as usize).map_or("unknown", |s| s.name())
    }

    /// The rule index, if a rule decided the flow.
    pub fn rule(&self) -> Option<u32> {
        (self.rule != NO_RULE).then_some(self.rule)
    }

    /// Source address, IPv4-mapped addresses shown as IPv4.
    pub fn src_ip(&self) -> IpAddr {
        ip(self.src_addr)
    }

    pub fn dst_ip(&self) -> IpAddr {
        ip(self.dst_addr)
    }

    fn to_words(self) -> [u64; DUMP_FLOW_WORDS] {
        // SAFETY: DumpedFlow is #[repr(C)], 96 bytes without padding (asserted above), made
        // of integers only: its bytes are all initialised and any [u64; 12] is its size.
        unsafe { std::mem::transmute::<DumpedFlow, [u64; DUMP_FLOW_WORDS]>(self) }
    }

    fn from_words(words: [u64; DUMP_FLOW_WORDS]) -> DumpedFlow {
        // SAFETY: as in `to_words`; every bit pattern is a valid DumpedFlow (integers only).
        unsafe { std::mem::transmute::<[u64; DUMP_FLOW_WORDS], DumpedFlow>(words) }
    }
}

fn ip(a: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Which page control wants: its dump's id and the cursor (a flow-table slot) to start
/// at, packed into a command's `value` (the table has fewer than 2³² slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpRequest {
    pub id: u32,
    pub cursor: u32,
}

impl DumpRequest {
    pub fn pack(self) -> u64 {
        (self.id as u64) << 32 | self.cursor as u64
    }

    pub fn unpack(value: u64) -> DumpRequest {
        DumpRequest { id: (value >> 32) as u32, cursor: value as u32 }
    }
}

/// Control's view of the page (the dataplane writes it).
#[repr(C, align(64))]
pub struct DumpHeader {
    /// Seqlock: odd while the main lcore fills the page.
    pub generation: AtomicU64,
    /// [`DumpRequest::pack`] of the request the page answers.
    pub answered: AtomicU64,
    /// Records in the page.
    pub count: AtomicU64,
    /// Cursor of the next page, or [`DUMP_END`].
    pub next: AtomicU64,
    /// Last dump id control took; only control writes it (it survives a control restart,
    /// so a restarted control never takes an old page for its own).
    pub requested: AtomicU64,
}

/// The dump region: a header and one page of records.
#[repr(C, align(64))]
pub struct FlowDump {
    pub header: DumpHeader,
    words: [[AtomicU64; DUMP_FLOW_WORDS]; DUMP_PAGE_RECORDS],
}

// SAFETY: #[repr(C)], atomics only; all-zero is the initial state (no page answered:
// request ids start at 1); cross-process access is through the seqlock protocol above.
unsafe impl ShmSafe for FlowDump {}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(DumpHeader, generation) == 0);
    assert!(offset_of!(DumpHeader, answered) == 8);
    assert!(offset_of!(DumpHeader, count) == 16);
    assert!(offset_of!(DumpHeader, next) == 24);
    assert!(offset_of!(DumpHeader, requested) == 32);
    assert!(std::mem::size_of::<DumpHeader>() == 64);
    assert!(offset_of!(FlowDump, words) == 64);
    assert!(std::mem::size_of::<FlowDump>() == 64 + DUMP_PAGE_RECORDS * 96);
};

/// A page being filled by [`FlowDump::answer`].
pub struct PageWriter<'a> {
    dump: &'a FlowDump,
    count: usize,
}

impl PageWriter<'_> {
    /// Appends `flow`; false (and nothing stored) when the page is full.
    pub fn push(&mut self, flow: DumpedFlow) -> bool {
        let Some(slot) = self.dump.words.get(self.count) else { return false };
        for (w, v) in slot.iter().zip(flow.to_words()) {
            // Relaxed: published by the Release store of the generation in `answer`.
            w.store(v, Ordering::Relaxed);
        }
        self.count += 1;
        true
    }

    /// Records the page still has room for.
    pub fn room(&self) -> usize {
        DUMP_PAGE_RECORDS - self.count
    }
}

/// What [`FlowDump::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The page does not (yet) answer this request, or changed while it was copied.
    NotYet,
    /// The page answers it: `out` holds its records; the next page starts at `next`
    /// (None: this was the last).
    Ready { next: Option<u32> },
}

impl FlowDump {
    /// Control: the id of a new dump (its first page is at cursor 0).
    pub fn next_id(&self) -> u32 {
        // Relaxed: only the control process writes it, one dump at a time.
        let id = self.header.requested.load(Ordering::Relaxed).wrapping_add(1);
        self.header.requested.store(id, Ordering::Relaxed);
        id as u32
    }

    /// Main lcore: answers `request` (a [`DumpRequest::pack`]): `fill` gets the cursor and
    /// the page to push flows into, and returns the cursor of the next page (None: the
    /// table has been walked to its end).
    pub fn answer(&self, request: u64, fill: impl FnOnce(u32, &mut PageWriter) -> Option<u32>) {
        let h = &self.header;
        // Only the main lcore writes the page: the generation is ours to bump.
        let gen = h.generation.load(Ordering::Relaxed);
        let writing = gen | 1;
        h.generation.store(writing, Ordering::Relaxed);
        // Release fence: a reader that sees any record word we write below also sees the
        // odd generation (its re-check after the copy then fails).
        fence(Ordering::Release);
        let mut page = PageWriter { dump: self, count: 0 };
        let next = fill(DumpRequest::unpack(request).cursor, &mut page);
        h.count.store(page.count as u64, Ordering::Relaxed);
        h.next.store(next.map_or(DUMP_END, u64::from), Ordering::Relaxed);
        h.answered.store(request, Ordering::Relaxed);
        // Release: records, count, next and answered are visible to a reader that
        // Acquire-loads this even generation.
        h.generation.store(writing.wrapping_add(1), Ordering::Release);
    }

    /// Control: copies the page into `out` (cleared first) if it answers `request`.
    pub fn read(&self, request: DumpRequest, out: &mut Vec<DumpedFlow>) -> Page {
        out.clear();
        let h = &self.header;
        // Acquire: pairs with the Release store that completed the page.
        let gen = h.generation.load(Ordering::Acquire);
        if gen & 1 == 1 || h.answered.load(Ordering::Relaxed) != request.pack() {
            return Page::NotYet;
        }
        // Another process's number: never trusted beyond the page.
        let count = (h.count.load(Ordering::Relaxed) as usize).min(DUMP_PAGE_RECORDS);
        let next = h.next.load(Ordering::Relaxed);
        out.extend(self.words[..count].iter().map(|slot| DumpedFlow::from_words(std::array::from_fn(|i| slot[i].load(Ordering::Relaxed)))));
        // Acquire fence: the copy above completes before the generation is read again, so
        // a writer that started meanwhile is seen (it bumped the generation first).
        fence(Ordering::Acquire);
        if h.generation.load(Ordering::Relaxed) != gen {
            out.clear();
            return Page::NotYet;
        }
        // A cursor that does not move forward would loop for ever: treat it as the end.
        let next = u32::try_from(next).ok().filter(|&n| n > request.cursor);
        Page::Ready { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn region() -> Arc<FlowDump> {
        // SAFETY: FlowDump is ShmSafe: all-zero is its valid initial state. Allocated
        // zeroed on the heap directly (768 KiB is too large for a test thread's stack).
        unsafe {
            let layout = std::alloc::Layout::new::<FlowDump>();
            let p = std::alloc::alloc_zeroed(layout) as *mut FlowDump;
            assert!(!p.is_null());
            Arc::from(Box::from_raw(p))
        }
    }

    fn flow(i: u64) -> DumpedFlow {
        DumpedFlow { src_port: i as u16, packets: [i, i + 1], age_ms: i, ..Default::default() }
    }

    /// A "table" of `n` flows, one per slot, as the main lcore would page it.
    fn fill_from(n: u64) -> impl Fn(u32, &mut PageWriter) -> Option<u32> {
        move |cursor, page| {
            let mut at = cursor as u64;
            while at < n && page.push(flow(at)) {
                at += 1;
            }
            (at < n).then_some(at as u32)
        }
    }

    /// Reads a whole dump, serving each request on a producer thread.
    fn dump_all(n: u64) -> (Vec<DumpedFlow>, usize) {
        let dump = region();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let producer = {
            let dump = dump.clone();
            std::thread::spawn(move || {
                for request in rx {
                    dump.answer(request, fill_from(n));
                }
            })
        };
        let id = dump.next_id();
        let (mut all, mut page, mut pages, mut cursor) = (Vec::new(), Vec::new(), 0, Some(0));
        while let Some(c) = cursor {
            let request = DumpRequest { id, cursor: c };
            tx.send(request.pack()).unwrap();
            cursor = loop {
                match dump.read(request, &mut page) {
                    Page::NotYet => std::thread::yield_now(),
                    Page::Ready { next } => break next,
                }
            };
            assert!(page.len() <= DUMP_PAGE_RECORDS);
            all.append(&mut page);
            pages += 1;
        }
        drop(tx);
        producer.join().unwrap();
        (all, pages)
    }

    #[test]
    fn a_dump_larger_than_a_page_is_read_page_by_page() {
        let n = 2 * DUMP_PAGE_RECORDS as u64 + 17;
        let (all, pages) = dump_all(n);
        assert_eq!(pages, 3);
        assert_eq!(all.len() as u64, n);
        assert!(all.iter().enumerate().all(|(i, f)| *f == flow(i as u64)), "every flow once, in order");
    }

    #[test]
    fn an_empty_table_is_one_empty_page() {
        assert_eq!(dump_all(0), (Vec::new(), 1));
        let (all, pages) = dump_all(DUMP_PAGE_RECORDS as u64);
        assert_eq!((all.len(), pages), (DUMP_PAGE_RECORDS, 1), "a full last page ends the dump");
    }

    #[test]
    fn a_page_for_another_request_or_mid_write_is_not_taken() {
        let dump = region();
        let mut out = vec![flow(1)];
        let first = DumpRequest { id: dump.next_id(), cursor: 0 };
        assert_eq!(dump.read(first, &mut out), Page::NotYet, "nothing answered yet");
        assert!(out.is_empty());
        dump.answer(first.pack(), fill_from(3));
        assert_eq!(dump.read(first, &mut out), Page::Ready { next: None });
        assert_eq!(out.len(), 3);
        // A later dump does not take the earlier dump's page (a late answer, or a page
        // left by a control process that restarted).
        let second = DumpRequest { id: dump.next_id(), cursor: 0 };
        assert_ne!(second.id, first.id);
        assert_eq!(dump.read(second, &mut out), Page::NotYet);
        // Nor a page being written (odd generation).
        dump.answer(second.pack(), fill_from(3));
        dump.header.generation.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dump.read(second, &mut out), Page::NotYet);
        dump.header.generation.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dump.read(second, &mut out), Page::Ready { next: None });
        // A corrupt count is bounded by the page; a cursor going backwards ends the dump.
        dump.header.count.store(u64::MAX, Ordering::Relaxed);
        dump.header.next.store(0, Ordering::Relaxed);
        assert_eq!(dump.read(second, &mut out), Page::Ready { next: None });
        assert_eq!(out.len(), DUMP_PAGE_RECORDS);
    }

    #[test]
    fn a_page_overwritten_during_the_copy_is_refused() {
        // A writer answering other requests as fast as it can: every page the reader takes
        // must be a consistent answer to its own request.
        let dump = region();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mine = DumpRequest { id: 7, cursor: 0 };
        let writer = {
            let (dump, stop) = (dump.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let (request, marker) = if i.is_multiple_of(2) { (mine, 5) } else { (DumpRequest { id: 8, cursor: 0 }, 9) };
                    dump.answer(request.pack(), |_, page| {
                        while page.push(flow(marker)) {}
                        None
                    });
                    i = i.wrapping_add(1);
                    // Pauses of varied length, so some copies fit between two answers.
                    std::thread::sleep(std::time::Duration::from_micros(u64::from(i % 8) * 200));
                }
            })
        };
        let mut out = Vec::new();
        let mut taken = 0;
        let start = std::time::Instant::now();
        while taken < 20 && start.elapsed() < std::time::Duration::from_secs(20) {
            if dump.read(mine, &mut out) != Page::NotYet {
                assert_eq!(out.len(), DUMP_PAGE_RECORDS);
                assert!(out.iter().all(|f| *f == flow(5)), "a torn or foreign page was taken");
                taken += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(taken > 0);
    }

    #[test]
    fn requests_pack_into_a_command_value() {
        let r = DumpRequest { id: u32::MAX, cursor: 123_456 };
        assert_eq!(DumpRequest::unpack(r.pack()), r);
    }

    #[test]
    fn a_flow_record_becomes_a_dumped_flow() {
        let f = DumpedFlow { src_addr: std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets(), dst_addr: "fd00::2".parse::<Ipv6Addr>().unwrap().octets(), state: FlowState::TcpEstablished as u8, ..Default::default() };
        assert_eq!((f.src_ip().to_string(), f.dst_ip().to_string()), ("10.0.0.1".into(), "fd00::2".into()));
        assert_eq!(f.state_name(), "established");
        assert_eq!(DumpedFlow { state: 200, ..f }.state_name(), "unknown");
        assert_eq!(DumpedFlow::from_words(f.to_words()), f);
        assert_eq!(f.rule(), Some(0));
        assert_eq!(DumpedFlow { rule: NO_RULE, ..f }.rule(), None);
    }
}
