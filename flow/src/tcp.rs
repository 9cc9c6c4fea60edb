//! TCP connection tracking: the state machine and the sequence-window checks, in the
//! spirit of Linux's `nf_conntrack_proto_tcp.c` (`tcp_packet` / `tcp_in_window`),
//! simplified to what fits a 64-byte entry.
//!
//! Per direction we keep `end` (highest sequence number sent + 1, i.e. Linux's
//! `td_end`), `maxwin` (largest window advertised, in units of that direction's window
//! scale: Linux's `td_maxwin`) and the window-scale shift. Linux's `td_maxend` (highest
//! `ack + window` the peer allowed) does not fit; we bound a sender by
//! `end[sender] + maxwin[receiver]` instead, which is never tighter than Linux's bound
//! (the receiver cannot have acknowledged more than the sender sent) — we may accept a
//! segment Linux would flag, never the reverse. The other three of Linux's four checks
//! (lower sequence bound, upper and lower acknowledgement bounds) are the same.
//!
//! Everything here is a pure function of a [`TcpCtx`] copied out of the entry while the
//! caller holds the entry's write lock; the table writes the context back only for
//! accepted packets, so an invalid packet never changes a flow.

use rampart_packet::{tcp, Meta, TcpFlags};

use crate::entry::flag;
use crate::{FlowState, InvalidReason};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const SYN_ACK: u8 = SYN | ACK;
const FIN_ACK: u8 = FIN | ACK;
const RST_ACK: u8 = RST | ACK;

/// Window-scale nibble meaning "the SYN carried no window-scale option".
pub(crate) const NO_SCALE: u8 = 15;
/// RFC 7323: shifts above 14 are treated as 14.
const MAX_SCALE: u8 = 14;
/// Linux's `MAXACKWINDOW` floor: how far behind an ACK may lag, at least.
const MIN_ACK_WINDOW: u32 = 66_000;

/// The TCP header fields the tracker needs, in host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    /// Header flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with ACK).
    pub ack: u32,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// Window-scale option (RFC 7323), read from SYN segments only.
    pub window_scale: Option<u8>,
    /// Bytes of TCP payload.
    pub payload_len: u32,
}

impl TcpSegment {
    /// Read the segment of a parsed TCP packet from its frame (the one `meta` came
    /// from). `None` if `meta` is not TCP with a header (e.g. a later fragment).
    #[inline]
    pub fn from_frame(meta: &Meta, frame: &[u8]) -> Option<TcpSegment> {
        if !meta.has_l4_header() || meta.ip_proto != 6 {
            return None;
        }
        let header = tcp::Packet::new_checked(frame.get(meta.l4_offset as usize..)?).ok()?;
        let flags = header.flags();
        Some(TcpSegment {
            flags,
            seq: header.seq_number(),
            ack: header.ack_number(),
            window: header.window_len(),
            window_scale: if flags.syn() {
                window_scale_option(header.options())
            } else {
                None
            },
            payload_len: meta.payload_len as u32,
        })
    }

    /// Sequence space the segment occupies: payload, plus one for SYN and for FIN.
    #[inline]
    fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.payload_len)
            .wrapping_add(self.flags.syn() as u32)
            .wrapping_add(self.flags.fin() as u32)
    }
}

/// The window-scale shift in a TCP option list, if present and well formed.
fn window_scale_option(mut options: &[u8]) -> Option<u8> {
    loop {
        match *options.first()? {
            0 => return None,
            1 => options = options.get(1..)?,
            kind => {
                let len = *options.get(1)? as usize;
                if len < 2 {
                    return None;
                }
                if kind == 3 && len == 3 {
                    return options.get(2).copied();
                }
                options = options.get(len..)?;
            }
        }
    }
}

/// `a` is after `b` in sequence space.
#[inline]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a` is at or before `b` in sequence space.
#[inline]
fn before_eq(a: u32, b: u32) -> bool {
    !after(a, b)
}

