//! Later IP fragments follow the verdict of their datagram's first fragment.
//!
//! Only the first fragment of a fragmented datagram carries the L4 header (ports, TCP
//! flags), so the firewall decides the datagram on it. Each worker remembers the
//! datagrams whose first fragment it passed — key: zone, addresses, protocol and
//! fragment id (IPv4 identification or IPv6 Fragment header id) — for [`TIMEOUT_MS`]
//! (Linux's `ipfrag_time`), and a later fragment passes only if its datagram is
//! remembered. Anything else is dropped and counted as `fragment`, never passed
//! unchecked: a later fragment that arrives before its first one (no reassembly
//! here), one of a datagram whose first fragment was dropped, or one that comes after
//! the entry expired or was displaced by newer datagrams. A later fragment cannot
//! rewrite the ports its first fragment was judged on: the parser drops TCP fragments
//! at offset 8 and first fragments too short to hold the L4 header (RFC 1858), and
//! every later fragment starts at or beyond byte 8 of the L4 header (the ports are in
//! the first 4).
//!
//! Overlaps (RFC 5722; the `fragment_overlap` anomaly): each entry keeps the byte ranges
//! of the datagram its fragments carried — the first fragment's ([`first_carried`]), then
//! each later one's,
//! merged, up to [`RANGES`] disjoint pieces (fragments that arrive in order merge into
//! one) — and a later fragment that overlaps bytes already carried is reported as
//! [`Follow::Overlap`]. Even an exact duplicate counts: a virtual link does not duplicate
//! packets, and a reassembler must not have to choose whose bytes win. Dropping one
//! poisons its datagram ([`Fragments::poison`]): its remaining fragments are dropped
//! too. A fragment that would need more pieces than an entry keeps is dropped as
//! `fragment`.
//!
//! The table is per worker (no sharing, no atomics): fragments of one datagram come
//! from one guest queue and so reach one worker. 4-way sets of a bounded table keyed
//! by a randomly seeded hash, so a guest cannot aim collisions at another guest's
//! datagrams; a full set gives up the entry closest to expiry.

use rampart_packet::Meta;

/// Datagrams one worker remembers.
const SLOTS: usize = 4096;
/// Entries per set.
const WAYS: usize = 4;
/// How long after its first fragment a datagram's later fragments are accepted.
pub const TIMEOUT_MS: u64 = 30_000;
/// Disjoint byte ranges of a datagram an entry keeps.
pub const RANGES: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    zone: u16,
}

impl DatagramKey {
    fn of(meta: &Meta, zone: u16) -> DatagramKey {
        DatagramKey { src: meta.src_addr, dst: meta.dst_addr, id: meta.frag_id, proto: meta.ip_proto, zone }
    }
}

/// What a remembered datagram's later fragments inherit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// The rule counter slot the first fragment was counted to, if any.
    pub counter: Option<usize>,
    /// The policy generation that passed the first fragment: counters are only
    /// attributed under the same one.
    pub gen: u64,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: DatagramKey,
    datagram: Datagram,
    /// 0: empty.
    expires_ms: u64,
    /// Bytes of the datagram its fragments carried: `[start, end)`, disjoint, the first
    /// `pieces` of them.
    carried: [(u32, u32); RANGES],
    pieces: u8,
    /// An overlap was dropped: so is the rest of the datagram.
    poisoned: bool,
}

impl Entry {
    /// Adds `[start, end)` to what the datagram carried; false if it overlaps what it did.
    /// Err: no room for another piece.
    fn carry(&mut self, start: u32, end: u32) -> Result<bool, ()> {
        let pieces = &mut self.carried[..self.pieces as usize];
        if pieces.iter().any(|&(s, e)| start < e && s < end) {
            return Ok(false);
        }
        // Touching a piece on either side: grow it (and join the two it may bridge).
        let before = pieces.iter().position(|&(_, e)| e == start);
        let after = pieces.iter().position(|&(s, _)| s == end);
        match (before, after) {
            (Some(b), Some(a)) => {
                self.carried[b].1 = self.carried[a].1;
                self.carried[a] = self.carried[self.pieces as usize - 1];
                self.pieces -= 1;
            }
            (Some(b), None) => self.carried[b].1 = end,
            (None, Some(a)) => self.carried[a].0 = start,
            (None, None) if (self.pieces as usize) < RANGES => {
                self.carried[self.pieces as usize] = (start, end);
                self.pieces += 1;
            }
            (None, None) => return Err(()),
        }
        Ok(true)
    }
}

/// What becomes of a later fragment ([`Fragments::follow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Its datagram's first fragment passed: so does it, with what it inherits.
    Pass(Datagram),
    /// As `Pass`, but it overlaps bytes an earlier fragment of its datagram carried.
    Overlap(Datagram),
    /// Its datagram is unknown (or it needs more pieces than are kept): drop it as `fragment`.
    Unknown,
    /// Its datagram had an overlap that was dropped: drop it too.
    Poisoned,
}

