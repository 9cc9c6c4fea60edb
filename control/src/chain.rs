//! Tamper evidence for the event log. Every record carries its sequence number and an
//! HMAC-SHA-256 chained over the record before it, as the last members of the line, in its
//! `rampart` object (Rampart's extensions to eve.json): `…,"rampart":{…,"seq":N,"hmac":"<64
//! hex>"}}`. The MAC covers the previous record's MAC and
//! the line up to the opening quote of its own value (so the sequence number too), keyed with
//! a secret kept outside the log directory: whoever can edit the log cannot recompute it.
//!
//! Each file opens with a checkpoint (`"event_type": "chain"`) that states the chain head it
//! continues from, so a log whose oldest files were pruned still verifies from where its kept
//! part starts, and the writer says why it opened the file (new, rotated, reopened, resumed,
//! restarted). [`verify`] walks files in chain order and says where a record was edited,
//! inserted, deleted, moved, or the file cut short; a cut at a record boundary is seen against
//! a chain head recorded elsewhere (the control process sends it to syslog).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// The MAC of one record.
pub type Tag = [u8; 32];

/// The key: 32 random bytes, stored as 64 hex digits and a newline, mode 0600.
#[derive(Clone)]
pub struct Key(HmacSha256);

impl Key {
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        Key(HmacSha256::new_from_slice(bytes).expect("HMAC takes any key length"))
    }

    /// A fresh random key that is stored nowhere (tests, a log that is thrown away).
    pub fn random() -> Result<Key, String> {
        Ok(Key::from_bytes(&random_bytes()?))
    }

    /// Reads the key at `path`; creates it (and its directory, 0700) if it does not exist.
    /// Refused: a key inside the directory of `log` (whoever reads the log could read it),
    /// and a key file that others may read.
    pub fn load_or_create(path: &Path, log: &Path) -> Result<Key, String> {
        let (dir, logdir) = (absolute(path.parent().unwrap_or(Path::new("."))), absolute(log.parent().unwrap_or(Path::new("."))));
        if dir.starts_with(&logdir) {
            return Err(format!(
                "event log key {}: it is inside the event log's directory {} (whoever may read the log could read the key); put it elsewhere (control.event_key)",
                path.display(),
                logdir.display()
            ));
        }
        match std::fs::metadata(path) {
            Ok(_) => Key::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let bytes = random_bytes()?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("creating event log key {}: {e}", path.display()))?;
                writeln!(f, "{}", hex(&bytes)).and_then(|_| f.sync_all()).map_err(|e| format!("writing event log key {}: {e}", path.display()))?;
                eprintln!("rampartctl: created the event log key {} (keep it: rampartctl verify-log needs it)", path.display());
                Ok(Key::from_bytes(&bytes))
            }
            Err(e) => Err(format!("event log key {}: {e}", path.display())),
        }
    }

    /// Reads an existing key (what `verify-log` uses).
    pub fn load(path: &Path) -> Result<Key, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("event log key {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!("event log key {}: others may read it (mode {mode:04o}); chmod 600 it", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("event log key {}: {e}", path.display()))?;
        let bytes = unhex(text.trim().as_bytes()).ok_or_else(|| format!("event log key {}: expected 64 hex digits", path.display()))?;
        Ok(Key::from_bytes(&bytes))
    }

    fn tag(&self, prev: &Tag, signed: &[u8]) -> Tag {
        let mut m = self.0.clone();
        m.update(prev);
        m.update(signed);
        m.finalize().into_bytes().into()
    }
}