/// Divide by 2^shift, rounding up (a window of 1 byte must not become 0).
#[inline]
fn ceil_shift(value: u32, shift: u8) -> u16 {
    let units = (value + (1u32 << shift) - 1) >> shift;
    units.min(u16::MAX as u32) as u16
}

/// What a TCP packet does to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpStep {
    /// Valid: write the context back.
    Accept,
    /// Invalid: leave the flow alone.
    Invalid(InvalidReason),
    /// A SYN on a TIME_WAIT/CLOSE connection: end this flow, create a new one.
    Reopen,
}

/// The TCP part of an entry, copied out under the entry's write lock. Directions are
/// canonical ([`rampart_packet::Direction`] as index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpCtx {
    pub state: FlowState,
    /// Entry flag bits ([`flag`]).
    pub flags: u8,
    /// Window-scale shift per direction; during the handshake, the SYN's offer or
    /// [`NO_SCALE`].
    pub wscale: [u8; 2],
    /// Highest sequence number sent + 1, per direction.
    pub end: [u32; 2],
    /// Largest window advertised, in units of 2^scale, per direction.
    pub maxwin: [u16; 2],
}

impl TcpCtx {
    /// Context for a flow whose first packet is `seg` from `dir`, or why it cannot open
    /// one. With `loose`, an ACK opens an established flow tracked liberally.
    pub fn open(dir: usize, seg: &TcpSegment, loose: bool) -> Result<TcpCtx, InvalidReason> {
        let f = valid_flags(seg.flags)?;
        let mut ctx = TcpCtx {
            state: FlowState::TcpSynSent,
            flags: if dir == 1 { flag::INIT_REV } else { 0 },
            wscale: [NO_SCALE; 2],
            end: [0; 2],
            maxwin: [0; 2],
        };
        match f {
            SYN => {
                ctx.end[dir] = seg.end();
                ctx.maxwin[dir] = seg.window;
                ctx.wscale[dir] = seg.window_scale.map_or(NO_SCALE, |s| s.min(MAX_SCALE));
                Ok(ctx)
            }
            ACK | FIN_ACK if loose => {
                // Picked up mid-stream: the window scale is unknown, so (as Linux does)
                // track sequence numbers without enforcing windows.
                ctx.state = FlowState::TcpEstablished;
                ctx.flags |= flag::LIBERAL;
                ctx.wscale = [0; 2];
                ctx.end[dir] = seg.end();
                ctx.maxwin[dir] = seg.window.max(1);
                ctx.close_transitions(dir, seg);
                Ok(ctx)
            }
            _ => Err(InvalidReason::TcpNotSyn),
        }
    }

    #[inline]
    fn initiator(&self) -> usize {
        (self.flags & flag::INIT_REV != 0) as usize
    }

    #[inline]
    fn closer(&self) -> usize {
        (self.flags & flag::CLOSER_REV != 0) as usize
    }

    #[inline]
    fn fin_bit(dir: usize) -> u8 {
        flag::FIN_FWD << dir
    }

    /// Window scales are settled once the SYN-ACK has been seen.
    #[inline]
    fn scale(&self, dir: usize) -> u8 {
        match self.state {
            FlowState::TcpSynSent | FlowState::TcpSynSent2 => 0,
            _ => self.wscale[dir],
        }
    }

    /// Largest window `dir` advertised, in bytes.
    #[inline]
    fn maxwin_bytes(&self, dir: usize) -> u32 {
        (self.maxwin[dir] as u32) << self.scale(dir)
    }

    /// A side is known once any of its packets was accepted.
    #[inline]
    fn known(&self, dir: usize) -> bool {
        self.end[dir] != 0 || self.maxwin[dir] != 0
    }

    /// (Re)start tracking `dir` from its SYN.
    fn init_side(&mut self, dir: usize, seg: &TcpSegment) {
        self.end[dir] = seg.end();
        self.maxwin[dir] = seg.window;
        self.wscale[dir] = seg.window_scale.map_or(NO_SCALE, |s| s.min(MAX_SCALE));
    }

