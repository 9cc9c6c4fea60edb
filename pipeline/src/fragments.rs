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

    /// Remembers that the datagram of the first fragment `meta` passed.
    pub fn passed(&mut self, meta: &Meta, zone: u16, datagram: Datagram, now_ms: u64) {
        let key = DatagramKey::of(meta, zone);
        let set = self.set(&key);
        let i = set
            .iter()
            .position(|e| e.expires_ms != 0 && e.key == key)
            .or_else(|| set.iter().position(|e| e.expires_ms <= now_ms))
            .unwrap_or_else(|| (0..WAYS).min_by_key(|&i| set[i].expires_ms).unwrap_or(0));
        set[i] = Entry { key, datagram, expires_ms: now_ms + TIMEOUT_MS };
    }

    /// The datagram a later fragment `meta` belongs to, if its first fragment passed
    /// within [`TIMEOUT_MS`]; `None`: drop it.
    pub fn follow(&mut self, meta: &Meta, zone: u16, now_ms: u64) -> Option<Datagram> {
        let key = DatagramKey::of(meta, zone);
        self.set(&key).iter().find(|e| e.expires_ms > now_ms && e.key == key).map(|e| e.datagram)
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
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 0), None, "a later fragment before its first is dropped");
        f.passed(&fragment(1, 42, false), 0, d, 1000);
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1001), Some(d));
        assert_eq!(f.follow(&fragment(1, 42, true), 1, 1001), None, "another zone");
        assert_eq!(f.follow(&fragment(1, 43, true), 0, 1001), None, "another id");
        assert_eq!(f.follow(&fragment(2, 42, true), 0, 1001), None, "another source");
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1000 + TIMEOUT_MS - 1), Some(d));
        assert_eq!(f.follow(&fragment(1, 42, true), 0, 1000 + TIMEOUT_MS), None, "expired");
    }

    #[test]
    fn a_flood_of_datagrams_displaces_old_entries_and_stays_bounded() {
        let mut f = Fragments::default();
        let d = Datagram::default();
        for id in 0..(SLOTS as u32 * 4) {
            f.passed(&fragment(1, id, false), 0, d, 10 + id as u64);
        }
        assert_eq!(f.entries.len(), SLOTS);
        let last = SLOTS as u32 * 4 - 1;
        let now = 10 + last as u64;
        assert!(f.follow(&fragment(1, last, true), 0, now).is_some(), "the newest datagram is remembered");
        let kept = (0..SLOTS as u32).filter(|&id| f.follow(&fragment(1, id, true), 0, now).is_some()).count();
        assert!(kept < SLOTS / 8, "the oldest datagrams gave way: {kept} kept");
    }
}