fn random_bytes() -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(b)
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    // The directory may not exist yet: resolve the longest existing ancestor.
    let mut base = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part));
        }
        match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                base = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => return p.to_path_buf(),
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(2 * b.len());
    hex_into(b, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Lower-case hex digits of `b`, appended to `out` (no allocation per byte: this is on every
/// record's way to the log).
fn hex_into(b: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &x in b {
        out.extend_from_slice(&[DIGITS[(x >> 4) as usize], DIGITS[(x & 15) as usize]]);
    }
}

pub fn unhex(s: &[u8]) -> Option<Tag> {
    if s.len() != 64 {
        return None;
    }
    // Lower case only: one spelling per MAC, so a changed byte is always a changed MAC.
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut t = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        t[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(t)
}

/// A point in the chain: the sequence number and MAC of a record (seq 0, all zeros: before
/// the first record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub seq: u64,
    pub tag: Tag,
}

impl Link {
    /// `SEQ:HMAC`, as syslog and `rampartctl status` give it.
    pub fn parse(s: &str) -> Option<Link> {
        let (seq, tag) = s.split_once(':')?;
        Some(Link { seq: seq.parse().ok()?, tag: unhex(tag.as_bytes())? })
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, hex(&self.tag))
    }
}

/// The writer's end of the chain.
pub struct Chain {
    key: Key,
    pub head: Link,
}

const SEQ: &[u8] = b"\"seq\":";
const HMAC: &[u8] = b",\"hmac\":\"";
const END: &[u8] = b"\"}}";

/// Writes `record` (a JSON object) to `out` open for its seal: its members, then its
/// `rampart` object (Rampart's extensions, where the seal goes) with its own members, up to
/// where the seal's `"seq":` starts.
pub fn open_record(record: &serde_json::Value, out: &mut Vec<u8>) {
    let empty = serde_json::Map::new();
    let members = record.as_object().unwrap_or(&empty);
    let member = |out: &mut Vec<u8>, k: &String, v: &serde_json::Value| {
        serde_json::to_writer(&mut *out, k).expect("writing to a Vec");
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
        out.push(b',');
    };
    out.push(b'{');
    for (k, v) in members.iter().filter(|(k, _)| *k != "rampart") {
        member(out, k, v);
    }
    out.extend_from_slice(b"\"rampart\":{");
    for (k, v) in members.get("rampart").and_then(|r| r.as_object()).unwrap_or(&empty).iter().filter(|(k, _)| !matches!(k.as_str(), "seq" | "hmac")) {
        member(out, k, v);
    }
}

impl Chain {
    pub fn new(key: Key, head: Link) -> Chain {
        Chain { key, head }
    }

    /// Appends `open` (a record from [`open_record`]) to `out`, sealed as the next record of
    /// the chain, and a newline.
    pub fn seal(&mut self, open: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(open);
        out.extend_from_slice(SEQ);
        let seq = self.head.seq + 1;
        let _ = write!(out, "{seq}");
        out.extend_from_slice(HMAC);
        let tag = self.key.tag(&self.head.tag, &out[start..]);
        hex_into(&tag, out);
        out.extend_from_slice(END);
        out.push(b'\n');
        self.head = Link { seq, tag };
    }

    /// [`open_record`] and [`Chain::seal`] in one.
    pub fn seal_value(&mut self, record: &serde_json::Value, out: &mut Vec<u8>) {
        let mut open = Vec::new();
        open_record(record, &mut open);
        self.seal(&open, out);
    }
}

/// What a sealed line says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub link: Link,
    /// Bytes of the line the MAC covers.
    pub signed: usize,
}

/// Reads the seal at the end of `line` (without its newline).
pub fn sealed(line: &[u8]) -> Option<Sealed> {
    let rest = line.strip_suffix(END)?;
    if rest.len() < 64 {
        return None;
    }
    let (before, tag) = rest.split_at(rest.len() - 64);
    let tag = unhex(tag)?;
    let before = before.strip_suffix(HMAC)?;
    let digits = before.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, seq) = before.split_at(before.len() - digits);
    if !head.ends_with(SEQ) || digits == 0 || digits > 20 {
        return None;
    }
    let seq = std::str::from_utf8(seq).ok()?.parse().ok()?;
    Some(Sealed { link: Link { seq, tag }, signed: rest.len() - 64 })
}

/// The last sealed record of the file at `path`, and how many bytes follow its line (a torn
/// record the writer died in), if the file has one in its last MiB.
pub fn last_link(path: &Path) -> std::io::Result<Option<(Link, u64)>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = (tail.len() - whole) as u64;
    let lines = tail[..whole].split(|&b| b == b'\n');
    Ok(lines.rev().find_map(sealed).map(|s| (s.link, torn)))
}

/// The checkpoint record that opens a file: the chain head it continues from.
pub fn checkpoint(timestamp: &str, opened: &str, head: Link, extra: serde_json::Value) -> serde_json::Value {
    let mut chain = serde_json::json!({"opened": opened, "head": {"seq": head.seq, "hmac": hex(&head.tag)}});
    if let (Some(c), serde_json::Value::Object(extra)) = (chain.as_object_mut(), extra) {
        c.extend(extra);
    }
    serde_json::json!({"timestamp": timestamp, "event_type": "chain", "chain": chain})
}