    /// First SYN-ACK: scaling is on only if both SYNs offered it (RFC 7323). The SYN
    /// windows kept so far are unscaled; convert them to units of the final scale.
    fn settle_scaling(&mut self) {
        if self.wscale[0] == NO_SCALE || self.wscale[1] == NO_SCALE {
            self.wscale = [0; 2];
        }
        for dir in 0..2 {
            self.maxwin[dir] = ceil_shift(self.maxwin[dir] as u32, self.wscale[dir]);
        }
    }

    /// Take in the window of a segment from `dir`: SYN windows are never scaled.
    fn absorb_window(&mut self, dir: usize, seg: &TcpSegment) {
        let units = if seg.flags.syn() {
            ceil_shift(seg.window as u32, self.scale(dir))
        } else {
            seg.window
        };
        self.maxwin[dir] = self.maxwin[dir].max(units);
        if after(seg.end(), self.end[dir]) {
            self.end[dir] = seg.end();
        }
    }

    /// Track one packet from canonical direction `dir`.
    pub fn step(&mut self, dir: usize, seg: &TcpSegment) -> TcpStep {
        use FlowState::*;
        let f = match valid_flags(seg.flags) {
            Ok(f) => f,
            Err(reason) => return TcpStep::Invalid(reason),
        };
        let (s, r) = (dir, dir ^ 1);
        let from_initiator = s == self.initiator();
        let step = match self.state {
            TcpSynSent if from_initiator => match f {
                SYN => {
                    // Retransmission, or a new ISN after the client gave up: Linux accepts
                    // both and re-learns the sender.
                    if seg.end() != self.end[s] {
                        self.init_side(s, seg);
                    }
                    TcpStep::Accept
                }
                RST | RST_ACK => self.rst(s, r, seg),
                _ => TcpStep::Invalid(InvalidReason::TcpUnexpected),
            },
            TcpSynSent => match f {
                SYN_ACK => {
                    if seg.ack != self.end[r] {
                        return TcpStep::Invalid(InvalidReason::TcpStaleSynAck);
                    }
                    self.init_side(s, seg);
                    self.state = TcpSynRecv;
                    self.settle_scaling();
                    TcpStep::Accept
                }
                SYN => {
                    // Simultaneous open.
                    self.init_side(s, seg);
                    self.flags |= flag::SIMOPEN;
                    self.state = TcpSynSent2;
                    TcpStep::Accept
                }
                // RFC 9293: in SYN-SENT a reset is acceptable only if it acknowledges the SYN.
                RST_ACK if seg.ack == self.end[r] => {
                    self.state = TcpClose;
                    TcpStep::Accept
                }
                RST | RST_ACK => TcpStep::Invalid(InvalidReason::TcpRstOutOfWindow),
                _ => TcpStep::Invalid(InvalidReason::TcpUnexpected),
            },
            TcpSynSent2 => match f {
                SYN => {
                    if seg.end() != self.end[s] {
                        self.init_side(s, seg);
                    }
                    TcpStep::Accept
                }
                SYN_ACK => {
                    if seg.ack != self.end[r] {
                        return TcpStep::Invalid(InvalidReason::TcpStaleSynAck);
                    }
                    self.state = TcpSynRecv;
                    self.settle_scaling();
                    self.absorb_window(s, seg);
                    TcpStep::Accept
                }
                RST | RST_ACK => self.rst(s, r, seg),
                _ => TcpStep::Invalid(InvalidReason::TcpUnexpected),
            },
            TcpSynRecv => match f {
                // A retransmitted SYN-ACK (or, in a simultaneous open, the other side's).
                SYN_ACK if seg.ack == self.end[r] && seg.end() == self.end[s] => {
                    self.absorb_window(s, seg);
                    TcpStep::Accept
                }
                SYN_ACK => TcpStep::Invalid(InvalidReason::TcpStaleSynAck),
                SYN if from_initiator && seg.end() == self.end[s] => TcpStep::Accept,
                SYN => TcpStep::Invalid(InvalidReason::TcpUnexpected),
                RST | RST_ACK => self.rst(s, r, seg),
                _ => {
                    if let Err(reason) = self.in_window(s, r, seg) {
                        return TcpStep::Invalid(reason);
                    }
                    if from_initiator || self.flags & flag::SIMOPEN != 0 {
                        self.state = TcpEstablished;
                        self.close_transitions(s, seg);
                    }
                    TcpStep::Accept
                }
            },
            TcpEstablished | TcpFinWait | TcpCloseWait | TcpLastAck | TcpTimeWait | TcpClose => {
                match f {
                    SYN if matches!(self.state, TcpTimeWait | TcpClose) => TcpStep::Reopen,
                    SYN => TcpStep::Invalid(InvalidReason::TcpSynOnEstablished),
                    SYN_ACK => TcpStep::Invalid(InvalidReason::TcpStaleSynAck),
                    RST | RST_ACK if self.state == TcpClose => TcpStep::Accept,
                    RST | RST_ACK => self.rst(s, r, seg),
                    _ => {
                        if let Err(reason) = self.in_window(s, r, seg) {
                            return TcpStep::Invalid(reason);
                        }
                        self.close_transitions(s, seg);
                        TcpStep::Accept
                    }
                }
            }
            _ => TcpStep::Invalid(InvalidReason::TcpUnexpected),
        };
        if step == TcpStep::Accept && !from_initiator {
            self.flags |= flag::REPLIED;
        }
        step
    }

