//! The event log on a full disk: a 64 KiB tmpfs, filled with records until writes fail,
//! then given room again. Whatever happens, the file holds whole JSON lines only, the
//! count of records written is the count of lines, and after the disk has room again a
//! `loss` record says exactly how many records were not written: every record queued is
//! either a line in the file or counted in a loss record, and the chain verifies: the
//! sequence numbers run on without a gap, the loss record where the loss happened.
//!
//! Mounting needs root (CI runs as root); elsewhere the test is skipped with a message,
//! and under `CI=true` it fails instead.

use rampart_control::chain::{self, Key};
use rampart_control::events::EventLog;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read(path).unwrap();
    assert!(text.is_empty() || text.ends_with(b"\n"), "the file ends with a whole record");
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("a torn or invalid line ({e}): {}", String::from_utf8_lossy(l))))
        .collect()
}

#[test]
fn a_full_disk_loses_no_record_silently_and_never_leaves_a_torn_one() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "this test mounts a tmpfs and needs root");
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rampart-fulldisk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"]).arg(&dir).status().unwrap();
    assert!(st.success(), "mount -t tmpfs failed");
    let mnt = Tmpfs(dir.clone());
    // Room to give back later.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 24 << 10]).unwrap();
    let path = dir.join("eve.json");
    let key = Key::random().unwrap();
    let mut log = EventLog::open(&path, key.clone()).unwrap();

    let record = |i: u64| json!({"timestamp": "2026-12-02T00:00:00.000000+0000", "event_type": "drop", "seq": i, "pad": "x".repeat(100 + (i % 37) as usize)});
    let mut queued = 0u64;
    // Until writes fail, and a while after (each tick's records are lost and counted).
    let mut ticks_failing = 0;
    while ticks_failing < 5 {
        for _ in 0..7 {
            log.write(&record(queued));
            queued += 1;
        }
        log.flush();
        if log.write_errors > 0 {
            ticks_failing += 1;
        }
        assert!(queued < 100_000, "a 64 KiB filesystem never filled up");
    }
    let on_disk = lines(&path);
    assert_eq!(on_disk.len() as u64, log.written, "records counted as written are the whole lines in the file");
    // (written counts the file's opening checkpoint too)
    assert!(log.unwritten > 0 && log.written + log.unwritten == queued + 1, "every record is written or counted: {} + {} of {queued} + 1", log.written, log.unwritten);
    let lost = log.unwritten;

    // Room again: the next write starts with a loss record for exactly what was lost.
    std::fs::remove_file(&filler).unwrap();
    log.write(&record(queued));
    queued += 1;
    log.flush();
    let on_disk = lines(&path);
    assert_eq!(on_disk.len() as u64, log.written);
    assert_eq!(log.unwritten, 0);
    let loss: Vec<&Value> = on_disk.iter().filter(|v| v["event_type"] == "loss").collect();
    assert_eq!(loss.len(), 1, "one loss record: {loss:?}");
    assert_eq!(loss[0]["loss"]["records"].as_u64(), Some(lost));
    assert!(loss[0]["loss"]["cause"].as_str().unwrap().contains("No space left"), "{}", loss[0]);
    let drops = on_disk.iter().filter(|v| v["event_type"] == "drop").count() as u64;
    assert_eq!(drops + lost, queued, "each record is a line or counted in the loss record");
    // The records that made it are in order, and the newest one is the last line.
    let seqs: Vec<u64> = on_disk.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(seqs.last(), Some(&(queued - 1)));
    // The chain holds across the failed writes: contiguous numbers, every MAC checks out.
    let numbers: Vec<u64> = on_disk.iter().map(|v| v["rampart"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=on_disk.len() as u64).collect::<Vec<_>>());
    let report = chain::verify(&key, std::slice::from_ref(&path), Some(log.head())).unwrap();
    assert!(report.ok() && report.verified == on_disk.len() as u64, "{report:?}");
    drop(log);
    drop(mnt);
}