/// The head a checkpoint line states, if it is one.
fn checkpoint_head(line: &[u8]) -> Option<(Link, String)> {
    const KIND: &[u8] = b"\"event_type\":\"chain\"";
    if !line.windows(KIND.len()).any(|w| w == KIND) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let c = v.get("chain")?;
    let head = c.get("head")?;
    let link = Link { seq: head.get("seq")?.as_u64()?, tag: unhex(head.get("hmac")?.as_str()?.as_bytes())? };
    Some((link, c.get("opened")?.as_str()?.to_string()))
}

/// A finding of [`verify`]: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub what: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Sealed records whose MAC checks out.
    pub verified: u64,
    /// First and last sequence numbers seen in chain order.
    pub first_seq: u64,
    pub last_seq: u64,
    /// The head the kept part continues from (0: the log's own beginning).
    pub starts_after: u64,
    /// Files in chain order.
    pub files: Vec<String>,
    /// Facts that are not tampering: pruned older files, writer restarts.
    pub notes: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A gap in the sequence: records `from..=to` were not where they belong (before `line` of `file`).
struct Gap {
    to: u64,
    file: String,
    line: usize,
}

/// Verifies `files` (in any order; they are put in chain order by their first record) as one
/// chain under `key`. `head`: a chain head recorded elsewhere (syslog), which the log must
/// reach and contain — without it, a log cut cleanly after a record cannot be told from one
/// that ends there.
pub fn verify(key: &Key, files: &[PathBuf], head: Option<Link>) -> Result<Report, String> {
    let mut contents = Vec::new();
    for f in files {
        let data = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        contents.push((f.display().to_string(), data));
    }
    Ok(verify_contents(key, contents, head))
}

/// [`verify`] over file contents already read: (name, bytes).
pub fn verify_contents(key: &Key, files: Vec<(String, Vec<u8>)>, head: Option<Link>) -> Report {
    let mut contents: Vec<(u64, String, Vec<u8>)> = files
        .into_iter()
        .map(|(name, data)| (data.split(|&b| b == b'\n').find_map(sealed).map_or(u64::MAX, |s| s.link.seq), name, data))
        .collect();
    contents.sort_by_key(|c| c.0);
    let mut r = Report { files: contents.iter().map(|c| c.1.clone()).collect(), ..Default::default() };
    let mut v = Verifier { key, expect: None, suspect: None, seen: HashMap::new(), gaps: BTreeMap::new(), report: &mut r };
    for (_, name, data) in &contents {
        v.file(name, data);
    }
    let end = v.expect;
    let head_found = head.map(|h| v.seen.get(&h.seq) == Some(&h.tag));
    let gaps = std::mem::take(&mut v.gaps);
    for (from, g) in gaps {
        let which = if from == g.to { format!("record {from} is") } else { format!("records {from} to {} are", g.to) };
        r.problems.push(Problem { file: g.file, line: g.line, what: format!("{which} missing before this line (deleted)") });
    }
    if let (Some(h), Some(end), Some(found)) = (head, end, head_found) {
        let (file, line) = contents.last().map(|c| (c.1.clone(), c.2.split(|&b| b == b'\n').count())).unwrap_or_default();
        if end.seq < h.seq {
            let what = format!(
                "the log ends at record {}, but the chain head recorded elsewhere is record {}: records {} to {} were cut off (truncated)",
                end.seq,
                h.seq,
                end.seq + 1,
                h.seq
            );
            r.problems.push(Problem { file, line, what });
        } else if !found {
            r.problems.push(Problem { file, line, what: format!("record {} is not the one the chain head recorded elsewhere names ({h})", h.seq) });
        }
    }
    let order = |p: &Problem| (r.files.iter().position(|f| *f == p.file), p.line);
    let mut problems = std::mem::take(&mut r.problems);
    problems.sort_by_key(|p| order(p));
    r.problems = problems;
    r
}

struct Verifier<'a> {
    key: &'a Key,
    /// The last record accepted in chain order (None: before the first file's first record).
    expect: Option<Link>,
    /// A record that failed its MAC, and the head before it: if the next record claims the
    /// same sequence number and verifies against that head, the failed one was inserted.
    suspect: Option<(Link, usize)>,
    /// Sequence number → MAC of every record accepted so far (to place a moved record).
    seen: HashMap<u64, Tag>,
    /// Gaps in the sequence not explained (yet) by a moved record, by their first number.
    gaps: BTreeMap<u64, Gap>,
    report: &'a mut Report,
}