    /// RFC 5961 spirit: an RST closes only at the exact next sequence number of its
    /// sender; inside the window it is answered by a challenge ACK (invalid here),
    /// outside it is ignored (invalid).
    fn rst(&mut self, s: usize, r: usize, seg: &TcpSegment) -> TcpStep {
        let exact = seg.seq == self.end[s];
        let unknown = self.flags & flag::LIBERAL != 0 && !self.known(s);
        if exact || unknown {
            self.state = FlowState::TcpClose;
            return TcpStep::Accept;
        }
        let window = self.maxwin_bytes(r).max(1);
        let lo = self.end[s].wrapping_sub(window);
        let hi = self.end[s].wrapping_add(window);
        if after(seg.seq, lo) && before_eq(seg.seq, hi) {
            TcpStep::Invalid(InvalidReason::TcpRstInexact)
        } else {
            TcpStep::Invalid(InvalidReason::TcpRstOutOfWindow)
        }
    }

    /// Linux's `tcp_in_window`, with `end[s] + maxwin[r]` standing in for `td_maxend`.
    /// On success, learns the segment's end and window.
    fn in_window(&mut self, s: usize, r: usize, seg: &TcpSegment) -> Result<(), InvalidReason> {
        let end = seg.end();
        if self.flags & flag::LIBERAL == 0 {
            let ack = if seg.flags.ack() {
                seg.ack
            } else {
                self.end[r]
            };
            let rwin = self.maxwin_bytes(r).max(1);
            let ack_window = self.maxwin_bytes(s).max(MIN_ACK_WINDOW);
            let ok = before_eq(seg.seq, self.end[s].wrapping_add(rwin))
                && !after(self.end[s].wrapping_sub(rwin), end)
                && before_eq(ack, self.end[r])
                && !after(self.end[r].wrapping_sub(ack_window), ack);
            if !ok {
                return Err(InvalidReason::TcpOutOfWindow);
            }
        }
        self.absorb_window(s, seg);
        Ok(())
    }

