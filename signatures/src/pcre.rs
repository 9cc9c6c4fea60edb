//! `pcre`, in the subset a DFA runs: a [`Pcre`] compiled to a pair of dense DFAs
//! (`regex-automata`'s `dfa::regex::Regex`: a forward DFA finds where the leftmost-first
//! match ends, a reverse one where it starts), searched in time linear in the buffer,
//! without allocation, lock or per-worker cache.
//!
//! The subset is the syntax of the `regex` crate in byte mode (Unicode off: `.`, `\w`,
//! `\d`, `\s`, `\b` and classes are ASCII/bytes, `\xNN` is a raw byte), with PCRE's flags
//! `i` `s` `m` `x` `A` `G` (ungreedy) `R` (relative), and `B` `O` accepted as no-ops.
//! Outside it, and so skipped with the summary (keyword `pcre:unsupported`):
//! backreferences, lookahead and lookbehind, atomic groups, possessive quantifiers,
//! `\Z`, `\G`, `\K`, `\Q..\E`, conditionals, recursion, callouts. One difference from PCRE
//! inside it: `$` without `m` matches only at the buffer end (PCRE's `D`,
//! DOLLAR_ENDONLY), not before a final newline. A pattern whose DFA would exceed
//! [`MAX_DFA_BYTES`] is skipped too (`pcre:too-large`): bounded repetitions such as
//! `[a-z]{1,300}` after an unanchored prefix grow a DFA fast. The HTTP buffer flags
//! (`U` `I` `P` `Q` `H` `D` `M` `C` `S` `Y` `V` `W` `Z` `K`) need an HTTP parser: the rule is
//! skipped as `pcre/<flag>`.

use crate::model::Pcre;
use regex_automata::dfa::{dense, regex::Regex, StartKind};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

/// The most memory one pattern's DFAs (forward and reverse, each) may take.
pub const MAX_DFA_BYTES: usize = 1 << 20;

/// A compiled [`Pcre`].
#[derive(Clone, Debug)]
pub struct Compiled {
    re: Regex,
    anchored: bool,
}

/// Why a [`Pcre`] is outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// Syntax the DFA cannot run (or that is not a regular expression at all).
    Syntax(String),
    /// Its DFA would be larger than [`MAX_DFA_BYTES`].
    TooLarge,
}

impl Unsupported {
    /// The keyword a skipped rule is reported under.
    pub fn keyword(&self) -> &'static str {
        match self {
            Unsupported::Syntax(_) => "pcre:unsupported",
            Unsupported::TooLarge => "pcre:too-large",
        }
    }
}

/// The regex syntax a [`Pcre`]'s flags select (bytes, not Unicode).
pub(crate) fn syntax_config(p: &Pcre) -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(p.nocase)
        .dot_matches_new_line(p.dotall)
        .multi_line(p.multiline)
        .ignore_whitespace(p.extended)
        .swap_greed(p.ungreedy)
}

/// The NFA every engine is built from: matches need not be UTF-8, no capture groups.
pub(crate) fn thompson_config() -> thompson::Config {
    thompson::Config::new().utf8(false).which_captures(WhichCaptures::None)
}

impl Compiled {
    /// Compiles `p`'s pattern with its flags.
    pub fn new(p: &Pcre) -> Result<Compiled, Unsupported> {
        if has_possessive(&p.pattern) {
            // The regex syntax reads `a++` as `(a+)+`, which matches where PCRE's
            // possessive `a++` would not.
            return Err(Unsupported::Syntax("possessive quantifier".to_string()));
        }
        let start = if p.anchored { StartKind::Anchored } else { StartKind::Unanchored };
        let dense = dense::Config::new()
            .start_kind(start)
            .dfa_size_limit(Some(MAX_DFA_BYTES))
            .determinize_size_limit(Some(MAX_DFA_BYTES));
        let re = Regex::builder()
            .syntax(syntax_config(p))
            .thompson(thompson_config())
            .dense(dense)
            .build(&p.pattern)
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("exceeded") || text.contains("too big") || text.contains("size limit") {
                    Unsupported::TooLarge
                } else {
                    Unsupported::Syntax(text)
                }
            })?;
        Ok(Compiled { re, anchored: p.anchored })
    }

    /// The leftmost-first match in `haystack` as (start, end), if any (`A`: starting at 0).
    #[inline]
    pub fn find(&self, haystack: &[u8]) -> Option<(usize, usize)> {
        let anchored = if self.anchored { Anchored::Yes } else { Anchored::No };
        // Unicode is off, so the DFAs have no quit bytes and a search cannot fail; were
        // it to, "no match" is the conservative answer for a positive check.
        let m = self.re.try_search(&Input::new(haystack).anchored(anchored)).ok()??;
        Some((m.start(), m.end()))
    }

    /// Heap bytes of both DFAs.
    pub fn memory(&self) -> usize {
        self.re.forward().memory_usage() + self.re.reverse().memory_usage()
    }
}