/// How many bytes of its datagram's fragmentable part the first fragment `meta` (parsed from
/// `data`) carries: everything after the IPv4 header, or after the IPv6 Fragment header
/// (extension headers that follow it included).
pub fn first_carried(meta: &Meta, data: &[u8]) -> usize {
    let l3 = meta.l3_offset();
    let be16 = |at: usize| data.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])) as usize;
    let (end, start) = match meta.l3() {
        rampart_packet::L3::Ipv4 => (l3 + be16(l3 + 2), l3 + (data.get(l3).copied().unwrap_or(0x45) & 0xf) as usize * 4),
        _ => (l3 + 40 + be16(l3 + 4), crate::anomaly::ipv6_ext_header(meta, data, 44).map_or(meta.l4_offset as usize, |off| off + 8)),
    };
    end.saturating_sub(start)
}

/// One worker's remembered datagrams.
pub struct Fragments {
    entries: Box<[Entry]>,
    hasher: ahash::RandomState,
}

impl Default for Fragments {
    fn default() -> Self {
        Fragments { entries: vec![Entry::default(); SLOTS].into_boxed_slice(), hasher: ahash::RandomState::new() }
    }
}

impl Fragments {
    fn set(&mut self, key: &DatagramKey) -> &mut [Entry] {
        let set = self.hasher.hash_one(key) as usize % (SLOTS / WAYS);
        &mut self.entries[set * WAYS..(set + 1) * WAYS]
    }

    /// Remembers that the datagram of the first fragment `meta` passed; it carried the
    /// datagram's first `carried` bytes (its L4 header and payload).
    pub fn passed(&mut self, meta: &Meta, zone: u16, datagram: Datagram, carried: usize, now_ms: u64) {
        let key = DatagramKey::of(meta, zone);
        let set = self.set(&key);
        let i = set
            .iter()
            .position(|e| e.expires_ms != 0 && e.key == key)
            .or_else(|| set.iter().position(|e| e.expires_ms <= now_ms))
            .unwrap_or_else(|| (0..WAYS).min_by_key(|&i| set[i].expires_ms).unwrap_or(0));
        let mut carried_ranges = [(0, 0); RANGES];
        carried_ranges[0] = (0, carried as u32);
        set[i] = Entry { key, datagram, expires_ms: now_ms + TIMEOUT_MS, carried: carried_ranges, pieces: 1, poisoned: false };
    }

    /// What becomes of the later fragment `meta`: it follows its datagram if the first
    /// fragment passed within [`TIMEOUT_MS`]. `overlaps`: check (and keep) the bytes it
    /// carries.
    pub fn follow(&mut self, meta: &Meta, zone: u16, now_ms: u64, overlaps: bool) -> Follow {
        let key = DatagramKey::of(meta, zone);
        let Some(e) = self.set(&key).iter_mut().find(|e| e.expires_ms > now_ms && e.key == key) else {
            return Follow::Unknown;
        };
        if e.poisoned {
            return Follow::Poisoned;
        }
        if !overlaps {
            return Follow::Pass(e.datagram);
        }
        let start = meta.frag_offset() as u32;
        match e.carry(start, start + meta.payload_len as u32) {
            Ok(true) => Follow::Pass(e.datagram),
            Ok(false) => Follow::Overlap(e.datagram),
            Err(()) => Follow::Unknown,
        }
    }

