//! Packet-sequence tests of TCP tracking, in the spirit of Linux's conntrack packetdrill
//! scripts: every packet goes through the same lookup → track / insert step the
//! dataplane uses.

mod common;

use common::*;
use rampart_flow::{FlowState::*, FlowTable, FlowTableConfig, InsertError, InvalidReason, Outcome};
use rampart_packet::FlowKey;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn a_to_b() -> FlowKey {
    key4(A, 40000, B, 80, TCP)
}
fn b_to_a() -> FlowKey {
    a_to_b().reversed()
}

/// A: ISN 1000, B: ISN 5000, both scale 7; returns after the handshake.
fn established(t: &FlowTable) {
    assert_eq!(
        send(t, &a_to_b(), &syn(1000, 64240, Some(7)), 0)
            .tracked()
            .state,
        TcpSynSent
    );
    assert_eq!(
        send(t, &b_to_a(), &synack(5000, 1001, 65160, Some(7)), 10)
            .tracked()
            .state,
        TcpSynRecv
    );
    let ack = send(t, &a_to_b(), &seg(ACK, 1001, 5001, 502, 0), 20).tracked();
    assert_eq!((ack.state, ack.outcome), (TcpEstablished, Outcome::Valid));
}

fn invalid(sent: Sent) -> InvalidReason {
    match sent.tracked().outcome {
        Outcome::Invalid(r) => r,
        Outcome::Valid => panic!("expected an invalid packet"),
    }
}

#[test]
fn three_way_handshake() {
    let t = table(64);
    let first = send(&t, &a_to_b(), &syn(1000, 64240, Some(7)), 0);
    assert!(matches!(first, Sent::Tracked { created: true, .. }));
    let synack = send(&t, &b_to_a(), &synack(5000, 1001, 65160, Some(7)), 10).tracked();
    assert!(synack.reply);
    assert_eq!(synack.state, TcpSynRecv);
    // An ACK from the responder does not complete the handshake.
    assert_eq!(
        send(&t, &b_to_a(), &seg(ACK, 5001, 1001, 509, 0), 15)
            .tracked()
            .state,
        TcpSynRecv
    );
    assert_eq!(
        send(&t, &a_to_b(), &seg(ACK, 1001, 5001, 502, 0), 20)
            .tracked()
            .state,
        TcpEstablished
    );
    assert_eq!(t.len(), 1, "both directions share one entry");
    let r = record(&t, &a_to_b(), 20).unwrap();
    assert_eq!(r.packets_from_initiator(), 2);
    assert_eq!(r.packets_from_responder(), 2);
    assert_eq!(t.stats().invalid, 0);
}

#[test]
fn simultaneous_open() {
    let t = table(64);
    assert_eq!(
        send(&t, &a_to_b(), &syn(1000, 64240, None), 0)
            .tracked()
            .state,
        TcpSynSent
    );
    // B's SYN crosses A's.
    assert_eq!(
        send(&t, &b_to_a(), &syn(5000, 65535, None), 1)
            .tracked()
            .state,
        TcpSynSent2
    );
    // Each side answers the other's SYN with a SYN-ACK.
    assert_eq!(
        send(&t, &a_to_b(), &synack(1000, 5001, 64240, None), 2)
            .tracked()
            .state,
        TcpSynRecv
    );
    let b_synack = send(&t, &b_to_a(), &synack(5000, 1001, 65535, None), 3).tracked();
    assert_eq!(
        (b_synack.state, b_synack.outcome),
        (TcpSynRecv, Outcome::Valid)
    );
    // Either side's ACK completes it.
    assert_eq!(
        send(&t, &b_to_a(), &seg(ACK, 5001, 1001, 65535, 0), 4)
            .tracked()
            .state,
        TcpEstablished
    );
    assert_eq!(
        send(&t, &a_to_b(), &seg(ACK, 1001, 5001, 64240, 0), 5)
            .tracked()
            .state,
        TcpEstablished
    );
    assert_eq!(t.stats().invalid, 0);
    // A SYN-ACK that acknowledges nothing we saw is stale even here.
    let t = table(64);
    send(&t, &a_to_b(), &syn(1000, 64240, None), 0);
    send(&t, &b_to_a(), &syn(5000, 65535, None), 1);
    assert_eq!(
        invalid(send(&t, &a_to_b(), &synack(1000, 7777, 64240, None), 2)),
        InvalidReason::TcpStaleSynAck
    );
}

