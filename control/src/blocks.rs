//! The dynamic blocklist (`rampartctl block`, `unblock`, `blocks`): addresses or
//! prefixes cut off from every guest, or from one (`--guest`), for a while or until
//! unblocked.
//!
//! A block is policy: each entry becomes two deny rules at the top of the rule list (from
//! the prefix, and to it, so neither new flows nor the replies of existing ones pass), and
//! a change is published as a new policy generation. So a block takes effect as a reload
//! does: `block` returns once every worker runs the new generation, existing flows of the
//! address are cut at their next packet (or by the dataplane's sweep), and the hit path
//! never looks at the blocklist. Entries are kept in a file (JSON, mode 0600, replaced
//! atomically), so they survive a restart of either process; an entry whose time is up is
//! removed by the control process within a second (logged as `expired`).

use rampart_config::rules::{Cidr, RuleAction, RuleCfg};
use rampart_config::Config;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Canonical prefix (`10.0.0.77/32`, `fd00::/64`).
    pub prefix: String,
    /// Only toward and from this guest (port name); None: every guest.
    #[serde(default)]
    pub guest: Option<String>,
    /// When it was added and when it ends (Unix seconds; None: until unblocked).
    pub since: u64,
    #[serde(default)]
    pub until: Option<u64>,
    /// Who added it (the admin socket peer's uid).
    #[serde(default)]
    pub by_uid: Option<u32>,
}

impl Block {
    /// The rule id prefix of this entry's two rules: `block:PREFIX` or `block:PREFIX@GUEST`.
    pub fn id(&self) -> String {
        match &self.guest {
            Some(g) => format!("block:{}@{g}", self.prefix),
            None => format!("block:{}", self.prefix),
        }
    }
}

/// The blocklist and its file.
#[derive(Debug, Default)]
pub struct Blocklist {
    path: PathBuf,
    pub entries: Vec<Block>,
}