    /// Teardown, direction-aware: the first FIN's sender is the closer.
    fn close_transitions(&mut self, s: usize, seg: &TcpSegment) {
        use FlowState::*;
        let r = s ^ 1;
        let fin = seg.flags.fin();
        let acks_peer_fin =
            seg.flags.ack() && self.flags & Self::fin_bit(r) != 0 && seg.ack == self.end[r];
        match self.state {
            TcpEstablished if fin => {
                self.flags |= Self::fin_bit(s) | if s == 1 { flag::CLOSER_REV } else { 0 };
                self.state = TcpFinWait;
            }
            TcpFinWait | TcpCloseWait if s != self.closer() && fin => {
                self.flags |= Self::fin_bit(s);
                self.state = TcpLastAck;
            }
            TcpFinWait if s != self.closer() && acks_peer_fin => self.state = TcpCloseWait,
            TcpLastAck if s == self.closer() && acks_peer_fin => self.state = TcpTimeWait,
            _ => {}
        }
    }
}

/// The SYN/ACK/FIN/RST part of the flags, if it is a combination real stacks send
/// (Linux's `tcp_valid_flags`, ignoring PSH/URG/ECE/CWR).
#[inline]
fn valid_flags(flags: TcpFlags) -> Result<u8, InvalidReason> {
    let f = flags.0 & (SYN | ACK | FIN | RST);
    match f {
        SYN | SYN_ACK | RST | RST_ACK | FIN_ACK | ACK => Ok(f),
        _ => Err(InvalidReason::TcpBadFlags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scale_option_parsing() {
        // MSS, NOP, WS=7, end.
        assert_eq!(window_scale_option(&[2, 4, 5, 180, 1, 3, 3, 7, 0]), Some(7));
        assert_eq!(window_scale_option(&[2, 4, 5, 180, 0, 3, 3, 7]), None);
        // Truncated / malformed lists never panic.
        assert_eq!(window_scale_option(&[3, 3]), None);
        assert_eq!(window_scale_option(&[2, 0, 3, 3, 1]), None);
        assert_eq!(window_scale_option(&[2, 40]), None);
        assert_eq!(window_scale_option(&[]), None);
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(after(5, u32::MAX - 5));
        assert!(before_eq(u32::MAX - 5, 5));
        assert!(before_eq(7, 7));
        assert_eq!(ceil_shift(65535, 7), 512);
        assert_eq!(ceil_shift(1, 14), 1);
        assert_eq!(ceil_shift(0, 3), 0);
    }

    #[test]
    fn scaled_window_bounds_data() {
        let syn = TcpSegment {
            flags: TcpFlags(SYN),
            seq: 1000,
            window: 64240,
            window_scale: Some(7),
            ..Default::default()
        };
        let mut t = TcpCtx::open(0, &syn, false).unwrap();
        let synack = TcpSegment {
            flags: TcpFlags(SYN_ACK),
            seq: 5000,
            ack: 1001,
            window: 65160,
            window_scale: Some(7),
            ..Default::default()
        };
        assert_eq!(t.step(1, &synack), TcpStep::Accept);
        assert_eq!(t.wscale, [7, 7]);
        // The SYN-ACK's 65160 bytes become ceil(65160 / 128) = 510 units of 128 bytes.
        assert_eq!(t.maxwin_bytes(1), 510 * 128);
        let window = t.maxwin_bytes(1);
        let ack = |seq: u32, len: u32| TcpSegment {
            flags: TcpFlags(ACK),
            seq,
            ack: 5001,
            window: 502,
            payload_len: len,
            ..Default::default()
        };
        assert_eq!(t.step(0, &ack(1001, 0)), TcpStep::Accept);
        assert_eq!(t.state, FlowState::TcpEstablished);
        // Data starting one scaled window ahead is fine, far beyond it is not.
        assert_eq!(t.step(0, &ack(1001 + window, 100)), TcpStep::Accept);
        assert_eq!(
            t.step(0, &ack(1001 + window * 4, 100)),
            TcpStep::Invalid(InvalidReason::TcpOutOfWindow)
        );
    }
}
