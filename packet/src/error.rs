//! Drop reasons: one variant per distinct malformation, usable directly as a counter index.

/// Why a frame was rejected. `#[repr(u8)]` with dense discriminants `0..COUNT`, so the
/// dataplane can keep one counter per reason in a fixed array indexed by [`ParseError::index`].
///
/// Checksums are never verified (hot path), so there is no checksum variant. IPv4 protocol 0
/// is accepted as an unusual protocol without ports; in IPv6, next header 0 is Hop-by-Hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[repr(u8)]
pub enum ParseError {
    /// Frame shorter than the 14-byte Ethernet header.
    #[error("frame is shorter than the 14-byte Ethernet header")]
    EthernetTruncated = 0,
    /// Frame ends inside an 802.1Q / 802.1ad tag.
    #[error("frame ends inside an 802.1Q/802.1ad VLAN tag")]
    VlanTruncated,
    /// More than two VLAN tags, or an 802.1ad S-tag nested inside another tag.
    #[error("more than two VLAN tags, or an 802.1ad S-tag inside another tag")]
    VlanTooManyTags,
    /// ARP packet shorter than its fixed part plus the addresses its lengths announce.
    #[error("ARP packet is shorter than its announced address lengths require")]
    ArpTruncated,
    /// Fewer bytes than the IPv4 header (20 bytes, or IHL*4 with options).
    #[error("IPv4 header (including options) does not fit in the frame")]
    Ipv4Truncated,
    /// EtherType says IPv4 but the version nibble is not 4.
    #[error("IPv4 version field is not 4")]
    Ipv4BadVersion,
    /// IHL below 5 (header shorter than 20 bytes).
    #[error("IPv4 IHL is below 5")]
    Ipv4BadIhl,
    /// Total length below the header length, or above the bytes present.
    #[error("IPv4 total length is smaller than the header or larger than the frame")]
    Ipv4BadTotalLength,
    /// Fewer than 40 bytes for the IPv6 fixed header.
    #[error("IPv6 fixed header does not fit in the frame")]
    Ipv6Truncated,
    /// EtherType says IPv6 but the version nibble is not 6.
    #[error("IPv6 version field is not 6")]
    Ipv6BadVersion,
    /// Payload length reaches past the end of the frame.
    #[error("IPv6 payload length is larger than the frame")]
    Ipv6BadPayloadLength,
    /// An extension header runs past the end of the IPv6 payload.
    #[error("IPv6 extension header runs past the end of the payload")]
    Ipv6ExtHeaderTruncated,
    /// More than [`crate::ipv6::MAX_EXT_HEADERS`] extension headers.
    #[error("IPv6 packet has more than 8 extension headers")]
    Ipv6TooManyExtHeaders,
    /// Hop-by-Hop not first, or a second Fragment header.
    #[error("IPv6 extension headers out of order (Hop-by-Hop not first, or two Fragment headers)")]
    Ipv6BadExtHeaderOrder,
    /// First fragment too small to hold the whole header chain and upper-layer header
    /// (RFC 1858 tiny fragments, RFC 7112).
    #[error("first fragment does not contain the complete transport header")]
    FragmentTooSmall,
    /// Non-last fragment whose data is not a multiple of 8 bytes, or a fragment that
    /// reaches past 65535 bytes of reassembled payload ("ping of death").
    #[error("fragment length is not a multiple of 8, or offset+length exceeds 65535")]
    FragmentBadLength,
    /// TCP fragment at offset 8 bytes, which can only overwrite the TCP flags (RFC 1858).
    #[error("TCP fragment at offset 8 would overlap the TCP header (RFC 1858)")]
    FragmentBadOffset,
    /// Fewer than 20 bytes for the TCP header.
    #[error("TCP header is shorter than 20 bytes")]
    TcpTruncated,
    /// Data offset below 5, or pointing past the end of the segment.
    #[error("TCP data offset is below 5 or past the end of the segment")]
    TcpBadDataOffset,
    /// Fewer than 8 bytes for the UDP header.
    #[error("UDP header is shorter than 8 bytes")]
    UdpTruncated,
    /// UDP length below 8, or above the bytes the IP layer carries.
    #[error("UDP length is below 8 or larger than the IP payload")]
    UdpBadLength,
    /// Fewer than 8 bytes for the ICMP header.
    #[error("ICMP message is shorter than 8 bytes")]
    IcmpTruncated,
    /// Fewer than 8 bytes for the ICMPv6 header.
    #[error("ICMPv6 message is shorter than 8 bytes")]
    Icmpv6Truncated,
}

impl ParseError {
    /// Number of variants (size of a per-reason counter array).
    pub const COUNT: usize = 23;

    /// Every variant, in discriminant order: `ALL[e.index()] == e`.
    pub const ALL: [ParseError; Self::COUNT] = [
        Self::EthernetTruncated,
        Self::VlanTruncated,
        Self::VlanTooManyTags,
        Self::ArpTruncated,
        Self::Ipv4Truncated,
        Self::Ipv4BadVersion,
        Self::Ipv4BadIhl,
        Self::Ipv4BadTotalLength,
        Self::Ipv6Truncated,
        Self::Ipv6BadVersion,
        Self::Ipv6BadPayloadLength,
        Self::Ipv6ExtHeaderTruncated,
        Self::Ipv6TooManyExtHeaders,
        Self::Ipv6BadExtHeaderOrder,
        Self::FragmentTooSmall,
        Self::FragmentBadLength,
        Self::FragmentBadOffset,
        Self::TcpTruncated,
        Self::TcpBadDataOffset,
        Self::UdpTruncated,
        Self::UdpBadLength,
        Self::IcmpTruncated,
        Self::Icmpv6Truncated,
    ];

