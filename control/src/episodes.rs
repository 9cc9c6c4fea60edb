//! Attack episodes from the guard's counters: one `guard` event when a port starts being
//! dropped for a reason (spoofing, rogue DHCP/RA, MAC flood, throttling, storm control)
//! and one when it has been quiet for [`QUIET`], with the packets dropped and the peak
//! rate — never one record per packet. The supervisor calls [`Episodes::check`] once a
//! second; it reads the ports' guard counters (summed over workers) from shared memory,
//! so its cost follows the number of ports, not the traffic.

use rampart_shm::{PolicyImage, Segment};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An episode ends after this long without a drop of its kind.
pub const QUIET: Duration = Duration::from_secs(3);
/// How often the counters are read.
pub const PERIOD: Duration = Duration::from_secs(1);

struct Episode {
    started: String,
    since: Instant,
    /// The counter when it started (its drops are what it added since).
    base: u64,
    peak_pps: f64,
    last_drop: Instant,
}

/// One counter's history.
#[derive(Default)]
struct Track {
    last: u64,
    open: Option<Episode>,
}

/// The episodes of every (port, reason).
#[derive(Default)]
pub struct Episodes {
    tracks: BTreeMap<(u16, &'static str), Track>,
    last_check: Option<Instant>,
}

impl Episodes {
    /// Reads the counters if [`PERIOD`] has passed; returns the events of episodes that
    /// started or ended.
    pub fn check(&mut self, seg: &Segment, image: &PolicyImage, workers: usize, now: Instant) -> Vec<Value> {
        let elapsed = match self.last_check {
            Some(t) if now.duration_since(t) < PERIOD => return Vec::new(),
            Some(t) => now.duration_since(t),
            None => PERIOD,
        };
        self.last_check = Some(now);
        let mut totals = Vec::new();
        for p in &image.ports {
            let sum: rampart_shm::GuardCounterValues = seg.workers[..workers].iter().map(|w| w.guard[p.slot as usize].read()).sum();
            for (field, value) in sum.fields() {
                totals.push((p.slot, p.name.as_str(), field.name, value));
            }
        }
        self.update(totals, elapsed, now, &crate::events::now())
    }

    /// One reading: `(slot, port name, reason, cumulative count)` for each counter.
    fn update<'a>(&mut self, totals: impl IntoIterator<Item = (u16, &'a str, &'static str, u64)>, elapsed: Duration, now: Instant, ts: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for (slot, port, reason, total) in totals {
            let t = self.tracks.entry((slot, reason)).or_default();
            // Fewer than before: the slot was reused or the dataplane restarted.
            let delta = total.checked_sub(t.last).unwrap_or(total);
            t.last = total;
            if delta > 0 {
                let pps = delta as f64 / elapsed.as_secs_f64().max(1e-3);
                match &mut t.open {
                    Some(e) => {
                        e.peak_pps = e.peak_pps.max(pps);
                        e.last_drop = now;
                    }
                    None => {
                        out.push(event(ts, port, reason, "start", json!({"packets": delta, "pps": pps.round()})));
                        t.open = Some(Episode { started: ts.to_string(), since: now, base: total - delta, peak_pps: pps, last_drop: now });
                    }
                }
            } else if t.open.as_ref().is_some_and(|e| now.duration_since(e.last_drop) >= QUIET) {
                let e = t.open.take().expect("open");
                let secs = e.last_drop.duration_since(e.since).as_secs_f64() + elapsed.as_secs_f64();
                out.push(event(ts, port, reason, "end", json!({"packets": total - e.base, "peak_pps": e.peak_pps.round(), "started": e.started, "duration_s": secs.round()})));
            }
        }
        out
    }
}

fn event(ts: &str, port: &str, reason: &str, state: &str, detail: Value) -> Value {
    let mut guard = json!({"reason": reason, "episode": state});
    if let (Some(g), Some(d)) = (guard.as_object_mut(), detail.as_object()) {
        g.extend(d.clone());
    }
    json!({"timestamp": ts, "event_type": "guard", "in_iface": port, "guard": guard})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_when_an_episode_starts_and_one_when_it_ends() {
        let mut e = Episodes::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let one = |n: u64| vec![(3u16, "guest-d", "spoof_ip", n)];
        let s = PERIOD;
        assert!(e.update(one(0), s, at(0), "t0").is_empty(), "nothing dropped");
        let start = e.update(one(500), s, at(1), "t1");
        assert_eq!(start.len(), 1);
        assert_eq!(start[0]["guard"], json!({"reason": "spoof_ip", "episode": "start", "packets": 500, "pps": 500.0}));
        assert_eq!((start[0]["event_type"].as_str(), start[0]["in_iface"].as_str()), (Some("guard"), Some("guest-d")));
        // The flood goes on, peaking at 2,000/s: no more events.
        assert!(e.update(one(2500), s, at(2), "t2").is_empty());
        assert!(e.update(one(3000), s, at(3), "t3").is_empty());
        // Quiet for less than QUIET: still the same episode.
        assert!(e.update(one(3000), s, at(4), "t4").is_empty());
        assert!(e.update(one(3000), s, at(5), "t5").is_empty());
        let end = e.update(one(3000), s, at(6), "t6");
        assert_eq!(end.len(), 1);
        assert_eq!(end[0]["guard"], json!({"reason": "spoof_ip", "episode": "end", "packets": 3000, "peak_pps": 2000.0, "started": "t1", "duration_s": 3.0}));
        assert!(e.update(one(3000), s, at(7), "t7").is_empty());
        // A new episode later; a counter that went back (a restarted dataplane) is a new baseline.
        assert_eq!(e.update(one(3001), s, at(8), "t8")[0]["guard"]["packets"], 1);
        assert_eq!(e.update(one(40), s, at(9), "t9").len(), 0, "still the open episode");
    }

    /// The episodes' `reason` is the counter's name: the drop reason's label.
    #[test]
    fn guard_counters_are_named_after_their_drop_reasons() {
        use rampart_shm::{DropReason, GuardCounters};
        for f in GuardCounters::FIELDS {
            assert!(DropReason::all().any(|r| r.label() == f.name), "{}", f.name);
        }
    }
}