impl Verifier<'_> {
    fn problem(&mut self, file: &str, line: usize, what: String) {
        self.report.problems.push(Problem { file: file.to_string(), line, what });
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let torn = lines.pop().filter(|l| !l.is_empty());
        for (i, line) in lines.iter().enumerate() {
            self.line(name, i + 1, line, i == 0);
        }
        if torn.is_some() {
            self.problem(name, lines.len() + 1, "the file ends inside a record (truncated, or the writer died mid-write)".into());
        }
        if lines.is_empty() && torn.is_none() {
            self.report.notes.push(format!("{name}: empty"));
        }
    }

    fn line(&mut self, file: &str, n: usize, line: &[u8], first: bool) {
        let Some(s) = sealed(line) else {
            return self.problem(file, n, "not a sealed record (inserted, or edited beyond its seal)".into());
        };
        let (key, signed) = (self.key, &line[..s.signed]);
        let verifies = |prev: &Tag| key.tag(prev, signed) == s.link.tag;
        // A checkpoint carries its own predecessor: it anchors the chain wherever it is.
        let checkpoint = checkpoint_head(line);
        if let Some((head, opened)) = &checkpoint {
            let head = *head;
            if verifies(&head.tag) && head.seq + 1 == s.link.seq {
                match self.expect {
                    None => {
                        self.report.starts_after = head.seq;
                        self.report.first_seq = s.link.seq;
                        if head.seq > 0 {
                            self.report.notes.push(format!(
                                "{file}: the kept part starts at record {} (records up to {} are in older files, pruned by rotation or not given)",
                                s.link.seq, head.seq
                            ));
                        }
                    }
                    Some(e) if e == head => {}
                    Some(e) if head.seq > e.seq => {
                        self.gaps.insert(e.seq + 1, Gap { to: head.seq, file: file.to_string(), line: n });
                    }
                    Some(e) => {
                        self.report.notes.push(format!("{file}:{n}: the writer restarted the chain after record {} ({opened}); records up to {} before it stand as they were", head.seq, e.seq));
                        self.seen.clear();
                    }
                }
                return self.accept(s.link);
            }
        } else if first && self.expect.is_some() {
            self.problem(file, n, "the file does not open with a checkpoint: its first records were removed".into());
        }
        let Some(expect) = self.expect else {
            let what = if checkpoint.is_some() {
                "the log's opening checkpoint fails its MAC: edited, or this is not its key (the rest is checked from here)"
            } else {
                "the log does not open with a checkpoint: its first records were removed (the rest is checked from here)"
            };
            self.problem(file, n, what.into());
            self.report.first_seq = s.link.seq;
            self.seen.insert(s.link.seq, s.link.tag);
            self.expect = Some(s.link);
            return;
        };
        let seq = s.link.seq;
        if seq == expect.seq + 1 {
            if verifies(&expect.tag) {
                return self.accept(s.link);
            }
            self.problem(file, n, format!("record {seq} fails its MAC: edited"));
            self.suspect = Some((expect, self.report.problems.len() - 1));
            // Go on from its claimed MAC: an edit leaves the next record's link intact.
            self.expect = Some(s.link);
            return;
        }
        if seq > expect.seq + 1 {
            self.gaps.insert(expect.seq + 1, Gap { to: seq - 1, file: file.to_string(), line: n });
            self.expect = Some(s.link);
            self.seen.insert(seq, s.link.tag);
            return;
        }
        // Behind: a duplicate, a moved record, or the real one after an inserted one.
        if let Some((before, at)) = self.suspect.take() {
            if before.seq + 1 == seq && verifies(&before.tag) {
                let p = &mut self.report.problems[at];
                p.what = format!("a record was inserted here (it claims number {seq}, which the next line holds and verifies)");
                return self.accept(s.link);
            }
        }
        if let Some(gap_from) = self.gaps.range(..=seq).next_back().filter(|(_, g)| g.to >= seq).map(|(f, _)| *f) {
            let prev_ok = self.seen.get(&(seq - 1)).is_some_and(verifies);
            let g = self.gaps.remove(&gap_from).expect("found above");
            let what = if prev_ok { "" } else { " (its own MAC could not be checked: the record before it is missing too)" };
            self.problem(file, n, format!("record {seq} is out of place: it belongs before {}:{} (moved){what}", g.file, g.line));
            if gap_from < seq {
                self.gaps.insert(gap_from, Gap { to: seq - 1, file: g.file.clone(), line: g.line });
            }
            if seq < g.to {
                self.gaps.insert(seq + 1, g);
            }
            self.report.verified += prev_ok as u64;
            return;
        }
        if self.seen.get(&seq) == Some(&s.link.tag) {
            return self.problem(file, n, format!("record {seq} appears again (a copy inserted)"));
        }
        self.problem(file, n, format!("record {seq} is out of order after record {} (inserted or moved)", expect.seq));
    }

    fn accept(&mut self, link: Link) {
        self.report.verified += 1;
        self.report.last_seq = link.seq;
        self.seen.insert(link.seq, link.tag);
        self.expect = Some(link);
        self.suspect = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-chain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A file opening with a checkpoint after `chain`'s head, then `n` records.
    fn file(chain: &mut Chain, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let cp = checkpoint("2026-12-05T00:00:00.000000+00:00", "new", chain.head, serde_json::json!({}));
        chain.seal_value(&cp, &mut out);
        for i in 0..n {
            let rec = serde_json::json!({"timestamp": "2026-12-05T00:00:01.000000+00:00", "event_type": "drop", "n": i});
            chain.seal_value(&rec, &mut out);
        }
        out
    }

    fn lines(data: &[u8]) -> Vec<Vec<u8>> {
        data.split_inclusive(|&b| b == b'\n').map(|l| l.to_vec()).collect()
    }

    fn check(key: &Key, files: &[(&str, Vec<u8>)], head: Option<Link>) -> Report {
        let d = dir(&format!("check-{}", files.iter().map(|f| f.1.len()).sum::<usize>()));
        let paths: Vec<PathBuf> = files.iter().map(|(name, data)| {
            let p = d.join(name);
            std::fs::write(&p, data).unwrap();
            p
        }).collect();
        let r = verify(key, &paths, head).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        r
    }

    fn whats(r: &Report) -> Vec<(usize, String)> {
        r.problems.iter().map(|p| (p.line, p.what.clone())).collect()
    }

    #[test]
    fn a_sealed_record_is_valid_json_and_states_its_number() {
        let mut c = Chain::new(Key::from_bytes(&[7; 32]), Link::default());
        let data = file(&mut c, 2);
        for (i, l) in lines(&data).iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            assert_eq!(v["rampart"]["seq"], i as u64 + 1);
            assert_eq!(sealed(&l[..l.len() - 1]).unwrap().link.seq, i as u64 + 1);
        }
        assert_eq!(c.head.seq, 3);
        // Rampart's own extensions stay beside the seal, in one `rampart` object.
        let mut out = Vec::new();
        c.seal_value(&serde_json::json!({"event_type": "drop", "rampart": {"would": "drop"}}), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["rampart"]["would"].as_str(), v["rampart"]["seq"].as_u64()), (Some("drop"), Some(4)), "{v}");
        assert!(sealed(b"{\"a\":1}").is_none());
        assert!(sealed(b"{\"rampart\":{\"seq\":1,\"hmac\":\"zz\"}}").is_none());
    }

    #[test]
    fn an_intact_log_verifies_and_every_kind_of_edit_is_found_where_it_is() {
        let key = Key::from_bytes(&[1; 32]);
        let data = file(&mut Chain::new(key.clone(), Link::default()), 10);
        let l = lines(&data);
        let join = |ls: &[Vec<u8>]| ls.concat();
        let r = check(&key, &[("eve.json", data.clone())], None);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.verified, r.first_seq, r.last_seq, r.starts_after), (11, 1, 11, 0));

        // Edited: record 5 (line 5) says something else.
        let mut e = l.clone();
        e[4] = String::from_utf8(e[4].clone()).unwrap().replace("\"n\":3", "\"n\":9").into_bytes();
        assert_eq!(whats(&check(&key, &[("eve.json", join(&e))], None)), vec![(5, "record 5 fails its MAC: edited".into())]);

        // Deleted: line 6 (record 6) gone.
        let mut d = l.clone();
        d.remove(5);
        assert_eq!(whats(&check(&key, &[("eve.json", join(&d))], None)), vec![(6, "record 6 is missing before this line (deleted)".into())]);

        // Inserted: a forged record that claims the next number.
        let mut i = l.clone();
        i.insert(3, b"{\"event_type\":\"drop\",\"rampart\":{\"seq\":4,\"hmac\":\"0000000000000000000000000000000000000000000000000000000000000000\"}}\n".to_vec());
        let w = whats(&check(&key, &[("eve.json", join(&i))], None));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, 4);
        assert!(w[0].1.contains("inserted"), "{w:?}");
        // … or a plain record without a seal, or a copy of a real one.
        let mut p = l.clone();
        p.insert(3, b"{\"event_type\":\"drop\"}\n".to_vec());
        assert_eq!(whats(&check(&key, &[("eve.json", join(&p))], None)), vec![(4, "not a sealed record (inserted, or edited beyond its seal)".into())]);
        let mut c = l.clone();
        c.insert(6, l[2].clone());
        assert_eq!(whats(&check(&key, &[("eve.json", join(&c))], None)), vec![(7, "record 3 appears again (a copy inserted)".into())]);

        // Reordered: records 7 and 8 swapped.
        let mut s = l.clone();
        s.swap(6, 7);
        let w = whats(&check(&key, &[("eve.json", join(&s))], None));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, 8);
        assert!(w[0].1.starts_with("record 7 is out of place") && w[0].1.ends_with("eve.json:7 (moved)"), "{w:?}");

        // Truncated inside a record, and cleanly after one (seen against the recorded head).
        let mut t = join(&l);
        t.truncate(t.len() - 20);
        let w = whats(&check(&key, &[("eve.json", t)], None));
        assert_eq!(w, vec![(11, "the file ends inside a record (truncated, or the writer died mid-write)".into())]);
        let head = sealed(&l[10][..l[10].len() - 1]).unwrap().link;
        assert!(check(&key, &[("eve.json", join(&l[..9]))], None).ok(), "without a recorded head a clean cut cannot be seen");
        let w = whats(&check(&key, &[("eve.json", join(&l[..9]))], Some(head)));
        assert_eq!(w.len(), 1);
        assert!(w[0].1.contains("records 10 to 11 were cut off (truncated)"), "{w:?}");
        assert!(check(&key, &[("eve.json", data.clone())], Some(head)).ok());

        // The first records removed: the log no longer opens with its checkpoint.
        let w = whats(&check(&key, &[("eve.json", join(&l[3..]))], None));
        assert_eq!(w.len(), 1);
        assert!(w[0].1.contains("does not open with a checkpoint"), "{w:?}");

        // Another key: nothing verifies.
        let r = check(&Key::from_bytes(&[2; 32]), &[("eve.json", data)], None);
        assert!(!r.ok() && r.verified == 0);
    }

    #[test]
    fn rotated_files_verify_in_chain_order_and_a_pruned_start_is_a_note_not_a_problem() {
        let key = Key::from_bytes(&[3; 32]);
        let mut c = Chain::new(key.clone(), Link::default());
        let (a, b, f) = (file(&mut c, 4), file(&mut c, 4), file(&mut c, 4));
        // Given in any order.
        let r = check(&key, &[("eve.json", f.clone()), ("eve.json.1", b.clone()), ("eve.json.2", a.clone())], None);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.verified, r.first_seq, r.last_seq), (15, 1, 15));
        assert!(r.notes.is_empty());
        // The oldest pruned: the kept part starts after its head.
        let r = check(&key, &[("eve.json", f.clone()), ("eve.json.1", b.clone())], None);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.starts_after, 5);
        assert!(r.notes[0].contains("the kept part starts at record 6"), "{:?}", r.notes);
        // A file in the middle missing: a gap.
        let w = whats(&check(&key, &[("eve.json", f.clone()), ("eve.json.2", a)], None));
        assert_eq!(w, vec![(1, "records 6 to 10 are missing before this line (deleted)".into())]);
        // A file's opening checkpoint removed.
        let w = whats(&check(&key, &[("eve.json", lines(&f)[1..].concat()), ("eve.json.1", b)], None));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|(_, m)| m.contains("does not open with a checkpoint")), "{w:?}");
        assert!(w.iter().any(|(_, m)| m.contains("record 11 is missing")), "{w:?}");
    }

    #[test]
    fn the_key_is_created_private_outside_the_log_directory_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("key");
        let inside = Key::load_or_create(&d.join("log/eventlog.key"), &d.join("log/eve.json"));
        assert!(inside.err().unwrap().contains("inside the event log's directory"));
        let path = d.join("state/eventlog.key");
        let a = Key::load_or_create(&path, &d.join("log/eve.json")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = Key::load(&path).unwrap();
        assert_eq!(a.tag(&[0; 32], b"x"), b.tag(&[0; 32], b"x"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::load(&path).err().unwrap().contains("others may read it"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_link_reads_back_from_its_text() {
        let l = Link { seq: 42, tag: [0xab; 32] };
        assert_eq!(Link::parse(&l.to_string()), Some(l));
        assert_eq!(Link::parse("42:abc"), None);
    }
}