#[test]
fn data_both_ways() {
    let t = table(64);
    established(&t);
    // A sends 1000 bytes, B acknowledges and answers with 500, A acknowledges.
    assert!(
        send(&t, &a_to_b(), &seg(ACK | PSH, 1001, 5001, 502, 1000), 30)
            .tracked()
            .outcome
            .is_valid()
    );
    assert!(
        send(&t, &b_to_a(), &seg(ACK | PSH, 5001, 2001, 509, 500), 40)
            .tracked()
            .outcome
            .is_valid()
    );
    assert!(send(&t, &a_to_b(), &seg(ACK, 2001, 5501, 502, 0), 50)
        .tracked()
        .outcome
        .is_valid());
    // A retransmission of old data is fine.
    assert!(
        send(&t, &a_to_b(), &seg(ACK | PSH, 1001, 5501, 502, 1000), 60)
            .tracked()
            .outcome
            .is_valid()
    );
    let r = record(&t, &a_to_b(), 60).unwrap();
    assert_eq!(r.state, TcpEstablished);
    assert_eq!(
        (r.packets_from_initiator(), r.packets_from_responder()),
        (5, 2)
    );
    assert_eq!(r.bytes_from_initiator(), 40 + 40 + 1040 + 40 + 1040);
    assert_eq!(r.bytes_from_responder(), 40 + 540);
    // Acknowledging data B never sent, or sending far beyond B's window, is invalid.
    assert_eq!(
        invalid(send(&t, &a_to_b(), &seg(ACK, 2001, 9000, 502, 0), 70)),
        InvalidReason::TcpOutOfWindow
    );
    assert_eq!(
        invalid(send(
            &t,
            &a_to_b(),
            &seg(ACK, 2001 + 10_000_000, 5501, 502, 10),
            70
        )),
        InvalidReason::TcpOutOfWindow
    );
    // Invalid packets do not count.
    assert_eq!(
        record(&t, &a_to_b(), 70).unwrap().packets_from_initiator(),
        5
    );
    assert_eq!(t.stats().invalid, 2);
}

#[test]
fn fin_teardown_from_initiator() {
    let t = table(64);
    established(&t);
    assert_eq!(
        send(&t, &a_to_b(), &seg(FIN | ACK, 1001, 5001, 502, 0), 30)
            .tracked()
            .state,
        TcpFinWait
    );
    // B acknowledges A's FIN (ack = 1002) but keeps its half open.
    assert_eq!(
        send(&t, &b_to_a(), &seg(ACK, 5001, 1002, 509, 0), 40)
            .tracked()
            .state,
        TcpCloseWait
    );
    assert_eq!(
        send(&t, &b_to_a(), &seg(ACK | PSH, 5001, 1002, 509, 100), 45)
            .tracked()
            .state,
        TcpCloseWait
    );
    assert_eq!(
        send(&t, &b_to_a(), &seg(FIN | ACK, 5101, 1002, 509, 0), 50)
            .tracked()
            .state,
        TcpLastAck
    );
    assert_eq!(
        send(&t, &a_to_b(), &seg(ACK, 1002, 5102, 502, 0), 60)
            .tracked()
            .state,
        TcpTimeWait
    );
    assert_eq!(t.stats().invalid, 0);
}

#[test]
fn fin_teardown_from_responder() {
    let t = table(64);
    established(&t);
    // B closes first, with FIN+ACK; A answers FIN+ACK acknowledging it; B's last ACK.
    assert_eq!(
        send(&t, &b_to_a(), &seg(FIN | ACK, 5001, 1001, 509, 0), 30)
            .tracked()
            .state,
        TcpFinWait
    );
    // B retransmitting its FIN changes nothing.
    assert_eq!(
        send(&t, &b_to_a(), &seg(FIN | ACK, 5001, 1001, 509, 0), 31)
            .tracked()
            .state,
        TcpFinWait
    );
    assert_eq!(
        send(&t, &a_to_b(), &seg(FIN | ACK, 1001, 5002, 502, 0), 40)
            .tracked()
            .state,
        TcpLastAck
    );
    // A's ACK of its own side is not the last ACK: B (the closer) must acknowledge A's FIN.
    assert_eq!(
        send(&t, &b_to_a(), &seg(ACK, 5002, 1002, 509, 0), 50)
            .tracked()
            .state,
        TcpTimeWait
    );
    // TIME_WAIT lives on the 120 s timer, not the 5-day one.
    assert_eq!(sweep(&t, 50 + 119 * SEC).len(), 0);
    let ended = sweep(&t, 50 + 121 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.state, TcpTimeWait);
}

