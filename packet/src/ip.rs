//! Things shared by IPv4 and IPv6: the protocol / next-header numbers and address mapping.

/// Raw protocol numbers used on the hot path.
pub mod protocol {
    /// IPv6 Hop-by-Hop options (also the otherwise unused IPv4 protocol 0).
    pub const HOPOPT: u8 = 0;
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination options.
    pub const IPV6_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// IP protocol / IPv6 next header, keeping unknown values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 0
    HopByHop,
    /// 1
    Icmp,
    /// 6
    Tcp,
    /// 17
    Udp,
    /// 43
    Ipv6Route,
    /// 44
    Ipv6Frag,
    /// 50
    Esp,
    /// 51
    Ah,
    /// 58
    Icmpv6,
    /// 59
    Ipv6NoNxt,
    /// 60
    Ipv6Opts,
    /// 132
    Sctp,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(value: u8) -> Self {
        use protocol::*;
        match value {
            HOPOPT => Self::HopByHop,
            ICMP => Self::Icmp,
            TCP => Self::Tcp,
            UDP => Self::Udp,
            IPV6_ROUTE => Self::Ipv6Route,
            IPV6_FRAG => Self::Ipv6Frag,
            ESP => Self::Esp,
            AH => Self::Ah,
            ICMPV6 => Self::Icmpv6,
            IPV6_NONXT => Self::Ipv6NoNxt,
            IPV6_OPTS => Self::Ipv6Opts,
            SCTP => Self::Sctp,
            other => Self::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(value: IpProtocol) -> Self {
        use protocol::*;
        match value {
            IpProtocol::HopByHop => HOPOPT,
            IpProtocol::Icmp => ICMP,
            IpProtocol::Tcp => TCP,
            IpProtocol::Udp => UDP,
            IpProtocol::Ipv6Route => IPV6_ROUTE,
            IpProtocol::Ipv6Frag => IPV6_FRAG,
            IpProtocol::Esp => ESP,
            IpProtocol::Ah => AH,
            IpProtocol::Icmpv6 => ICMPV6,
            IpProtocol::Ipv6NoNxt => IPV6_NONXT,
            IpProtocol::Ipv6Opts => IPV6_OPTS,
            IpProtocol::Sctp => SCTP,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// IPv4 address as an IPv4-mapped IPv6 address `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), the
/// form [`crate::Meta`] and [`crate::FlowKey`] store.
#[inline]
pub const fn ipv4_mapped(a: [u8; 4]) -> [u8; 16] {
    // Built in a register and stored whole: byte-wise construction measured slower on the
    // parse path (16 narrow stores, then wide loads that cannot forward from them).
    (0xffff_u128 << 32 | u32::from_be_bytes(a) as u128).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(0x99), IpProtocol::Unknown(0x99));
    }

    #[test]
    fn mapping() {
        let m = ipv4_mapped([192, 0, 2, 1]);
        assert_eq!(
            std::net::Ipv6Addr::from(m).to_ipv4_mapped(),
            Some(std::net::Ipv4Addr::new(192, 0, 2, 1))
        );
    }
}