    /// Dense index in `0..COUNT`, for counter arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case label for metrics (`drop_reason="ipv4_bad_ihl"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::EthernetTruncated => "ethernet_truncated",
            Self::VlanTruncated => "vlan_truncated",
            Self::VlanTooManyTags => "vlan_too_many_tags",
            Self::ArpTruncated => "arp_truncated",
            Self::Ipv4Truncated => "ipv4_truncated",
            Self::Ipv4BadVersion => "ipv4_bad_version",
            Self::Ipv4BadIhl => "ipv4_bad_ihl",
            Self::Ipv4BadTotalLength => "ipv4_bad_total_length",
            Self::Ipv6Truncated => "ipv6_truncated",
            Self::Ipv6BadVersion => "ipv6_bad_version",
            Self::Ipv6BadPayloadLength => "ipv6_bad_payload_length",
            Self::Ipv6ExtHeaderTruncated => "ipv6_ext_header_truncated",
            Self::Ipv6TooManyExtHeaders => "ipv6_too_many_ext_headers",
            Self::Ipv6BadExtHeaderOrder => "ipv6_bad_ext_header_order",
            Self::FragmentTooSmall => "fragment_too_small",
            Self::FragmentBadLength => "fragment_bad_length",
            Self::FragmentBadOffset => "fragment_bad_offset",
            Self::TcpTruncated => "tcp_truncated",
            Self::TcpBadDataOffset => "tcp_bad_data_offset",
            Self::UdpTruncated => "udp_truncated",
            Self::UdpBadLength => "udp_bad_length",
            Self::IcmpTruncated => "icmp_truncated",
            Self::Icmpv6Truncated => "icmpv6_truncated",
        }
    }
}

/// Why a `Repr` could not be parsed from a view or emitted into a buffer. Not on the hot
/// path: [`crate::parse`] reports [`ParseError`] alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ReprError {
    /// The bytes are malformed in a way [`crate::parse`] also rejects.
    #[error(transparent)]
    Malformed(#[from] ParseError),
    /// `arp::Repr` only describes Ethernet/IPv4 ARP.
    #[error("ARP packet is not Ethernet/IPv4 (hardware type 1, 6-byte MACs, 4-byte IPv4 addresses); read it with arp::Packet")]
    ArpNotEthernetIpv4,
    /// A TCP option's length byte is below 2, runs past the header, or does not fit its
    /// kind (MSS 4, window scale 3, SACK-permitted 2, timestamps 10).
    #[error("TCP option has a bad length or runs past the header")]
    TcpBadOption,
    /// The message is shorter than its type's fixed part (e.g. a neighbour solicitation
    /// without its 16-byte target).
    #[error("ICMP/ICMPv6 message is shorter than its type's fixed fields")]
    IcmpTruncatedBody,
    /// The buffer given to `emit` is shorter than `buffer_len()`.
    #[error(
        "buffer of {available} bytes is too small: emit needs {needed}; size it with buffer_len()"
    )]
    BufferTooSmall {
        /// Bytes `emit` writes.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A length does not fit its header field (IPv4 total length or UDP length above
    /// 65535, IPv6 payload length above 65535, TCP options above 40 bytes).
    #[error("length {len} does not fit the header's length field")]
    TooLong {
        /// The length that did not fit.
        len: usize,
    },
}

/// Check that `buf` holds `needed` bytes before an `emit` writes them.
#[inline]
pub(crate) fn check_room(buf: &[u8], needed: usize) -> Result<(), ReprError> {
    if buf.len() < needed {
        return Err(ReprError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}

/// The first `header_len + payload.len()` bytes of `buf`, with `payload` copied after the
/// header: what an L4 `emit` fills in and checksums.
#[inline]
pub(crate) fn segment<'a>(
    buf: &'a mut [u8],
    header_len: usize,
    payload: &[u8],
) -> Result<&'a mut [u8], ReprError> {
    let len = header_len + payload.len();
    check_room(buf, len)?;
    let segment = &mut buf[..len];
    segment[header_len..].copy_from_slice(payload);
    Ok(segment)
}

/// `len` as a 16-bit length field, or [`ReprError::TooLong`].
#[inline]
pub(crate) fn len16(len: usize) -> Result<u16, ReprError> {
    u16::try_from(len).map_err(|_| ReprError::TooLong { len })
}

const _: () = assert!(ParseError::COUNT <= 24);
const _: () = assert!(core::mem::size_of::<ParseError>() == 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_dense_and_names_are_unique_snake_case() {
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
            let name = e.name();
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            for other in &ParseError::ALL[..i] {
                assert_ne!(other.name(), name);
            }
            assert!(!e.to_string().is_empty());
        }
    }
}