#[test]
fn rst_with_exact_sequence_closes() {
    let t = table(64);
    established(&t);
    send(&t, &a_to_b(), &seg(ACK | PSH, 1001, 5001, 502, 100), 30);
    // B resets at its next sequence number.
    let rst = send(&t, &b_to_a(), &seg(RST | ACK, 5001, 1101, 0, 0), 40).tracked();
    assert_eq!((rst.state, rst.outcome), (TcpClose, Outcome::Valid));
    // CLOSE lives 10 s.
    assert_eq!(sweep(&t, 40 + 9 * SEC).len(), 0);
    assert_eq!(sweep(&t, 40 + 11 * SEC)[0].record.state, TcpClose);

    // An initiator's RST (no ACK) at its exact sequence closes too.
    let t = table(64);
    established(&t);
    assert_eq!(
        send(&t, &a_to_b(), &seg(RST, 1001, 0, 0, 0), 30)
            .tracked()
            .state,
        TcpClose
    );

    // A refused connection: RST+ACK acknowledging the SYN.
    let t = table(64);
    send(&t, &a_to_b(), &syn(1000, 64240, None), 0);
    assert_eq!(
        invalid(send(&t, &b_to_a(), &seg(RST | ACK, 0, 999, 0, 0), 1)),
        InvalidReason::TcpRstOutOfWindow
    );
    assert_eq!(
        send(&t, &b_to_a(), &seg(RST | ACK, 0, 1001, 0, 0), 2)
            .tracked()
            .state,
        TcpClose
    );
}

#[test]
fn out_of_window_rst_is_ignored_and_counted() {
    let t = table(64);
    established(&t);
    let far = send(&t, &b_to_a(), &seg(RST, 5001 + 50_000_000, 0, 0, 0), 30).tracked();
    assert_eq!(
        far.outcome,
        Outcome::Invalid(InvalidReason::TcpRstOutOfWindow)
    );
    assert_eq!(far.state, TcpEstablished);
    // In the window but not exact: the endpoint sends a challenge ACK; conntrack keeps
    // the connection (Linux's conntrack_rst_invalid).
    let near = send(&t, &b_to_a(), &seg(RST, 5001 + 1000, 0, 0, 0), 31).tracked();
    assert_eq!(near.outcome, Outcome::Invalid(InvalidReason::TcpRstInexact));
    assert_eq!(t.stats().invalid, 2);
    // The connection carries on.
    assert!(
        send(&t, &a_to_b(), &seg(ACK | PSH, 1001, 5001, 502, 10), 40)
            .tracked()
            .outcome
            .is_valid()
    );
    assert_eq!(record(&t, &a_to_b(), 40).unwrap().state, TcpEstablished);
}

#[test]
fn syn_on_established_connection() {
    let t = table(64);
    established(&t);
    // A rebooted and retries with a new ISN: invalid, the connection stays.
    let again = send(&t, &a_to_b(), &syn(777_777, 64240, Some(7)), 30).tracked();
    assert_eq!(
        again.outcome,
        Outcome::Invalid(InvalidReason::TcpSynOnEstablished)
    );
    assert_eq!(again.state, TcpEstablished);
    // B answers with a challenge ACK (valid), A resets at the acknowledged sequence…
    assert!(send(&t, &b_to_a(), &seg(ACK, 5001, 1001, 509, 0), 31)
        .tracked()
        .outcome
        .is_valid());
    assert_eq!(
        send(&t, &a_to_b(), &seg(RST, 1001, 0, 0, 0), 32)
            .tracked()
            .state,
        TcpClose
    );
    // …and its next SYN reopens: the old flow ends, a new one starts.
    let reopen = send(&t, &a_to_b(), &syn(777_777, 64240, Some(7)), 33);
    assert!(matches!(reopen, Sent::Tracked { created: true, .. }));
    assert_eq!(reopen.tracked().state, TcpSynSent);
    assert_eq!(t.stats().reopened, 1);
    assert_eq!(t.len(), 1);
    assert_eq!(
        record(&t, &a_to_b(), 33).unwrap().packets_from_initiator(),
        1
    );
}