    /// Drops the rest of later fragment `meta`'s datagram (its overlap was dropped).
    pub fn poison(&mut self, meta: &Meta, zone: u16) {
        let key = DatagramKey::of(meta, zone);
        if let Some(e) = self.set(&key).iter_mut().find(|e| e.expires_ms != 0 && e.key == key) {
            e.poisoned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_packet::build;

    fn fragment(src: u8, id: u32, offset_nonzero: bool) -> Meta {
        // IPv4 UDP, MF set; offset 0 (first) or 185 × 8 bytes (later).
        let offset = if offset_nonzero { 185 * 8 } else { 0 };
        let first = build::udp_v4([10, 0, 0, src], 12345, [10, 0, 0, 99], 53, &[0; 16])
            .with_ipv4(|ip| {
                (ip.ident, ip.more_frags, ip.frag_offset) = (id as u16, true, offset);
            })
            .pad(60)
            .build()
            .unwrap();
        let meta = rampart_packet::parse(&first).unwrap();
        assert!(meta.is_fragment() && meta.is_later_fragment() == offset_nonzero);
        meta
    }

    #[test]
    fn later_fragments_follow_a_passed_first_fragment_until_it_expires() {
        let mut f = Fragments::default();
        let d = Datagram { counter: Some(7), gen: 3 };
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 0, false), Follow::Unknown, "a later fragment before its first is dropped");
        f.passed(&fragment(1, 42, false), 0, d, 24, 1000);
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1001, false), Follow::Pass(d));
        assert_eq!(f.follow(&fragment(1, 42, true), 1, 1001, false), Follow::Unknown, "another zone");
        assert_eq!(f.follow(&fragment(1, 43, true), 0, 1001, false), Follow::Unknown, "another id");
        assert_eq!(f.follow(&fragment(2, 42, true), 0, 1001, false), Follow::Unknown, "another source");
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1000 + TIMEOUT_MS - 1, false), Follow::Pass(d));
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1000 + TIMEOUT_MS, false), Follow::Unknown, "expired");
    }

    #[test]
    fn a_flood_of_datagrams_displaces_old_entries_and_stays_bounded() {
        let mut f = Fragments::default();
        let d = Datagram::default();
        for id in 0..(SLOTS as u32 * 4) {
            f.passed(&fragment(1, id, false), 0, d, 24, 10 + id as u64);
        }
        assert_eq!(f.entries.len(), SLOTS);
        let last = SLOTS as u32 * 4 - 1;
        let now = 10 + last as u64;
        assert!(f.follow(&fragment(1, last, true), 0, now, false) != Follow::Unknown, "the newest datagram is remembered");
        let kept = (0..SLOTS as u32).filter(|&id| f.follow(&fragment(1, id, true), 0, now, false) != Follow::Unknown).count();
        assert!(kept < SLOTS / 8, "the oldest datagrams gave way: {kept} kept");
    }

    /// A later fragment of datagram 42 from 10.0.0.1 at `offset` carrying `len` bytes.
    fn piece(offset: u16, len: usize) -> Meta {
        let frame = build::udp_v4([10, 0, 0, 1], 12345, [10, 0, 0, 99], 53, &[0; 16])
            .with_ipv4(|ip| (ip.ident, ip.more_frags, ip.frag_offset) = (42, true, offset))
            .build()
            .unwrap();
        let mut meta = rampart_packet::parse(&frame).unwrap();
        meta.payload_len = len as u16;
        meta
    }

    #[test]
    fn overlapping_fragments_are_found_and_a_dropped_overlap_poisons_its_datagram() {
        let mut f = Fragments::default();
        let d = Datagram { counter: None, gen: 1 };
        f.passed(&fragment(1, 42, false), 0, d, 24, 1000);
        assert_eq!(f.follow(&piece(24, 16), 0, 1001, true), Follow::Pass(d), "right after the first");
        assert_eq!(f.follow(&piece(64, 16), 0, 1001, true), Follow::Pass(d), "after a gap");
        assert_eq!(f.follow(&piece(40, 24), 0, 1001, true), Follow::Pass(d), "filling the gap");
        assert_eq!(f.follow(&piece(16, 16), 0, 1001, true), Follow::Overlap(d), "rewriting bytes the first carried");
        assert_eq!(f.follow(&piece(72, 8), 0, 1001, true), Follow::Overlap(d), "inside a later one");
        assert_eq!(f.follow(&piece(40, 8), 0, 1001, false), Follow::Pass(d), "not checked");
        f.poison(&piece(72, 8), 0);
        assert_eq!(f.follow(&piece(80, 8), 0, 1001, true), Follow::Poisoned, "the rest of the datagram is dropped");
    }

    #[test]
    fn a_first_fragment_carries_everything_after_the_ip_or_fragment_header() {
        let v4 = build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 2], 7, &[0; 64]).fragments(24).unwrap();
        assert_eq!(first_carried(&rampart_packet::parse(&v4[0]).unwrap(), &v4[0]), 24);
        // IPv6 with Destination Options (unfragmentable, before the Fragment header): not counted.
        let v6 = build::udp_v6([0xfd; 16], 7, [0xfe; 16], 7, &[0; 64]).ext_header(rampart_packet::IpProtocol::Ipv6Opts, &[0; 6]).fragments(24).unwrap();
        let meta = rampart_packet::parse(&v6[0]).unwrap();
        assert!(meta.is_first_fragment());
        assert_eq!(first_carried(&meta, &v6[0]), 24);
    }

    #[test]
    fn pieces_are_bounded_and_merge_when_they_meet() {
        let mut e = Entry { pieces: 1, carried: [(0, 8), (0, 0), (0, 0), (0, 0)], ..Entry::default() };
        assert_eq!(e.carry(16, 24), Ok(true));
        assert_eq!(e.carry(32, 40), Ok(true));
        assert_eq!(e.carry(48, 56), Ok(true));
        assert_eq!(e.carry(64, 72), Err(()), "a fifth disjoint piece finds no room");
        assert_eq!(e.carry(8, 16), Ok(true), "bridges two pieces");
        assert_eq!(e.pieces, 3);
        assert_eq!(e.carry(64, 72), Ok(true), "room again");
        assert_eq!(e.carry(20, 21), Ok(false));
    }
}