/// Unix time now, seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `10.0.0.7` → `10.0.0.7/32`; a prefix with host bits set is an error.
pub fn canonical(prefix: &str) -> Result<String, String> {
    let c = Cidr::parse(prefix.trim()).ok_or_else(|| format!("{prefix:?} is not an address or prefix (like 10.0.0.7, 10.0.0.0/24 or fd00::/64; host bits zero)"))?;
    let mapped = c.addr[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    Ok(if mapped && c.len >= 96 {
        format!("{}/{}", std::net::Ipv4Addr::new(c.addr[12], c.addr[13], c.addr[14], c.addr[15]), c.len - 96)
    } else {
        format!("{}/{}", std::net::Ipv6Addr::from(c.addr), c.len)
    })
}

impl Blocklist {
    /// The blocklist kept in `path` (none yet: empty). Entries whose time is up are dropped.
    pub fn load(path: &Path) -> Result<Blocklist, String> {
        let entries: Vec<Block> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("blocklist {}: {e} (fix or remove the file)", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("blocklist {}: {e}", path.display())),
        };
        let mut list = Blocklist { path: path.to_path_buf(), entries };
        list.expire(unix_now());
        Ok(list)
    }

    /// Writes the file: a temporary file (0600) renamed over it.
    pub fn save(&self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| format!("blocklist {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(&self.entries).expect("plain data")).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// Adds or replaces (same prefix and guest) an entry.
    pub fn add(&mut self, block: Block) {
        self.entries.retain(|b| (&b.prefix, &b.guest) != (&block.prefix, &block.guest));
        self.entries.push(block);
    }

    /// Removes the entry for `prefix` (and `guest`); returns it.
    pub fn remove(&mut self, prefix: &str, guest: &Option<String>) -> Option<Block> {
        let i = self.entries.iter().position(|b| b.prefix == prefix && &b.guest == guest)?;
        Some(self.entries.remove(i))
    }

    /// Removes the entries whose time is up at `now`; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Block> {
        let (gone, kept): (Vec<Block>, Vec<Block>) = std::mem::take(&mut self.entries).into_iter().partition(|b| b.until.is_some_and(|u| u <= now));
        self.entries = kept;
        gone
    }

    /// `config` with the blocks' deny rules in front of its own rules.
    pub fn applied_to(&self, config: &Config) -> Config {
        if self.entries.is_empty() {
            return config.clone();
        }
        let s = |v: String| Spanned::new(0..0, v);
        let rule = |id: String, from: Vec<String>, to: Vec<String>| RuleCfg {
            id: s(id),
            from: from.into_iter().map(s).collect(),
            to: to.into_iter().map(s).collect(),
            protocol: None,
            ports: None,
            services: Vec::new(),
            icmp_type: None,
            icmp_code: None,
            action: Spanned::new(0..0, RuleAction::Deny),
            stateful: false,
            log: false,
        };
        let mut out = config.clone();
        let mut rules = Vec::with_capacity(2 * self.entries.len() + config.rules.len());
        for b in &self.entries {
            let guest: Vec<String> = b.guest.iter().map(|g| format!("guest:{g}")).collect();
            rules.push(rule(format!("{}:from", b.id()), vec![b.prefix.clone()], guest.clone()));
            rules.push(rule(format!("{}:to", b.id()), guest, vec![b.prefix.clone()]));
        }
        rules.extend(config.rules.iter().cloned());
        out.rules = rules;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(prefix: &str, guest: Option<&str>, until: Option<u64>) -> Block {
        Block { prefix: canonical(prefix).unwrap(), guest: guest.map(String::from), since: 100, until, by_uid: Some(0) }
    }

    #[test]
    fn prefixes_are_canonical_and_bad_ones_refused() {
        assert_eq!(canonical("10.0.0.7").unwrap(), "10.0.0.7/32");
        assert_eq!(canonical(" 10.0.0.0/24 ").unwrap(), "10.0.0.0/24");
        assert_eq!(canonical("fd00::1").unwrap(), "fd00::1/128");
        assert_eq!(canonical("fd00::/64").unwrap(), "fd00::/64");
        assert!(canonical("10.0.0.1/24").unwrap_err().contains("host bits zero"));
        assert!(canonical("evil.example").is_err());
    }

    #[test]
    fn entries_persist_replace_and_expire() {
        let dir = std::env::temp_dir().join(format!("rampart-blocks-{}", std::process::id()));
        let path = dir.join("state/blocks.json");
        let mut list = Blocklist::load(&path).unwrap();
        assert!(list.entries.is_empty(), "no file yet: empty");
        list.add(block("10.0.0.7", None, None));
        list.add(block("10.0.0.8", Some("web"), Some(200)));
        list.add(block("10.0.0.7", None, Some(u64::MAX))); // replaces the first
        list.save().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut again = Blocklist::load(&path).unwrap();
        assert_eq!(again.entries.len(), 1, "the entry whose time was up (200) is gone at load");
        assert_eq!(again.entries[0].until, Some(u64::MAX));
        list.entries = vec![block("10.0.0.9", None, Some(500)), block("10.0.0.10", None, None)];
        assert_eq!(list.expire(499).len(), 0);
        assert_eq!(list.expire(500)[0].prefix, "10.0.0.9/32");
        assert_eq!(again.remove("10.0.0.7/32", &None).unwrap().prefix, "10.0.0.7/32");
        assert!(again.remove("10.0.0.7/32", &None).is_none());
        std::fs::write(&path, "{not json").unwrap();
        assert!(Blocklist::load(&path).unwrap_err().contains("fix or remove the file"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn blocks_become_deny_rules_in_front_both_ways() {
        let config = rampart_config::parse("t.toml", "[[rules]]\nid = \"web\"\naction = \"allow\"\n").unwrap();
        let list = Blocklist { path: PathBuf::new(), entries: vec![block("10.0.0.7", None, None), block("fd00::/64", Some("db"), None)] };
        let with = list.applied_to(&config);
        let ids: Vec<&str> = with.rules.iter().map(|r| r.id.get_ref().as_str()).collect();
        assert_eq!(ids, ["block:10.0.0.7/32:from", "block:10.0.0.7/32:to", "block:fd00::/64@db:from", "block:fd00::/64@db:to", "web"]);
        let to = &with.rules[3];
        assert_eq!((to.from[0].get_ref().as_str(), to.to[0].get_ref().as_str(), *to.action.get_ref()), ("guest:db", "fd00::/64", RuleAction::Deny));
        assert!(with.rules[0].to.is_empty(), "from the address to anyone");
    }
}