#[test]
fn stale_syn_ack() {
    let t = table(64);
    send(&t, &a_to_b(), &syn(1000, 64240, None), 0);
    // A SYN-ACK for some older attempt (wrong ack) is invalid and changes nothing.
    let stale = send(&t, &b_to_a(), &synack(9000, 555, 65535, None), 1).tracked();
    assert_eq!(
        stale.outcome,
        Outcome::Invalid(InvalidReason::TcpStaleSynAck)
    );
    assert_eq!(stale.state, TcpSynSent);
    // The right one is accepted.
    assert_eq!(
        send(&t, &b_to_a(), &synack(5000, 1001, 65535, None), 2)
            .tracked()
            .state,
        TcpSynRecv
    );
    // A retransmitted SYN-ACK is fine; a different one is not.
    assert!(send(&t, &b_to_a(), &synack(5000, 1001, 65535, None), 3)
        .tracked()
        .outcome
        .is_valid());
    assert_eq!(
        invalid(send(&t, &b_to_a(), &synack(6000, 1001, 65535, None), 4)),
        InvalidReason::TcpStaleSynAck
    );
    send(&t, &a_to_b(), &seg(ACK, 1001, 5001, 65535, 0), 5);
    // After the handshake any SYN-ACK is stale (reused).
    assert_eq!(
        invalid(send(&t, &b_to_a(), &synack(5000, 1001, 65535, None), 6)),
        InvalidReason::TcpStaleSynAck
    );
    assert_eq!(record(&t, &a_to_b(), 6).unwrap().state, TcpEstablished);
}

#[test]
fn retransmitted_syn() {
    let t = table(64);
    send(&t, &a_to_b(), &syn(1000, 64240, None), 0);
    let again = send(&t, &a_to_b(), &syn(1000, 64240, None), 1000);
    assert!(matches!(again, Sent::Tracked { created: false, .. }));
    assert_eq!(
        (again.tracked().state, again.tracked().outcome),
        (TcpSynSent, Outcome::Valid)
    );
    // The client gave up and retries with a new ISN: re-learnt, the SYN-ACK must match it.
    send(&t, &a_to_b(), &syn(2000, 64240, None), 3000);
    assert_eq!(
        invalid(send(&t, &b_to_a(), &synack(5000, 1001, 65535, None), 3001)),
        InvalidReason::TcpStaleSynAck
    );
    assert_eq!(
        send(&t, &b_to_a(), &synack(5000, 2001, 65535, None), 3002)
            .tracked()
            .state,
        TcpSynRecv
    );
    assert_eq!(
        record(&t, &a_to_b(), 3002)
            .unwrap()
            .packets_from_initiator(),
        3
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn first_packet_must_be_a_syn() {
    let t = table(64);
    assert_eq!(
        send(&t, &a_to_b(), &seg(ACK, 1, 1, 100, 0), 0),
        Sent::Refused(InsertError::Invalid(InvalidReason::TcpNotSyn))
    );
    assert_eq!(
        send(&t, &a_to_b(), &seg(SYN | FIN, 1, 0, 100, 0), 0),
        Sent::Refused(InsertError::Invalid(InvalidReason::TcpBadFlags))
    );
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().invalid, 2);
    // Bad flags on a tracked connection.
    established(&t);
    assert_eq!(
        invalid(send(&t, &a_to_b(), &seg(FIN, 1001, 0, 502, 0), 30)),
        InvalidReason::TcpBadFlags
    );
    assert_eq!(
        invalid(send(&t, &a_to_b(), &seg(0, 1001, 0, 502, 0), 30)),
        InvalidReason::TcpBadFlags
    );

    // Mid-stream pickup when allowed: tracked liberally.
    let loose = table_with(FlowTableConfig {
        capacity: 64,
        tcp_loose: true,
        ..Default::default()
    });
    let picked = send(
        &loose,
        &a_to_b(),
        &seg(ACK | PSH, 123_456, 789, 1000, 100),
        0,
    );
    assert!(matches!(picked, Sent::Tracked { created: true, .. }));
    assert_eq!(picked.tracked().state, TcpEstablished);
    assert!(send(&loose, &b_to_a(), &seg(ACK, 789, 123_556, 1000, 0), 1)
        .tracked()
        .outcome
        .is_valid());
}

#[test]
fn ipv6_connection() {
    let t = table(64);
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[15] = 1;
    let mut b = a;
    b[15] = 2;
    let fwd = FlowKey {
        src_addr: a,
        dst_addr: b,
        src_port: 40000,
        dst_port: 443,
        proto: TCP,
        zone: 3,
    };
    send(&t, &fwd, &syn(1, 65535, Some(2)), 0);
    send(&t, &fwd.reversed(), &synack(100, 2, 65535, Some(2)), 1);
    assert_eq!(
        send(&t, &fwd, &seg(ACK, 2, 101, 1000, 0), 2)
            .tracked()
            .state,
        TcpEstablished
    );
    // A v6 key differing only in the upper address bytes is another flow.
    let mut other = fwd;
    other.src_addr[2] = 0xff;
    assert!(t
        .lookup(&t.prepare(&other).0, t.prepare(&other).2)
        .is_none());
    let r = record(&t, &fwd, 2).unwrap();
    assert_eq!(r.key, fwd.canonical().0);
    assert_eq!((r.packets[0] + r.packets[1], t.len()), (3, 1));
}