/// Whether a quantifier (`*` `+` `?` `{..}`) is directly followed by `+` outside
/// escapes and classes.
fn has_possessive(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let (mut i, mut class, mut after_quantifier) = (0, false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            i += 2;
            after_quantifier = false;
            continue;
        }
        if class {
            class = b != b']' || (i > 0 && bytes[i - 1] == b'[');
        } else if b == b'[' {
            class = true;
        } else if b == b'+' && after_quantifier {
            return true;
        }
        let group_start = b == b'?' && i > 0 && bytes[i - 1] == b'(';
        after_quantifier = !class && matches!(b, b'*' | b'+' | b'?' | b'}') && !group_start;
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcre(pattern: &str) -> Pcre {
        Pcre::new(pattern)
    }

    fn find(p: &Pcre, hay: &[u8]) -> Option<(usize, usize)> {
        Compiled::new(p).unwrap().find(hay)
    }

    #[test]
    fn bytes_not_unicode() {
        assert_eq!(find(&pcre(r"\xff\x00."), b"a\xff\x00\xfe"), Some((1, 4)));
        assert_eq!(find(&pcre(r"\w+"), "é ab".as_bytes()), Some((3, 5)));
        assert_eq!(find(&pcre(r"a.b"), b"a\nb"), None);
        assert_eq!(find(&Pcre { dotall: true, ..pcre(r"a.b") }, b"a\nb"), Some((0, 3)));
    }

    #[test]
    fn flags() {
        assert_eq!(find(&Pcre { nocase: true, ..pcre("get /") }, b"xGET /"), Some((1, 6)));
        assert_eq!(find(&pcre("^b"), b"a\nb"), None);
        assert_eq!(find(&Pcre { multiline: true, ..pcre("^b") }, b"a\nb"), Some((2, 3)));
        assert_eq!(find(&Pcre { extended: true, ..pcre("a b # c") }, b"ab"), Some((0, 2)));
        assert_eq!(find(&Pcre { anchored: true, ..pcre("b") }, b"ab"), None);
        assert_eq!(find(&Pcre { anchored: true, ..pcre("a") }, b"ab"), Some((0, 1)));
        assert_eq!(find(&pcre("a+"), b"aaa"), Some((0, 3)));
        assert_eq!(find(&Pcre { ungreedy: true, ..pcre("a+") }, b"aaa"), Some((0, 1)));
        // `$` is the buffer's end only.
        assert_eq!(find(&pcre("a$"), b"a\n"), None);
        assert_eq!(find(&pcre("a$"), b"ba"), Some((1, 2)));
    }

    #[test]
    fn escaped_punctuation_as_rule_files_write_it() {
        assert_eq!(find(&pcre(r#"\/a\;b\"c\:"#), br#"/a;b"c:"#), Some((0, 7)));
    }

    #[test]
    fn outside_the_subset() {
        for pattern in [r"(a)\1", r"a(?=b)", r"a(?!b)", r"(?<=a)b", r"(?>a)", r"a++", r"a*+b", r"a{2}+", r"a\Z", r"\Qa\E", r"(a"] {
            let Err(e) = Compiled::new(&pcre(pattern)) else { panic!("{pattern} compiled") };
            assert_eq!(e.keyword(), "pcre:unsupported", "{pattern}: {e:?}");
        }
        for pattern in [r"a\+\+", r"[+]+", r"a+b+", r"(?:a)+"] {
            assert!(Compiled::new(&pcre(pattern)).is_ok(), "{pattern}");
        }
        let e = Compiled::new(&pcre(r"[a-z]{1,5000}x[a-z]{1,5000}")).unwrap_err();
        assert_eq!(e, Unsupported::TooLarge);
    }

    #[test]
    fn typical_patterns_are_small() {
        let c = Compiled::new(&Pcre { nocase: true, ..pcre(r"^GET\s+/[a-z0-9]{8}\.php\?id=\d+") }).unwrap();
        assert!(c.memory() < 64 * 1024, "{}", c.memory());
        assert_eq!(c.find(b"get  /abcd1234.php?id=77 HTTP/1.1"), Some((0, 24)));
    }
}
