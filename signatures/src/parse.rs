//! Suricata/Snort rule files → [`Signature`]s.
//!
//! A rule is `action proto src sport dir dst dport (options)`. Variables (`$HOME_NET`,
//! `$HTTP_PORTS`, ...) are resolved from [`Vars`] while parsing, so a [`Signature`] holds
//! plain prefixes and port ranges. The supported options are:
//!
//! - information: `msg`, `sid` (required), `rev`, `gid`, `classtype`, `priority`,
//!   `reference` and `metadata` (both kept verbatim), and `target` (accepted, ignored);
//! - payload: `content` (`|hex|` and `\"` `\;` `\\` `\:` escapes, `!` negation) with its
//!   modifiers `nocase`, `offset`, `depth`, `distance`, `within`, `startswith`,
//!   `endswith`, `fast_pattern` and `rawbytes` (accepted, a no-op: there is no other
//!   buffer), `isdataat`, `byte_test`, `byte_jump` (without `dce` or `byte_extract`
//!   variables) and `pcre` (the subset [`crate::pcre`] describes; a pattern outside it
//!   skips the rule as `pcre:unsupported` or `pcre:too-large`, an HTTP buffer flag as
//!   `pcre/<flag>`);
//! - `flow` (direction and state), `dsize`, `threshold` and `detection_filter` (tracked by
//!   source, destination, both or rule; applied by the dataplane, see [`Threshold`]);
//! - `flowbits` (`set`, `unset`, `toggle`, `isset`, `isnotset`, `noalert`; `a|b` only in
//!   conditions) and `noalert`.
//!
//! A rule that parses but needs anything else — an application-layer protocol in its
//! header, a sticky buffer (`http.uri`, `dns.query`, ...), `xbits`, `byte_extract`,
//! `track by_flow`, `flow:only_stream`, `dsize:!N`, ... — is not loaded: it comes back as
//! [`Skipped`] with the keywords it needs, so nothing is silently dropped. Such a rule
//! must still be well formed (header, variables, option syntax); once it has used an
//! unsupported keyword its later content modifiers are no longer checked, since they
//! may refer to a buffer Rampart does not model.
//!
//! Every error is a [`ParseError`] naming the file, the rule's first line and the keyword
//! (the option name; `header`, `action`, `protocol`, `address`, `port` or `direction` for
//! the header; a variable's name for an error inside that variable's value).

use crate::model::{
    AddrMatch, ByteJump, ByteOp, ByteRead, ByteTest, Cidr, Content, FlowMatch, Flowbit, FlowbitOp, IsDataAt, JumpFrom, Origin, PayloadCheck, Pcre,
    PortMatch, SigAction, SigProto, Signature, SizeRange, Threshold, ThresholdKind, Track,
};
use crate::pcre::Compiled;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How deeply lists and variables may nest inside one address or port field.
const MAX_NESTING: usize = 32;

/// Address and port variables (`$NAME` in a rule), by name without the `$`, each holding
/// its raw value as it would be written in a rule (`[10.0.0.0/8,!10.1.0.0/16]`,
/// `$HOME_NET`, `[80,8080:8090]`). `Default` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// The address and port groups of Suricata's default `suricata.yaml`.
    pub fn suricata_defaults() -> Vars {
        let mut vars = Vars::default();
        vars.set("HOME_NET", "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]");
        vars.set("EXTERNAL_NET", "!$HOME_NET");
        for name in [
            "HTTP_SERVERS",
            "SMTP_SERVERS",
            "SQL_SERVERS",
            "DNS_SERVERS",
            "TELNET_SERVERS",
            "AIM_SERVERS",
            "DC_SERVERS",
            "DNP3_SERVER",
            "DNP3_CLIENT",
            "MODBUS_CLIENT",
            "MODBUS_SERVER",
            "ENIP_CLIENT",
            "ENIP_SERVER",
        ] {
            vars.set(name, "$HOME_NET");
        }
        for (name, value) in [
            ("HTTP_PORTS", "80"),
            ("SHELLCODE_PORTS", "!80"),
            ("ORACLE_PORTS", "1521"),
            ("SSH_PORTS", "22"),
            ("DNP3_PORTS", "20000"),
            ("MODBUS_PORTS", "502"),
            ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
            ("FTP_PORTS", "21"),
            ("GENEVE_PORTS", "6081"),
            ("VXLAN_PORTS", "4789"),
            ("TEREDO_PORTS", "3544"),
        ] {
            vars.set(name, value);
        }
        vars
    }

    /// Sets (or overrides) variable `name` (written without the `$`; a leading `$` is
    /// ignored) to the raw `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.strip_prefix('$').unwrap_or(name);
        self.values.insert(name.to_string(), value.to_string());
    }

    /// The raw value of variable `name` (without the `$`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// The classtypes of a `classification.config`: name → (description, priority).
/// `Default` is empty (and then any `classtype` is accepted, with no priority of its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classifications {
    classes: BTreeMap<String, (String, u8)>,
}

impl Classifications {
    /// Parses a `classification.config`: lines `config classification: name,description,priority`
    /// (the description may hold commas), `#` comments and blank lines.
    pub fn parse(text: &str, file: &str) -> Result<Classifications, ParseError> {
        let mut classes = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = line_number(index);
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let fail = |message: String| ParseError::new(file, line, "classification", message);
            let shape = || {
                fail(format!(
                    "expected `config classification: name,description,priority`, found `{entry}`"
                ))
            };
            let body = entry
                .strip_prefix("config")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix("classification"))
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix(':'))
                .ok_or_else(shape)?;
            let (name, rest) = body.split_once(',').ok_or_else(shape)?;
            let (description, priority) = rest.rsplit_once(',').ok_or_else(shape)?;
            let name = name.trim();
            if !is_class_name(name) {
                return Err(fail(format!("`{name}` is not a valid classtype name")));
            }
            let priority =
                parse_priority(priority.trim()).ok_or_else(|| fail(format!("priority `{}` is not in 1..=255", priority.trim())))?;
            if classes
                .insert(name.to_string(), (description.trim().to_string(), priority))
                .is_some()
            {
                return Err(fail(format!("classtype `{name}` is defined twice")));
            }
        }
        Ok(Classifications { classes })
    }

    /// The description and priority of classtype `name`.
    pub fn get(&self, name: &str) -> Option<(&str, u8)> {
        self.classes
            .get(name)
            .map(|(description, priority)| (description.as_str(), *priority))
    }

    /// How many classtypes there are.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether there are none (then `classtype` names are not checked).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// A rule (or classification) that cannot be parsed: where, which keyword, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {keyword}: {message}")]
pub struct ParseError {
    pub file: String,
    /// The line the rule starts on (1-based).
    pub line: u32,
    /// The option name, a header field (`header`, `action`, `protocol`, `address`,
    /// `port`, `direction`), or a variable's name (without `$`).
    pub keyword: String,
    pub message: String,
}

impl ParseError {
    /// An error at `file:line` about `keyword`.
    fn new(file: &str, line: u32, keyword: &str, message: impl Into<String>) -> ParseError {
        ParseError {
            file: file.to_string(),
            line,
            keyword: keyword.to_string(),
            message: message.into(),
        }
    }
}

/// A rule that parsed but uses keywords outside the supported subset: not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: u32,
    pub sid: Option<u32>,
    /// The unsupported keywords (`http.uri`, `pcre`, `protocol:http`, `flow:only_stream`,
    /// `dsize:!`, `byte_extract`, ...), each once, in the order the rule uses them.
    pub keywords: Vec<String>,
}

/// A parsed rule file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFile {
    pub signatures: Vec<Signature>,
    pub skipped: Vec<Skipped>,
    /// Commented-out rules (`# alert ...`), counted, not parsed.
    pub disabled: u32,
}

impl RuleFile {
    /// E.g. "41 loaded, 3 skipped (http.uri ×2, pcre ×1), 5 commented out": keyword counts
    /// sorted by count (descending), then name.
    pub fn summary(&self) -> String {
        let keywords = self.skipped_keywords();
        let detail = if keywords.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = keywords.iter().map(|(keyword, count)| format!("{keyword} ×{count}")).collect();
            format!(" ({})", parts.join(", "))
        };
        format!(
            "{} loaded, {} skipped{detail}, {} commented out",
            self.signatures.len(),
            self.skipped.len(),
            self.disabled
        )
    }

    /// Keyword → number of skipped rules using it, sorted by count (descending), then name.
    pub fn skipped_keywords(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for skipped in &self.skipped {
            for keyword in &skipped.keywords {
                *counts.entry(keyword.as_str()).or_default() += 1;
            }
        }
        let mut sorted: Vec<(String, usize)> = counts.into_iter().map(|(keyword, count)| (keyword.to_string(), count)).collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sorted
    }
}

/// What one rule parses to.
// A parse result is short-lived (moved into a `RuleFile` at once): boxing the signature
// would only add an allocation per rule.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Signature(Signature),
    Skipped(Skipped),
}

/// Parses a whole rule file. Any syntax/semantic error is returned (first one) naming
/// file, line (the line where the rule starts, 1-based), and keyword (the option name, or
/// "header"/"action"/"protocol"/"address"/"port"/"direction" for header fields, or the
/// variable name).
///
/// Blank lines and `#` comments are skipped (a comment that is itself a rule counts in
/// [`RuleFile::disabled`]); a line ending in `\` continues on the next one, as Suricata
/// joins them (the `\` is dropped, nothing is inserted). A sid may appear once per gid.
pub fn parse_rules(text: &str, file: &str, vars: &Vars, classes: &Classifications) -> Result<RuleFile, ParseError> {
    let mut out = RuleFile::default();
    let mut seen: HashMap<(u32, u32), u32> = HashMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let trimmed = first.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('#') {
            if looks_like_rule(trimmed) {
                out.disabled = out.disabled.saturating_add(1);
            }
            continue;
        }
        let line = line_number(index);
        let mut rule = String::new();
        let mut current = first;
        loop {
            match current.trim_end().strip_suffix('\\') {
                Some(head) => {
                    rule.push_str(head);
                    match lines.next() {
                        Some((_, next)) => current = next,
                        None => break,
                    }
                }
                None => {
                    rule.push_str(current);
                    break;
                }
            }
        }
        let (parsed, gid, sid) = parse_one(&rule, file, line, vars, classes)?;
        if let Some(first_line) = seen.insert((gid, sid), line) {
            return Err(ParseError::new(
                file,
                line,
                "sid",
                format!("sid {sid} (gid {gid}) is already used by the rule at line {first_line}"),
            ));
        }
        match parsed {
            Parsed::Signature(signature) => out.signatures.push(signature),
            Parsed::Skipped(skipped) => out.skipped.push(skipped),
        }
    }
    Ok(out)
}

/// One rule (no continuation handling), for tests and inline rules from the config;
/// `line` is reported in errors and origins.
pub fn parse_rule(text: &str, file: &str, line: u32, vars: &Vars, classes: &Classifications) -> Result<Parsed, ParseError> {
    parse_one(text, file, line, vars, classes).map(|(parsed, _, _)| parsed)
}

/// 1-based line number of a 0-based line index.
fn line_number(index: usize) -> u32 {
    u32::try_from(index).map_or(u32::MAX, |index| index.saturating_add(1))
}

/// Whether a comment line is a commented-out rule: `#`s, then an action, more words and `(`.
fn looks_like_rule(comment: &str) -> bool {
    let body = comment.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
    let mut words = body.split_whitespace();
    matches!(words.next(), Some(word) if action_of(word).is_some()) && words.next().is_some() && body.contains('(')
}

/// The action an action word names.
fn action_of(word: &str) -> Option<SigAction> {
    match word {
        "alert" => Some(SigAction::Alert),
        "drop" => Some(SigAction::Drop),
        "pass" => Some(SigAction::Pass),
        "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => Some(SigAction::Reject),
        _ => None,
    }
}

/// The file and line errors of one rule name.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    file: &'a str,
    line: u32,
}

impl Ctx<'_> {
    /// An error about `keyword` in this rule.
    fn err(&self, keyword: &str, message: impl Into<String>) -> ParseError {
        ParseError::new(self.file, self.line, keyword, message)
    }
}

/// A header protocol: one Rampart matches, or an application-layer one it does not.
enum Proto {
    Known(SigProto),
    App(String),
}

/// Parses one rule; also returns its gid and sid (for the duplicate check).
fn parse_one(text: &str, file: &str, line: u32, vars: &Vars, classes: &Classifications) -> Result<(Parsed, u32, u32), ParseError> {
    let ctx = Ctx { file, line };
    let text = text.trim();
    if text.is_empty() {
        return Err(ctx.err("header", "empty rule"));
    }
    let open = text
        .find('(')
        .ok_or_else(|| ctx.err("header", "missing the `(options)` after the header"))?;
    let header = &text[..open];
    let body = text[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| ctx.err("header", "the options must end with `)` at the end of the rule"))?;

    let tokens = header_tokens(header).map_err(|field| {
        let keyword = match field {
            2 | 5 => "address",
            3 | 6 => "port",
            _ => "header",
        };
        ctx.err(keyword, "missing `]`: a list is left open")
    })?;
    let &[action, proto, src, src_port, direction, dst, dst_port] = tokens.as_slice() else {
        return Err(ctx.err(
            "header",
            format!(
                "expected `action protocol source port direction destination port`, found {} fields",
                tokens.len()
            ),
        ));
    };
    let action = action_of(action).ok_or_else(|| {
        ctx.err(
            "action",
            format!("unknown action `{action}` (alert, drop, reject, rejectsrc, rejectdst, rejectboth, pass)"),
        )
    })?;
    let proto = parse_proto(proto).ok_or_else(|| ctx.err("protocol", format!("`{proto}` is not a protocol name")))?;
    let src = resolve_addrs(src, vars, ctx)?;
    let src_ports = resolve_ports(src_port, vars, ctx)?;
    let bidirectional = match direction {
        "->" => false,
        "<>" => true,
        "<-" => return Err(ctx.err("direction", "`<-` is not a direction: swap source and destination and use `->`")),
        other => return Err(ctx.err("direction", format!("`{other}` is not a direction (`->` or `<>`)"))),
    };
    let dst = resolve_addrs(dst, vars, ctx)?;
    let dst_ports = resolve_ports(dst_port, vars, ctx)?;

    let mut builder = Builder::new(ctx, classes);
    let proto = match proto {
        Proto::Known(proto) => proto,
        Proto::App(name) => {
            builder.unsupported(&format!("protocol:{name}"));
            SigProto::Ip
        }
    };
    for (name, value) in split_options(body, ctx)? {
        builder.apply(&name, value)?;
    }
    let sid = builder.sid.ok_or_else(|| ctx.err("sid", "the rule has no sid"))?;
    let gid = builder.gid.unwrap_or(1);
    if builder.noalert && builder.detection_filter.is_some() {
        builder.unsupported("detection_filter:noalert");
    }
    if action == SigAction::Pass && builder.detection_filter.is_some() {
        // A pass the filter holds back would let its packet's other signatures act: not modelled.
        builder.unsupported("detection_filter:pass");
    }
    if builder.unsupported.is_empty() {
        // Compiled here too (not only when the dataplane builds its matcher), so a pattern
        // outside the subset skips its rule rather than failing the whole rule set later.
        let unsupported: Vec<&'static str> = builder
            .checks
            .iter()
            .filter_map(|c| match c {
                PayloadCheck::Pcre(p) => Compiled::new(p).err().map(|e| e.keyword()),
                _ => None,
            })
            .collect();
        for keyword in unsupported {
            builder.unsupported(keyword);
        }
    }
    if !builder.unsupported.is_empty() {
        return Ok((
            Parsed::Skipped(Skipped {
                line,
                sid: Some(sid),
                keywords: builder.unsupported,
            }),
            gid,
            sid,
        ));
    }
    let signature = Signature {
        action,
        proto,
        src,
        src_ports,
        dst,
        dst_ports,
        bidirectional,
        msg: builder.msg.unwrap_or_default(),
        sid,
        rev: builder.rev.unwrap_or(0),
        gid,
        classtype: builder.classtype,
        category: builder.class_description,
        priority: builder.priority.or(builder.class_priority).unwrap_or(3),
        references: builder.references,
        metadata: builder.metadata,
        flow: builder.flow.unwrap_or_default(),
        dsize: builder.dsize,
        checks: builder.checks,
        threshold: builder.threshold,
        detection_filter: builder.detection_filter,
        flowbits: builder.flowbits,
        noalert: builder.noalert,
        origin: Origin {
            file: file.to_string(),
            line,
        },
    };
    Ok((Parsed::Signature(signature), gid, sid))
}

/// Splits a header into whitespace-separated fields, keeping `[...]` lists (which may
/// hold spaces) whole. A `[` left open fails with the index of its field.
fn header_tokens(header: &str) -> Result<Vec<&str>, usize> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in header.char_indices() {
        if c.is_whitespace() && depth == 0 {
            if let Some(s) = start.take() {
                tokens.push(&header[s..i]);
            }
            continue;
        }
        if start.is_none() {
            start = Some(i);
        }
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if depth > 0 {
        return Err(tokens.len());
    }
    if let Some(s) = start {
        tokens.push(&header[s..]);
    }
    Ok(tokens)
}

/// The protocol a header names; `None` when the word is not an identifier.
fn parse_proto(word: &str) -> Option<Proto> {
    let name = word.to_ascii_lowercase();
    let known = match name.as_str() {
        "tcp" | "tcp-pkt" | "tcp-stream" => SigProto::Tcp,
        "udp" => SigProto::Udp,
        "icmp" | "icmpv4" | "icmpv6" | "icmp6" => SigProto::Icmp,
        "ip" => SigProto::Ip,
        _ => {
            let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            return identifier.then_some(Proto::App(name));
        }
    };
    Some(Proto::Known(known))
}

/// An error inside an address or port field: the variable whose value holds it, if any.
struct FieldError {
    var: Option<String>,
    message: String,
}

/// Expands an address or port field (negations, lists, variables) into included and
/// excluded items, each item parsed by `leaf`.
struct Expander<'a, T> {
    vars: &'a Vars,
    leaf: fn(&str) -> Result<Vec<T>, String>,
    include: Vec<T>,
    exclude: Vec<T>,
    /// A non-negated `any` was seen: everything is included.
    any: bool,
    /// The variables being expanded, outermost first (for cycle detection).
    stack: Vec<String>,
}

impl<'a, T> Expander<'a, T> {
    /// An expander resolving variables in `vars` and parsing items with `leaf`.
    fn new(vars: &'a Vars, leaf: fn(&str) -> Result<Vec<T>, String>) -> Self {
        Expander {
            vars,
            leaf,
            include: Vec::new(),
            exclude: Vec::new(),
            any: false,
            stack: Vec::new(),
        }
    }

    /// An error at the current position (inside the innermost variable, if any).
    fn fail(&self, message: impl Into<String>) -> FieldError {
        FieldError {
            var: self.stack.last().cloned(),
            message: message.into(),
        }
    }

    /// Expands `text`, under `negated` outer negations, `depth` lists/variables deep.
    fn expand(&mut self, text: &str, negated: bool, depth: usize) -> Result<(), FieldError> {
        if depth > MAX_NESTING {
            return Err(self.fail(format!("lists and variables nest more than {MAX_NESTING} deep")));
        }
        let mut text = text.trim();
        let mut negated = negated;
        while let Some(rest) = text.strip_prefix('!') {
            negated = !negated;
            text = rest.trim_start();
        }
        if text.is_empty() {
            return Err(self.fail("empty value"));
        }
        if let Some(inner) = text.strip_prefix('[') {
            let items = split_list(inner).map_err(|message| self.fail(format!("{message} in `{text}`")))?;
            for item in items {
                self.expand(item, negated, depth + 1)?;
            }
        } else if let Some(name) = text.strip_prefix('$') {
            if !is_var_name(name) {
                return Err(self.fail(format!("`${name}` is not a variable name")));
            }
            if self.stack.iter().any(|outer| outer == name) {
                let chain: Vec<String> = self.stack.iter().map(|outer| format!("${outer}")).collect();
                return Err(FieldError {
                    var: Some(name.to_string()),
                    message: format!("variable cycle: {} -> ${name}", chain.join(" -> ")),
                });
            }
            let vars = self.vars;
            let value = vars.get(name).ok_or_else(|| FieldError {
                var: Some(name.to_string()),
                message: format!("undefined variable ${name}"),
            })?;
            self.stack.push(name.to_string());
            self.expand(value, negated, depth + 1)?;
            self.stack.pop();
        } else if text.eq_ignore_ascii_case("any") {
            if negated {
                return Err(self.fail("`!any` matches nothing"));
            }
            self.any = true;
        } else {
            let items = (self.leaf)(text).map_err(|message| self.fail(message))?;
            if negated {
                self.exclude.extend(items);
            } else {
                self.include.extend(items);
            }
        }
        Ok(())
    }
}

/// Splits the inside of a `[...]` list (`inner` starts after the `[` and includes the
/// closing `]`) at its top-level commas.
fn split_list(inner: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 1usize;
    let mut start = 0;
    for (i, byte) in inner.bytes().enumerate() {
        match byte {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&inner[start..i]);
                    if !inner[i + 1..].trim().is_empty() {
                        return Err("text after the closing `]`".to_string());
                    }
                    if items.iter().any(|item| item.trim().is_empty()) {
                        return Err("empty list item".to_string());
                    }
                    return Ok(items);
                }
            }
            b',' if depth == 1 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    Err("missing `]`".to_string())
}

/// Whether `name` is a variable name (letters, digits, `_`).
fn is_var_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is a classtype name (letters, digits, `_`, `-`).
fn is_class_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Maps a field error to a rule error: keyword is the variable, else `field`.
fn field_error(ctx: Ctx, field: &str, error: FieldError) -> ParseError {
    ctx.err(error.var.as_deref().unwrap_or(field), error.message)
}

/// Resolves an address field.
fn resolve_addrs(text: &str, vars: &Vars, ctx: Ctx) -> Result<AddrMatch, ParseError> {
    let mut expander = Expander::new(vars, parse_addr_item);
    expander
        .expand(text, false, 0)
        .map_err(|error| field_error(ctx, "address", error))?;
    let include = if expander.any { Vec::new() } else { expander.include };
    Ok(AddrMatch {
        include,
        exclude: expander.exclude,
    })
}

/// Resolves a port field.
fn resolve_ports(text: &str, vars: &Vars, ctx: Ctx) -> Result<PortMatch, ParseError> {
    let mut expander = Expander::new(vars, parse_port_item);
    expander.expand(text, false, 0).map_err(|error| field_error(ctx, "port", error))?;
    let include = if expander.any { Vec::new() } else { expander.include };
    Ok(PortMatch {
        include,
        exclude: expander.exclude,
    })
}

/// One address item: an address, `addr/len`, `v4addr/netmask`, or a range `lo-hi`
/// (as the prefixes covering it). Host bits of a prefix are masked off.
fn parse_addr_item(text: &str) -> Result<Vec<Cidr>, String> {
    let bad = || format!("`{text}` is not an IP address, prefix or range");
    if let Some((addr, len)) = text.split_once('/') {
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let len = len.trim();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match (parse_digits::<u8>(len), addr, len.parse::<Ipv4Addr>()) {
            (Some(len), _, _) if len <= max => len,
            (None, IpAddr::V4(_), Ok(mask)) => {
                let mask = u32::from(mask);
                let ones = mask.leading_ones();
                if mask.checked_shl(ones).unwrap_or(0) != 0 {
                    return Err(format!("netmask `{len}` is not contiguous"));
                }
                u8::try_from(ones).map_err(|_| bad())?
            }
            _ => return Err(format!("prefix length `{len}` is not in 0..={max}")),
        };
        return Ok(vec![masked(addr, len)]);
    }
    if let Some((lo, hi)) = text.split_once('-') {
        let lo: IpAddr = lo.trim().parse().map_err(|_| bad())?;
        let hi: IpAddr = hi.trim().parse().map_err(|_| bad())?;
        return match (lo, hi) {
            (IpAddr::V4(lo), IpAddr::V4(hi)) if lo <= hi => Ok(range_prefixes(u128::from(u32::from(lo)), u128::from(u32::from(hi)), 32)
                .into_iter()
                .map(|(base, len)| Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::try_from(base).unwrap_or(0))),
                    len,
                })
                .collect()),
            (IpAddr::V6(lo), IpAddr::V6(hi)) if lo <= hi => Ok(range_prefixes(u128::from(lo), u128::from(hi), 128)
                .into_iter()
                .map(|(base, len)| Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(base)),
                    len,
                })
                .collect()),
            _ => Err(format!("`{text}` is not a range (same family, low ≤ high)")),
        };
    }
    let addr: IpAddr = text.parse().map_err(|_| bad())?;
    Ok(vec![Cidr {
        addr,
        len: if addr.is_ipv4() { 32 } else { 128 },
    }])
}

/// `addr/len` with the host bits cleared.
fn masked(addr: IpAddr, len: u8) -> Cidr {
    let addr = match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Cidr { addr, len }
}

/// The fewest prefixes (base, length) covering `lo..=hi` in a `bits`-bit address space.
fn range_prefixes(mut lo: u128, hi: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    loop {
        // The largest aligned block starting at `lo` that ends at or before `hi`.
        let mut size_log = if lo == 0 { bits } else { lo.trailing_zeros().min(bits) };
        let end = loop {
            let span = if size_log >= 128 { u128::MAX } else { (1u128 << size_log) - 1 };
            match lo.checked_add(span) {
                Some(end) if end <= hi => break end,
                _ => size_log -= 1,
            }
        };
        out.push((lo, u8::try_from(bits - size_log).unwrap_or(0)));
        if end >= hi {
            return out;
        }
        lo = end + 1;
    }
}

/// One port item: `N`, `lo:hi`, `lo:` or `:hi`.
fn parse_port_item(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let port = |part: &str| parse_digits::<u16>(part.trim()).ok_or_else(|| format!("`{}` is not a port (0..=65535)", part.trim()));
    let (lo, hi) = match text.split_once(':') {
        Some((lo, hi)) if lo.trim().is_empty() && hi.trim().is_empty() => return Err(format!("`{text}` is not a port range")),
        Some((lo, hi)) => {
            let lo = if lo.trim().is_empty() { 0 } else { port(lo)? };
            let hi = if hi.trim().is_empty() { u16::MAX } else { port(hi)? };
            (lo, hi)
        }
        None => {
            let single = port(text)?;
            (single, single)
        }
    };
    if lo > hi {
        return Err(format!("port range `{text}` has low > high"));
    }
    Ok(vec![(lo, hi)])
}

/// Parses an unsigned decimal number made of ASCII digits only (no sign, no spaces).
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A priority: 1..=255.
fn parse_priority(text: &str) -> Option<u8> {
    parse_digits::<u8>(text).filter(|&priority| priority >= 1)
}

/// Splits the options text into (lower-cased name, trimmed raw value). Values end at a
/// `;` outside double quotes; `\` escapes the next character (so `\;` and `\"` do not end
/// anything). The last option may omit its `;`.
fn split_options<'a>(body: &'a str, ctx: Ctx) -> Result<Vec<(String, Option<&'a str>)>, ParseError> {
    let bytes = body.as_bytes();
    let mut options = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            return Ok(options);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b':' && bytes[i] != b';' {
            i += 1;
        }
        let raw_name = body[start..i].trim();
        if raw_name.is_empty() || !raw_name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            let shown = if raw_name.is_empty() {
                "an empty option".to_string()
            } else {
                format!("`{raw_name}` is not an option name")
            };
            return Err(ctx.err("options", format!("{shown} (options are `name;` or `name:value;`)")));
        }
        let name = raw_name.to_ascii_lowercase();
        if i >= bytes.len() || bytes[i] == b';' {
            options.push((name, None));
            i += 1;
            continue;
        }
        // bytes[i] == b':'
        i += 1;
        let value_start = i;
        let mut quoted = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                b';' if !quoted => break,
                _ => i += 1,
            }
        }
        if quoted {
            return Err(ctx.err(&name, "unterminated quoted string"));
        }
        let value_end = i.min(bytes.len());
        options.push((name, Some(body[value_start..value_end].trim())));
        i = value_end + 1;
    }
}

/// Splits a leading `"..."` off `text`: the raw (still escaped) text between the quotes
/// and what follows the closing quote.
fn split_quoted(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('"')?;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&rest[..i], &rest[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Decodes the inside of a quoted string: `|41 42|` hex sections (when `hex`), and
/// escapes — only `\"` `\;` `\\` `\:` when `strict`, any `\c` → `c` otherwise.
fn decode_string(raw: &str, hex: bool, strict: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut buf = [0u8; 4];
    // Some(pending high nibble) while inside `|...|`.
    let mut in_hex: Option<Option<u8>> = None;
    while let Some(c) = chars.next() {
        if let Some(pending) = in_hex {
            if c == '|' {
                if pending.is_some() {
                    return Err("odd number of hex digits in `|...|`".to_string());
                }
                in_hex = None;
            } else if let Some(digit) = c.to_digit(16) {
                let digit = u8::try_from(digit).unwrap_or(0);
                in_hex = match pending {
                    None => Some(Some(digit)),
                    Some(high) => {
                        out.push(high << 4 | digit);
                        Some(None)
                    }
                };
            } else if !c.is_whitespace() {
                return Err(format!("`{c}` in a `|...|` hex section"));
            }
            continue;
        }
        match c {
            '|' if hex => in_hex = Some(None),
            '\\' => match chars.next() {
                Some(escaped @ ('"' | ';' | '\\' | ':')) => out.push(escaped as u8),
                Some(escaped) if !strict => out.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes()),
                Some(escaped) => {
                    return Err(format!(
                        "`\\{escaped}` is not an escape (only \\\" \\; \\\\ \\: are; write other bytes as |hex|)"
                    ))
                }
                None => return Err("a trailing `\\` escapes nothing".to_string()),
            },
            other => out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes()),
        }
    }
    if in_hex.is_some() {
        return Err("unterminated `|` hex section".to_string());
    }
    Ok(out)
}

/// Decodes a `msg` value: quoted (escapes decoded) or bare.
fn decode_msg(value: &str) -> Result<String, String> {
    let raw = match split_quoted(value) {
        Some((inner, rest)) if rest.trim().is_empty() => inner,
        Some(_) => return Err("text after the closing quote".to_string()),
        None if value.starts_with('"') => return Err("unterminated quoted string".to_string()),
        None => value,
    };
    decode_string(raw, false, false).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Decodes a `content` value: `[!]"..."` → (negated, bytes).
fn decode_content(value: &str) -> Result<(bool, Vec<u8>), String> {
    let (negated, rest) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    let (inner, tail) = split_quoted(rest).ok_or_else(|| "the pattern must be a quoted string: content:\"...\"".to_string())?;
    if !tail.trim().is_empty() {
        return Err("text after the closing quote".to_string());
    }
    let bytes = decode_string(inner, true, true)?;
    if bytes.is_empty() {
        return Err("empty pattern".to_string());
    }
    Ok((negated, bytes))
}

/// Why a content modifier was not applied.
enum ModError {
    /// Its value names a `byte_extract` variable.
    ByteExtract,
    /// The value is malformed: an error even in a skipped rule.
    Syntax(String),
    /// It contradicts the content or another modifier: an error unless the rule is
    /// already skipped.
    Semantic(String),
}

/// A modifier's number: `ByteExtract` when it is a name, `Syntax` when malformed.
fn modifier_number<T: std::str::FromStr>(value: Option<&str>, signed: bool) -> Result<T, ModError> {
    let value = value.ok_or_else(|| ModError::Syntax("needs a value".to_string()))?;
    if value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ModError::ByteExtract);
    }
    let digits = if signed { value.strip_prefix('-').unwrap_or(value) } else { value };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ModError::Syntax(format!(
            "`{value}` is not a{} number",
            if signed { "n integer" } else { " non-negative" }
        )));
    }
    value.parse().map_err(|_| ModError::Syntax(format!("`{value}` is out of range")))
}

/// Applies content modifier `name` to `content`; `fast_pattern_seen` is whether the rule
/// already has a fast_pattern.
fn modify(content: &mut Content, fast_pattern_seen: &mut bool, name: &str, value: Option<&str>) -> Result<(), ModError> {
    let semantic = |message: &str| Err(ModError::Semantic(message.to_string()));
    let flag = |value: Option<&str>| match value {
        Some(value) => Err(ModError::Syntax(format!("takes no value, found `{value}`"))),
        None => Ok(()),
    };
    let absolute = content.offset.is_some() || content.depth.is_some();
    let relative = content.is_relative();
    let len = content.bytes.len() as u64;
    match name {
        "nocase" => {
            flag(value)?;
            if content.nocase {
                return semantic("given twice for the same content");
            }
            content.nocase = true;
        }
        "rawbytes" => flag(value)?,
        "startswith" => {
            flag(value)?;
            if content.startswith {
                return semantic("given twice for the same content");
            }
            if absolute || relative {
                return semantic("cannot be combined with offset, depth, distance or within");
            }
            content.startswith = true;
        }
        "endswith" => {
            flag(value)?;
            if content.endswith {
                return semantic("given twice for the same content");
            }
            content.endswith = true;
        }
        "fast_pattern" => {
            if let Some(value) = value {
                let number = |part: &str| parse_digits::<u32>(part.trim()).is_some();
                let valid = value == "only" || matches!(value.split_once(','), Some((a, b)) if number(a) && number(b));
                if !valid {
                    return Err(ModError::Syntax(format!("`{value}` is not `only` or `offset,length`")));
                }
            }
            if *fast_pattern_seen {
                return semantic("only one content of a rule can be the fast_pattern");
            }
            *fast_pattern_seen = true;
            content.fast_pattern = true;
        }
        "offset" | "depth" => {
            let number: u32 = modifier_number(value, false)?;
            let already = if name == "offset" {
                content.offset.is_some()
            } else {
                content.depth.is_some()
            };
            if already {
                return semantic("given twice for the same content");
            }
            if relative {
                return semantic("cannot mix the absolute offset/depth with the relative distance/within on one content");
            }
            if content.startswith {
                return semantic("cannot be combined with startswith");
            }
            if name == "offset" {
                content.offset = Some(number);
            } else {
                if number == 0 || u64::from(number) < len {
                    return Err(ModError::Semantic(format!("depth {number} is shorter than the {len}-byte content")));
                }
                content.depth = Some(number);
            }
        }
        "distance" | "within" => {
            let already = if name == "distance" {
                content.distance.is_some()
            } else {
                content.within.is_some()
            };
            let (distance, within) = if name == "distance" {
                (Some(modifier_number::<i32>(value, true)?), None)
            } else {
                (None, Some(modifier_number::<u32>(value, false)?))
            };
            if already {
                return semantic("given twice for the same content");
            }
            if absolute {
                return semantic("cannot mix the relative distance/within with the absolute offset/depth on one content");
            }
            if content.startswith {
                return semantic("cannot be combined with startswith");
            }
            if let Some(within) = within {
                if within == 0 || u64::from(within) < len {
                    return Err(ModError::Semantic(format!(
                        "within {within} is shorter than the {len}-byte content"
                    )));
                }
                content.within = Some(within);
            }
            if distance.is_some() {
                content.distance = distance;
            }
        }
        _ => return Err(ModError::Syntax("not a content modifier".to_string())),
    }
    Ok(())
}

/// Whether `name` is a content modifier Rampart supports.
fn is_content_modifier(name: &str) -> bool {
    matches!(
        name,
        "nocase" | "offset" | "depth" | "distance" | "within" | "startswith" | "endswith" | "fast_pattern" | "rawbytes"
    )
}

/// What `dsize`'s value means.
enum Dsize {
    Range(SizeRange),
    /// `dsize:!N`: not supported.
    Negated,
}

/// Parses `dsize`'s value: `N`, `<N`, `>N`, `<=N`, `>=N`, `N<>M` / `N-M` (exclusive), `!N`.
fn parse_dsize(value: &str) -> Result<Dsize, String> {
    let number = |text: &str| -> Result<u32, String> {
        parse_digits::<u16>(text.trim())
            .map(u32::from)
            .ok_or_else(|| format!("`{}` is not a size (0..=65535)", text.trim()))
    };
    let max = u32::from(u16::MAX);
    let (min, high) = if let Some(rest) = value.strip_prefix('!') {
        number(rest)?;
        return Ok(Dsize::Negated);
    } else if let Some((lo, hi)) = value.split_once("<>").or_else(|| value.split_once('-')) {
        (number(lo)? + 1, number(hi)?.checked_sub(1))
    } else if let Some(rest) = value.strip_prefix("<=") {
        (0, Some(number(rest)?))
    } else if let Some(rest) = value.strip_prefix(">=") {
        (number(rest)?, Some(max))
    } else if let Some(rest) = value.strip_prefix('<') {
        (0, number(rest)?.checked_sub(1))
    } else if let Some(rest) = value.strip_prefix('>') {
        (number(rest)? + 1, Some(max))
    } else {
        let exact = number(value)?;
        (exact, Some(exact))
    };
    match high {
        Some(high) if min <= high => Ok(Dsize::Range(SizeRange { min, max: high })),
        _ => Err(format!("`{value}` matches no size")),
    }
}

/// Parses `isdataat`'s value: `[!]N[,relative][,rawbytes]`; `None` when N names a
/// `byte_extract` variable.
fn parse_isdataat(value: &str) -> Result<Option<IsDataAt>, String> {
    let (negated, rest) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    let mut parts = rest.split(',').map(str::trim);
    let pos = match modifier_number::<u32>(parts.next(), false) {
        Ok(pos) => pos,
        Err(ModError::ByteExtract) => return Ok(None),
        Err(ModError::Syntax(message) | ModError::Semantic(message)) => return Err(message),
    };
    let mut relative = false;
    for part in parts {
        match part {
            "relative" => relative = true,
            "rawbytes" => {}
            other => return Err(format!("`{other}` is not `relative` or `rawbytes`")),
        }
    }
    Ok(Some(IsDataAt { pos, relative, negated }))
}

/// Parses `pcre`'s value: `[!]"/pattern/flags"` → the check, or (Err) the keyword a rule
/// needing an HTTP buffer is skipped under. The pattern is kept as written: its `\;` and
/// `\"` are escapes the regex syntax reads as the literal characters.
fn parse_pcre(value: &str) -> Result<Result<Pcre, String>, String> {
    let (negated, rest) = match value.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    let (inner, tail) = split_quoted(rest).ok_or_else(|| "the pattern must be a quoted string: pcre:\"/.../flags\"".to_string())?;
    if !tail.trim().is_empty() {
        return Err("text after the closing quote".to_string());
    }
    let body = inner.strip_prefix('/').ok_or_else(|| "the pattern must start with `/`".to_string())?;
    let close = body.rfind('/').ok_or_else(|| "the pattern has no closing `/`".to_string())?;
    let (pattern, flags) = (&body[..close], &body[close + 1..]);
    if pattern.is_empty() {
        return Err("empty pattern".to_string());
    }
    let mut pcre = Pcre { negated, ..Pcre::new(pattern) };
    for flag in flags.chars() {
        match flag {
            'i' => pcre.nocase = true,
            's' => pcre.dotall = true,
            'm' => pcre.multiline = true,
            'x' => pcre.extended = true,
            'A' => pcre.anchored = true,
            'G' => pcre.ungreedy = true,
            'R' => pcre.relative = true,
            // `$` is the buffer's end already; rawbytes (one buffer); match limits (a DFA has none).
            'E' | 'B' | 'O' => {}
            'U' | 'I' | 'P' | 'Q' | 'H' | 'D' | 'M' | 'C' | 'S' | 'Y' | 'V' | 'W' | 'Z' | 'K' => {
                return Ok(Err(format!("pcre/{flag}")))
            }
            other => return Err(format!("`{other}` is not a pcre flag")),
        }
    }
    Ok(Ok(pcre))
}

/// A byte_test/byte_jump number: decimal, or hexadecimal after `0x`; `Err(None)` when it
/// names a `byte_extract` variable.
fn byte_number<T: TryFrom<i128>>(text: &str, what: &str) -> Result<T, Option<String>> {
    let text = text.trim();
    if text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && !text.starts_with("0x") {
        return Err(None);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let parsed = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => i128::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse::<i128>().ok(),
        None => None,
    };
    let value = parsed.ok_or_else(|| Some(format!("{what} `{text}` is not a number")))?;
    T::try_from(if negative { -value } else { value }).map_err(|_| Some(format!("{what} `{text}` is out of range")))
}

/// Applies one of the options byte_test and byte_jump share to `read`; false when `part`
/// is not one of them.
fn byte_read_option(read: &mut ByteRead, part: &str, after_string: bool) -> Result<bool, String> {
    match part {
        "relative" => read.relative = true,
        "big" => read.little_endian = false,
        "little" => read.little_endian = true,
        "string" => read.string_base = Some(10),
        "hex" | "dec" | "oct" if after_string => read.string_base = Some(match part { "hex" => 16, "dec" => 10, _ => 8 }),
        "hex" | "dec" | "oct" => return Err(format!("`{part}` needs `string` before it")),
        _ => match part.strip_prefix("bitmask") {
            Some(mask) if mask.starts_with(char::is_whitespace) => {
                let mask: u64 = byte_number(mask, "bitmask").map_err(|e| e.unwrap_or_else(|| "bitmask must be a number".to_string()))?;
                if mask == 0 {
                    return Err("bitmask 0 masks every bit".to_string());
                }
                read.bitmask = Some(mask);
            }
            _ => return Ok(false),
        },
    }
    Ok(true)
}

/// Checks the byte count against the number's form: 1..=8 binary, 1..=20 as a string.
fn check_byte_count(read: &ByteRead) -> Result<(), String> {
    let max = if read.string_base.is_some() { 20 } else { 8 };
    if read.count == 0 || read.count > max {
        return Err(format!(
            "{} bytes: a {} number is 1 to {max} bytes",
            read.count,
            if read.string_base.is_some() { "string" } else { "binary" }
        ));
    }
    Ok(())
}

/// What a byte_test/byte_jump value parses to: the check, or (inner Err) the keyword a
/// rule needing `dce` or a `byte_extract` variable is skipped under.
type ByteParse<T> = Result<Result<T, &'static str>, String>;

/// Parses `byte_test`'s value.
fn parse_byte_test(value: &str) -> ByteParse<ByteTest> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let [count, op, test_value, offset, rest @ ..] = &parts[..] else {
        return Err("needs <count>,<operator>,<value>,<offset>".to_string());
    };
    let number = |text: &str, what: &str| -> Result<Option<i128>, String> {
        match byte_number::<i128>(text, what) {
            Ok(n) => Ok(Some(n)),
            Err(None) => Ok(None),
            Err(Some(message)) => Err(message),
        }
    };
    let (Some(count), Some(test_value), Some(offset)) = (number(count, "count")?, number(test_value, "value")?, number(offset, "offset")?) else {
        return Ok(Err("byte_extract"));
    };
    let (negated, op_text) = match op.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, *op),
    };
    let op = match op_text {
        "" | "=" => ByteOp::Eq,
        "<" => ByteOp::Lt,
        ">" => ByteOp::Gt,
        "<=" => ByteOp::Le,
        ">=" => ByteOp::Ge,
        "&" => ByteOp::And,
        "^" => ByteOp::Xor,
        other => return Err(format!("`{other}` is not an operator (< > <= >= = ! & ^)")),
    };
    let mut read = ByteRead {
        count: u8::try_from(count).map_err(|_| format!("count {count} is out of range"))?,
        offset: i32::try_from(offset).map_err(|_| format!("offset {offset} is out of range"))?,
        relative: false,
        little_endian: false,
        string_base: None,
        bitmask: None,
    };
    let value = u64::try_from(test_value).map_err(|_| format!("value {test_value} is not in 0..=2^64-1"))?;
    let mut after_string = false;
    for part in rest {
        if *part == "dce" {
            return Ok(Err("byte_test:dce"));
        }
        if !byte_read_option(&mut read, part, after_string)? {
            return Err(format!("`{part}` is not a byte_test option"));
        }
        after_string = *part == "string";
    }
    check_byte_count(&read)?;
    Ok(Ok(ByteTest { read, op, negated, value }))
}

/// Parses `byte_jump`'s value.
fn parse_byte_jump(value: &str) -> ByteParse<ByteJump> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let [count, offset, rest @ ..] = &parts[..] else {
        return Err("needs <count>,<offset>".to_string());
    };
    let (count, offset) = match (byte_number::<u8>(count, "count"), byte_number::<i32>(offset, "offset")) {
        (Err(Some(message)), _) | (_, Err(Some(message))) => return Err(message),
        (Ok(count), Ok(offset)) => (count, offset),
        _ => return Ok(Err("byte_extract")),
    };
    let mut jump = ByteJump {
        read: ByteRead { count, offset, relative: false, little_endian: false, string_base: None, bitmask: None },
        multiplier: 1,
        align: false,
        from: JumpFrom::Read,
        post_offset: 0,
    };
    let mut after_string = false;
    for part in rest {
        let (word, arg) = part.split_once(char::is_whitespace).map_or((*part, ""), |(w, a)| (w, a.trim()));
        match word {
            "dce" => return Ok(Err("byte_jump:dce")),
            "align" => jump.align = true,
            "from_beginning" | "from_end" if jump.from != JumpFrom::Read => return Err("from_beginning and from_end exclude each other".to_string()),
            "from_beginning" => jump.from = JumpFrom::Beginning,
            "from_end" => jump.from = JumpFrom::End,
            "multiplier" | "post_offset" => {
                let parsed = if word == "multiplier" {
                    byte_number::<u32>(arg, word).map(|m| jump.multiplier = m)
                } else {
                    byte_number::<i32>(arg, word).map(|p| jump.post_offset = p)
                };
                match parsed {
                    Ok(()) => {}
                    Err(None) => return Ok(Err("byte_extract")),
                    Err(Some(message)) => return Err(message),
                }
            }
            _ if byte_read_option(&mut jump.read, part, after_string)? => {}
            _ => return Err(format!("`{part}` is not a byte_jump option")),
        }
        after_string = *part == "string";
    }
    if jump.multiplier == 0 {
        return Err("multiplier must be at least 1".to_string());
    }
    check_byte_count(&jump.read)?;
    Ok(Ok(jump))
}

/// Parses `flowbits`' value: `noalert` (None), `<op>,<name>[|<name>...]`, or an
/// unsupported form (the keyword it is counted under).
fn parse_flowbit(value: &str) -> Result<Option<Result<Flowbit, String>>, String> {
    let (op, names) = match value.split_once(',') {
        Some((op, names)) => (op.trim(), Some(names.trim())),
        None => (value.trim(), None),
    };
    let op = match op.to_ascii_lowercase().as_str() {
        "noalert" if names.is_none() => return Ok(None),
        "noalert" => return Err("`noalert` takes no name".to_string()),
        "set" => FlowbitOp::Set,
        "unset" => FlowbitOp::Unset,
        "toggle" => FlowbitOp::Toggle,
        "isset" => FlowbitOp::IsSet,
        "isnotset" => FlowbitOp::IsNotSet,
        other => return Err(format!("`{other}` is not set, unset, toggle, isset, isnotset or noalert")),
    };
    let names = names.filter(|n| !n.is_empty()).ok_or_else(|| format!("`{value}` needs a name after the command"))?;
    if names.contains('&') {
        return Ok(Some(Err("flowbits:&".to_string())));
    }
    let names: Vec<String> = names.split('|').map(|n| n.trim().to_string()).collect();
    if let Some(bad) = names.iter().find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic() && !b",;\"".contains(&b))) {
        return Err(format!("`{bad}` is not a flowbit name (printable ASCII without spaces, `,`, `;` or `\"`)"));
    }
    if names.len() > 1 && !op.is_condition() {
        return Ok(Some(Err("flowbits:or-effect".to_string())));
    }
    Ok(Some(Ok(Flowbit { op, names })))
}

/// Parses `threshold`'s (`typed`) or `detection_filter`'s value: comma-separated `type`,
/// `track`, `count`, `seconds` in any order → the counting, or (inner Err) the keyword a
/// rule tracking by something else (`by_flow`) is skipped under.
fn parse_threshold(value: &str, typed: bool) -> Result<Result<Threshold, String>, String> {
    let (mut kind, mut track, mut count, mut seconds) = (None, None, None, None);
    for part in value.split(',').map(str::trim) {
        let (key, arg) = part.split_once(char::is_whitespace).map(|(k, a)| (k, a.trim())).ok_or_else(|| format!("`{part}` is not `<name> <value>`"))?;
        let number = |what: &str| -> Result<u32, String> {
            match parse_digits::<u32>(arg) {
                Some(n) if n > 0 => Ok(n),
                _ => Err(format!("{what} `{arg}` is not a number in 1..=4294967295")),
            }
        };
        let seen = match key {
            "type" if typed => kind.replace(match arg {
                "limit" => ThresholdKind::Limit,
                "threshold" => ThresholdKind::Threshold,
                "both" => ThresholdKind::Both,
                other => return Err(format!("type `{other}` is not limit, threshold or both")),
            }).is_some(),
            "track" => track.replace(match arg {
                "by_src" => Track::BySrc,
                "by_dst" => Track::ByDst,
                "by_both" => Track::ByBoth,
                "by_rule" => Track::ByRule,
                "by_flow" => return Ok(Err(format!("{}:by_flow", if typed { "threshold" } else { "detection_filter" }))),
                other => return Err(format!("track `{other}` is not by_src, by_dst, by_both or by_rule")),
            }).is_some(),
            "count" => count.replace(number("count")?).is_some(),
            "seconds" => seconds.replace(number("seconds")?).is_some(),
            other => return Err(format!("`{other}` is not {}", if typed { "type, track, count or seconds" } else { "track, count or seconds" })),
        };
        if seen {
            return Err(format!("`{key}` given twice"));
        }
    }
    let missing = |what: &str| format!("needs `{what}`");
    if typed && kind.is_none() {
        return Err(missing("type"));
    }
    Ok(Ok(Threshold {
        kind,
        track: track.ok_or_else(|| missing("track"))?,
        count: count.ok_or_else(|| missing("count"))?,
        seconds: seconds.ok_or_else(|| missing("seconds"))?,
    }))
}

/// A rule's options, collected in order.
struct Builder<'a> {
    ctx: Ctx<'a>,
    classes: &'a Classifications,
    msg: Option<String>,
    sid: Option<u32>,
    rev: Option<u32>,
    gid: Option<u32>,
    classtype: Option<String>,
    class_description: Option<String>,
    class_priority: Option<u8>,
    priority: Option<u8>,
    references: Vec<String>,
    metadata: Vec<String>,
    flow: Option<FlowMatch>,
    dsize: Option<SizeRange>,
    checks: Vec<PayloadCheck>,
    threshold: Option<Threshold>,
    detection_filter: Option<Threshold>,
    flowbits: Vec<Flowbit>,
    noalert: bool,
    /// Index in `checks` of the most recent content.
    last_content: Option<usize>,
    fast_pattern_seen: bool,
    /// Unsupported keywords seen so far, each once.
    unsupported: Vec<String>,
}

impl<'a> Builder<'a> {
    /// An empty builder for the rule at `ctx`.
    fn new(ctx: Ctx<'a>, classes: &'a Classifications) -> Self {
        Builder {
            ctx,
            classes,
            msg: None,
            sid: None,
            rev: None,
            gid: None,
            classtype: None,
            class_description: None,
            class_priority: None,
            priority: None,
            references: Vec::new(),
            metadata: Vec::new(),
            flow: None,
            dsize: None,
            checks: Vec::new(),
            threshold: None,
            detection_filter: None,
            flowbits: Vec::new(),
            noalert: false,
            last_content: None,
            fast_pattern_seen: false,
            unsupported: Vec::new(),
        }
    }

    /// Records an unsupported keyword (once).
    fn unsupported(&mut self, keyword: &str) {
        if !self.unsupported.iter().any(|seen| seen == keyword) {
            self.unsupported.push(keyword.to_string());
        }
    }

    /// Applies one option.
    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), ParseError> {
        let ctx = self.ctx;
        let err = |message: String| ctx.err(name, message);
        let needs = || ctx.err(name, "needs a value");
        let twice = || ctx.err(name, "given twice");
        match name {
            "msg" => {
                let value = value.ok_or_else(needs)?;
                if self.msg.is_some() {
                    return Err(twice());
                }
                self.msg = Some(decode_msg(value).map_err(err)?);
            }
            "sid" | "rev" | "gid" => {
                let value = value.ok_or_else(needs)?;
                let number = parse_digits::<u32>(value).ok_or_else(|| err(format!("`{value}` is not a number in 0..=4294967295")))?;
                let slot = match name {
                    "sid" => &mut self.sid,
                    "rev" => &mut self.rev,
                    _ => &mut self.gid,
                };
                if slot.is_some() {
                    return Err(twice());
                }
                if number == 0 && name != "rev" {
                    return Err(err("must be at least 1".to_string()));
                }
                *slot = Some(number);
            }
            "classtype" => {
                let value = value.ok_or_else(needs)?;
                if self.classtype.is_some() {
                    return Err(twice());
                }
                if !is_class_name(value) {
                    return Err(err(format!("`{value}` is not a classtype name")));
                }
                if !self.classes.is_empty() {
                    let (description, priority) = self
                        .classes
                        .get(value)
                        .ok_or_else(|| err(format!("unknown classtype `{value}` (not in the classification config)")))?;
                    self.class_priority = Some(priority);
                    self.class_description = Some(description.to_string());
                }
                self.classtype = Some(value.to_string());
            }
            "priority" => {
                let value = value.ok_or_else(needs)?;
                if self.priority.is_some() {
                    return Err(twice());
                }
                self.priority = Some(parse_priority(value).ok_or_else(|| err(format!("`{value}` is not in 1..=255")))?);
            }
            "reference" => self.references.push(value.ok_or_else(needs)?.to_string()),
            "metadata" => self.metadata.push(value.ok_or_else(needs)?.to_string()),
            "target" => {
                value.ok_or_else(needs)?;
            }
            "content" => {
                let value = value.ok_or_else(needs)?;
                let (negated, bytes) = decode_content(value).map_err(err)?;
                self.last_content = Some(self.checks.len());
                self.checks.push(PayloadCheck::Content(Content {
                    bytes,
                    negated,
                    ..Content::default()
                }));
            }
            "isdataat" => {
                let value = value.ok_or_else(needs)?;
                match parse_isdataat(value).map_err(err)? {
                    Some(check) => self.checks.push(PayloadCheck::IsDataAt(check)),
                    None => self.unsupported("byte_extract"),
                }
            }
            "pcre" => match parse_pcre(value.ok_or_else(needs)?).map_err(err)? {
                Ok(pcre) => self.checks.push(PayloadCheck::Pcre(pcre)),
                Err(keyword) => self.unsupported(&keyword),
            },
            "byte_test" => match parse_byte_test(value.ok_or_else(needs)?).map_err(err)? {
                Ok(test) => self.checks.push(PayloadCheck::ByteTest(test)),
                Err(keyword) => self.unsupported(keyword),
            },
            "byte_jump" => match parse_byte_jump(value.ok_or_else(needs)?).map_err(err)? {
                Ok(jump) => self.checks.push(PayloadCheck::ByteJump(jump)),
                Err(keyword) => self.unsupported(keyword),
            },
            "threshold" | "detection_filter" => {
                let value = value.ok_or_else(needs)?;
                let slot = if name == "threshold" { &mut self.threshold } else { &mut self.detection_filter };
                if slot.is_some() {
                    return Err(twice());
                }
                match parse_threshold(value, name == "threshold").map_err(err)? {
                    Ok(t) => *slot = Some(t),
                    Err(keyword) => self.unsupported(&keyword),
                }
            }
            "flowbits" => match parse_flowbit(value.ok_or_else(needs)?).map_err(err)? {
                    None => self.noalert = true,
                    Some(Ok(flowbit)) => self.flowbits.push(flowbit),
                    Some(Err(keyword)) => self.unsupported(&keyword),
                },
            "noalert" => {
                if value.is_some() {
                    return Err(err("takes no value".to_string()));
                }
                self.noalert = true;
            }
            "flow" => {
                let value = value.ok_or_else(needs)?;
                if self.flow.is_some() {
                    return Err(twice());
                }
                self.flow = Some(self.parse_flow(value)?);
            }
            "dsize" => {
                let value = value.ok_or_else(needs)?;
                if self.dsize.is_some() {
                    return Err(twice());
                }
                match parse_dsize(value.trim()).map_err(err)? {
                    Dsize::Range(range) => self.dsize = Some(range),
                    Dsize::Negated => self.unsupported("dsize:!"),
                }
            }
            modifier if is_content_modifier(modifier) => {
                let lenient = !self.unsupported.is_empty();
                let content = match self.last_content.and_then(|index| self.checks.get_mut(index)) {
                    Some(PayloadCheck::Content(content)) => content,
                    _ if lenient => return Ok(()),
                    _ => return Err(err("needs a preceding content".to_string())),
                };
                match modify(content, &mut self.fast_pattern_seen, modifier, value) {
                    Ok(()) => {}
                    Err(ModError::ByteExtract) => self.unsupported("byte_extract"),
                    Err(ModError::Syntax(message)) => return Err(err(message)),
                    Err(ModError::Semantic(_)) if lenient => {}
                    Err(ModError::Semantic(message)) => return Err(err(message)),
                }
            }
            other => self.unsupported(other),
        }
        Ok(())
    }

    /// Parses `flow`'s comma-separated value.
    fn parse_flow(&mut self, value: &str) -> Result<FlowMatch, ParseError> {
        let err = |message: String| self.ctx.err("flow", message);
        let mut flow = FlowMatch::default();
        let mut unsupported = Vec::new();
        for part in value.split(',') {
            let part = part.trim().to_ascii_lowercase();
            let to_server = match part.as_str() {
                "to_server" | "from_client" => Some(true),
                "to_client" | "from_server" => Some(false),
                "established" => {
                    flow.established = true;
                    None
                }
                "not_established" => {
                    flow.not_established = true;
                    None
                }
                "stateless" => {
                    flow.stateless = true;
                    None
                }
                "only_stream" | "no_stream" | "only_frag" | "no_frag" => {
                    unsupported.push(format!("flow:{part}"));
                    None
                }
                "" => return Err(err("empty flow option".to_string())),
                other => return Err(err(format!("unknown flow option `{other}`"))),
            };
            if let Some(to_server) = to_server {
                if flow.to_server == Some(!to_server) {
                    return Err(err("to_server and to_client contradict each other".to_string()));
                }
                flow.to_server = Some(to_server);
            }
        }
        if flow.established && flow.not_established {
            return Err(err("established and not_established contradict each other".to_string()));
        }
        for keyword in unsupported {
            self.unsupported(&keyword);
        }
        Ok(flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection;
    use proptest::prelude::*;

    const FILE: &str = "t.rules";

    /// Parses one rule at line 7 of `t.rules` with Suricata's default variables.
    fn try_rule(text: &str) -> Result<Parsed, ParseError> {
        parse_rule(text, FILE, 7, &Vars::suricata_defaults(), &Classifications::default())
    }

    /// A rule that must load.
    fn sig_full(text: &str) -> Signature {
        match try_rule(text) {
            Ok(Parsed::Signature(signature)) => signature,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// A `tcp any any -> any any` rule with these options that must load.
    fn sig(options: &str) -> Signature {
        sig_full(&format!("alert tcp any any -> any any ({options})"))
    }

    /// A rule that must be skipped.
    fn skip_full(text: &str) -> Skipped {
        match try_rule(text) {
            Ok(Parsed::Skipped(skipped)) => skipped,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// The unsupported keywords of a `tcp` rule with these options.
    fn skip(options: &str) -> Vec<String> {
        skip_full(&format!("alert tcp any any -> any any ({options})")).keywords
    }

    /// A rule that must fail.
    fn fail_full(text: &str) -> ParseError {
        match try_rule(text) {
            Err(error) => error,
            Ok(parsed) => panic!("{text}: parsed as {parsed:?}"),
        }
    }

    /// The error of a `tcp` rule with these options.
    fn fail(options: &str) -> ParseError {
        fail_full(&format!("alert tcp any any -> any any ({options})"))
    }

    /// Asserts an error is at t.rules:7 about `keyword`, its message containing `needle`.
    fn assert_err(error: &ParseError, keyword: &str, needle: &str) {
        assert_eq!(error.file, FILE, "{error}");
        assert_eq!(error.line, 7, "{error}");
        assert_eq!(error.keyword, keyword, "{error}");
        assert!(error.message.contains(needle), "`{needle}` not in: {error}");
        assert!(error.to_string().starts_with(&format!("{FILE}:7: {keyword}: ")), "{error}");
    }

    /// A prefix from `addr` or `addr/len` text.
    fn net(text: &str) -> Cidr {
        match text.split_once('/') {
            Some((addr, len)) => Cidr {
                addr: addr.parse().unwrap(),
                len: len.parse().unwrap(),
            },
            None => {
                let addr: IpAddr = text.parse().unwrap();
                Cidr {
                    addr,
                    len: if addr.is_ipv4() { 32 } else { 128 },
                }
            }
        }
    }

    /// An address match from include/exclude prefix lists.
    fn addrs(include: &[&str], exclude: &[&str]) -> AddrMatch {
        AddrMatch {
            include: include.iter().map(|c| net(c)).collect(),
            exclude: exclude.iter().map(|c| net(c)).collect(),
        }
    }

    /// The source address field of `alert ip SRC any -> any any (sid:1;)`.
    fn src(field: &str) -> AddrMatch {
        sig_full(&format!("alert ip {field} any -> any any (sid:1;)")).src
    }

    /// The source port field of `alert tcp any PORTS -> any any (sid:1;)`.
    fn sport(field: &str) -> PortMatch {
        sig_full(&format!("alert tcp any {field} -> any any (sid:1;)")).src_ports
    }

    /// The `i`-th check, which must be a content.
    fn content(signature: &Signature, i: usize) -> &Content {
        match signature.checks.get(i) {
            Some(PayloadCheck::Content(content)) => content,
            other => panic!("check {i}: {other:?}"),
        }
    }

    /// A plain content of these bytes.
    fn plain(bytes: &[u8]) -> Content {
        Content {
            bytes: bytes.to_vec(),
            ..Content::default()
        }
    }

    // ---- whole rules ----

    #[test]
    fn minimal_rule_has_defaults() {
        let signature = sig_full("alert tcp any any -> any any (sid:1;)");
        assert_eq!(
            signature,
            Signature {
                action: SigAction::Alert,
                proto: SigProto::Tcp,
                src: AddrMatch::default(),
                src_ports: PortMatch::default(),
                dst: AddrMatch::default(),
                dst_ports: PortMatch::default(),
                bidirectional: false,
                msg: String::new(),
                sid: 1,
                rev: 0,
                gid: 1,
                classtype: None,
                category: None,
                priority: 3,
                references: vec![],
                metadata: vec![],
                flow: FlowMatch::default(),
                dsize: None,
                checks: vec![],
                threshold: None,
                detection_filter: None,
                flowbits: vec![],
                noalert: false,
                origin: Origin {
                    file: FILE.to_string(),
                    line: 7
                },
            }
        );
    }

    #[test]
    fn full_rule_fields() {
        let text = concat!(
            r#"drop udp $HOME_NET 1024: <> 8.8.8.8 53 (msg:"ET DNS \"odd\"\; query"; flow:to_server; dsize:>10; "#,
            r#"content:"|01 00|"; offset:2; depth:2; content:"abc"; distance:4; within:10; nocase; fast_pattern; "#,
            r#"isdataat:!1,relative; reference:url,example.com/a; classtype:bad-unknown; "#,
            r#"metadata:created_at 2024_01_01, updated_at 2024_02_02; metadata:signature_severity Major; "#,
            r#"sid:2000001; rev:5; gid:3; priority:2; target:dest_ip;)"#,
        );
        let signature = sig_full(text);
        assert_eq!(signature.action, SigAction::Drop);
        assert_eq!(signature.proto, SigProto::Udp);
        assert_eq!(signature.src, addrs(&["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"], &[]));
        assert_eq!(
            signature.src_ports,
            PortMatch {
                include: vec![(1024, 65535)],
                exclude: vec![]
            }
        );
        assert!(signature.bidirectional);
        assert_eq!(signature.dst, addrs(&["8.8.8.8"], &[]));
        assert_eq!(
            signature.dst_ports,
            PortMatch {
                include: vec![(53, 53)],
                exclude: vec![]
            }
        );
        assert_eq!(signature.msg, "ET DNS \"odd\"; query");
        assert_eq!(
            (signature.sid, signature.rev, signature.gid, signature.priority),
            (2000001, 5, 3, 2)
        );
        assert_eq!(signature.classtype.as_deref(), Some("bad-unknown"));
        assert_eq!(signature.references, vec!["url,example.com/a".to_string()]);
        assert_eq!(
            signature.metadata,
            vec![
                "created_at 2024_01_01, updated_at 2024_02_02".to_string(),
                "signature_severity Major".to_string()
            ]
        );
        assert_eq!(
            signature.flow,
            FlowMatch {
                to_server: Some(true),
                ..FlowMatch::default()
            }
        );
        assert_eq!(signature.dsize, Some(SizeRange { min: 11, max: 65535 }));
        assert_eq!(
            signature.checks,
            vec![
                PayloadCheck::Content(Content {
                    bytes: vec![1, 0],
                    offset: Some(2),
                    depth: Some(2),
                    ..Content::default()
                }),
                PayloadCheck::Content(Content {
                    bytes: b"abc".to_vec(),
                    distance: Some(4),
                    within: Some(10),
                    nocase: true,
                    fast_pattern: true,
                    ..Content::default()
                }),
                PayloadCheck::IsDataAt(IsDataAt {
                    pos: 1,
                    relative: true,
                    negated: true
                }),
            ]
        );
    }

    #[test]
    fn actions() {
        for (word, action) in [
            ("alert", SigAction::Alert),
            ("drop", SigAction::Drop),
            ("pass", SigAction::Pass),
            ("reject", SigAction::Reject),
            ("rejectsrc", SigAction::Reject),
            ("rejectdst", SigAction::Reject),
            ("rejectboth", SigAction::Reject),
        ] {
            assert_eq!(
                sig_full(&format!("{word} tcp any any -> any any (sid:1;)")).action,
                action,
                "{word}"
            );
        }
        assert_err(
            &fail_full("block tcp any any -> any any (sid:1;)"),
            "action",
            "unknown action `block`",
        );
        assert_err(&fail_full("Alert tcp any any -> any any (sid:1;)"), "action", "`Alert`");
    }

    #[test]
    fn protocols() {
        for (word, proto) in [
            ("tcp", SigProto::Tcp),
            ("TCP", SigProto::Tcp),
            ("tcp-pkt", SigProto::Tcp),
            ("tcp-stream", SigProto::Tcp),
            ("udp", SigProto::Udp),
            ("icmp", SigProto::Icmp),
            ("icmpv6", SigProto::Icmp),
            ("icmp6", SigProto::Icmp),
            ("ip", SigProto::Ip),
        ] {
            assert_eq!(
                sig_full(&format!("alert {word} any any -> any any (sid:1;)")).proto,
                proto,
                "{word}"
            );
        }
        assert_err(&fail_full("alert t/cp any any -> any any (sid:1;)"), "protocol", "`t/cp`");
        assert_err(&fail_full("alert 6 any any -> any any (sid:1;)"), "protocol", "`6`");
    }

    #[test]
    fn application_protocols_are_skipped() {
        for proto in [
            "http", "dns", "tls", "smb", "ftp", "ssh", "smtp", "dcerpc", "krb5", "dhcp", "http2", "quic", "modbus", "ikev2", "sctp",
        ] {
            let skipped = skip_full(&format!("alert {proto} any any -> any any (msg:\"x\"; sid:9;)"));
            assert_eq!(
                skipped,
                Skipped {
                    line: 7,
                    sid: Some(9),
                    keywords: vec![format!("protocol:{proto}")]
                }
            );
        }
        let skipped = skip_full(
            "alert HTTP $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (http.uri; content:\"/a\"; depth:1; http.uri; pcre:\"/a/U\"; sid:3;)",
        );
        assert_eq!(skipped.keywords, vec!["protocol:http", "http.uri", "pcre/U"]);
    }

    #[test]
    fn skipped_rules_still_need_a_valid_header() {
        assert_err(
            &fail_full("alert http $NOPE any -> any any (sid:1;)"),
            "NOPE",
            "undefined variable $NOPE",
        );
        assert_err(&fail_full("alert http any any <- any any (sid:1;)"), "direction", "`<-`");
        assert_err(
            &fail_full("alert http any any -> any any (http.uri; content:\"a; sid:1;)"),
            "content",
            "unterminated",
        );
        assert_err(
            &fail_full("alert http any any -> any any (http.uri; content:\"|4|\"; sid:1;)"),
            "content",
            "odd number",
        );
        assert_err(&fail_full("alert http any any -> any any (msg:\"x\";)"), "sid", "no sid");
    }

    #[test]
    fn header_shape_errors() {
        assert_err(&fail_full("alert tcp any any -> any any"), "header", "missing the `(options)`");
        assert_err(
            &fail_full("alert tcp any any -> any any (sid:1;) trailing"),
            "header",
            "must end with `)`",
        );
        assert_err(&fail_full("alert tcp any -> any any (sid:1;)"), "header", "found 6 fields");
        assert_err(&fail_full("alert tcp any any -> any any any (sid:1;)"), "header", "found 8 fields");
        assert_err(&fail_full("   "), "header", "empty rule");
        // Lists may hold spaces; the header may be spread over odd whitespace.
        let signature = sig_full("alert\ttcp [10.0.0.0/8, 192.168.1.1]  any ->\tany [80, 443] (sid:1;)");
        assert_eq!(signature.src, addrs(&["10.0.0.0/8", "192.168.1.1"], &[]));
        assert_eq!(signature.dst_ports.include, vec![(80, 80), (443, 443)]);
    }

    #[test]
    fn directions() {
        assert!(!sig_full("alert tcp any any -> any any (sid:1;)").bidirectional);
        assert!(sig_full("alert tcp any any <> any any (sid:1;)").bidirectional);
        assert_err(
            &fail_full("alert tcp any any <- any any (sid:1;)"),
            "direction",
            "swap source and destination",
        );
        assert_err(&fail_full("alert tcp any any => any any (sid:1;)"), "direction", "`=>`");
    }

    // ---- addresses ----

    #[test]
    fn addresses() {
        assert_eq!(src("any"), AddrMatch::default());
        assert_eq!(src("ANY"), AddrMatch::default());
        assert_eq!(src("1.2.3.4"), addrs(&["1.2.3.4/32"], &[]));
        assert_eq!(src("10.1.2.3/8"), addrs(&["10.0.0.0/8"], &[]), "host bits masked");
        assert_eq!(src("0.0.0.0/0"), addrs(&["0.0.0.0/0"], &[]));
        assert_eq!(src("10.9.9.9/255.255.0.0"), addrs(&["10.9.0.0/16"], &[]));
        assert_eq!(src("2001:db8::1"), addrs(&["2001:db8::1/128"], &[]));
        assert_eq!(src("2001:db8:ffff::/32"), addrs(&["2001:db8::/32"], &[]));
        assert_eq!(src("[::1, 10.0.0.1]"), addrs(&["::1", "10.0.0.1"], &[]));
        assert_eq!(src("!10.0.0.0/8"), addrs(&[], &["10.0.0.0/8"]));
        assert_eq!(src("[10.0.0.0/8,!10.1.0.0/16]"), addrs(&["10.0.0.0/8"], &["10.1.0.0/16"]));
        assert_eq!(src("![1.1.1.1,2.2.2.2]"), addrs(&[], &["1.1.1.1", "2.2.2.2"]));
        assert_eq!(
            src("![1.1.1.1,!2.2.2.2]"),
            addrs(&["2.2.2.2"], &["1.1.1.1"]),
            "double negation flips back"
        );
        assert_eq!(src("!!3.3.3.3"), addrs(&["3.3.3.3"], &[]));
        assert_eq!(src("[1.1.1.1,[2.2.2.2,[!3.3.3.3]]]"), addrs(&["1.1.1.1", "2.2.2.2"], &["3.3.3.3"]));
        assert_eq!(src("[any,!10.0.0.0/8]"), addrs(&[], &["10.0.0.0/8"]));
        assert_eq!(src("[10.0.0.0/8,any]"), addrs(&[], &[]), "any swallows the includes");
        assert_eq!(
            src("10.0.0.1-10.0.0.6"),
            addrs(&["10.0.0.1", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6"], &[])
        );
        assert_eq!(src("0.0.0.0-255.255.255.255"), addrs(&["0.0.0.0/0"], &[]));
        assert_eq!(src("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), addrs(&["::/0"], &[]));
        assert_eq!(src("2001:db8::-2001:db8::1"), addrs(&["2001:db8::/127"], &[]));
    }

    #[test]
    fn address_variables() {
        assert_eq!(src("$HOME_NET"), addrs(&["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"], &[]));
        assert_eq!(src("$EXTERNAL_NET"), addrs(&[], &["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"]));
        assert_eq!(
            src("!$EXTERNAL_NET"),
            addrs(&["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"], &[])
        );
        assert_eq!(src("$HTTP_SERVERS"), src("$HOME_NET"), "nested variable");
        assert_eq!(
            src("[$DNS_SERVERS,!192.168.5.5]"),
            addrs(&["192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"], &["192.168.5.5"])
        );

        let mut vars = Vars::default();
        vars.set("A", "[$B, 1.1.1.1]");
        vars.set("$B", "!$C");
        vars.set("C", "2.2.2.2");
        assert_eq!(vars.get("B"), Some("!$C"), "a leading $ in set is dropped");
        let parsed = parse_rule("alert ip $A any -> !$A any (sid:1;)", FILE, 7, &vars, &Classifications::default()).unwrap();
        let Parsed::Signature(signature) = parsed else { panic!() };
        assert_eq!(signature.src, addrs(&["1.1.1.1"], &["2.2.2.2"]));
        assert_eq!(signature.dst, addrs(&["2.2.2.2"], &["1.1.1.1"]));

        vars.set("HOME_NET", "10.0.0.0/8");
        let parsed = parse_rule(
            "alert ip $HOME_NET any -> any any (sid:1;)",
            FILE,
            7,
            &vars,
            &Classifications::default(),
        )
        .unwrap();
        let Parsed::Signature(signature) = parsed else { panic!() };
        assert_eq!(signature.src, addrs(&["10.0.0.0/8"], &[]), "set overrides");
    }

    #[test]
    fn address_errors() {
        let bad = |field: &str| fail_full(&format!("alert ip {field} any -> any any (sid:1;)"));
        assert_err(&bad("!any"), "address", "`!any` matches nothing");
        assert_err(&bad("[1.1.1.1,![2.2.2.2,any]]"), "address", "`!any`");
        assert_err(&bad("10.0.0.300"), "address", "`10.0.0.300` is not an IP address");
        assert_err(&bad("10.0.0.0/33"), "address", "prefix length `33`");
        assert_err(&bad("::/129"), "address", "prefix length `129`");
        assert_err(&bad("10.0.0.0/255.0.255.0"), "address", "not contiguous");
        assert_err(&bad("10.0.0.9-10.0.0.1"), "address", "not a range");
        assert_err(&bad("10.0.0.1-::1"), "address", "not a range");
        assert_err(&bad("[1.1.1.1"), "address", "missing `]`");
        assert_err(
            &fail_full("alert ip any any -> [1.1.1.1, 2.2.2.2 any (sid:1;)"),
            "address",
            "missing `]`",
        );
        assert_err(&fail_full("alert [ip any any -> any any (sid:1;)"), "header", "missing `]`");
        assert_err(&bad("[1.1.1.1]]"), "address", "text after the closing `]`");
        assert_err(&bad("[1.1.1.1,,2.2.2.2]"), "address", "empty list item");
        assert_err(&bad("[]"), "address", "empty list item");
        assert_err(&bad("$"), "address", "not a variable name");
        assert_err(&bad("$NOPE"), "NOPE", "undefined variable $NOPE");
        assert_err(&bad("$HTTP_PORTS"), "HTTP_PORTS", "`80` is not an IP address");
        let deep = format!("{}1.1.1.1{}", "[".repeat(40), "]".repeat(40));
        assert_err(&bad(&deep), "address", "nest more than");
        let negations = format!("{}1.1.1.1", "!".repeat(10_001));
        assert_eq!(src(&negations), addrs(&[], &["1.1.1.1"]), "many negations are fine");
    }

    #[test]
    fn variable_cycles_and_errors_inside_values() {
        let mut vars = Vars::suricata_defaults();
        vars.set("A", "[1.1.1.1,$B]");
        vars.set("B", "$C");
        vars.set("C", "!$A");
        vars.set("SELF", "$SELF");
        vars.set("BROKEN", "[10.0.0.0/8,10.0.0.256]");
        vars.set("OUTER", "$BROKEN");
        let parse = |text: &str| parse_rule(text, FILE, 7, &vars, &Classifications::default()).unwrap_err();
        assert_err(
            &parse("alert ip $A any -> any any (sid:1;)"),
            "A",
            "variable cycle: $A -> $B -> $C -> $A",
        );
        assert_err(
            &parse("alert ip $SELF any -> any any (sid:1;)"),
            "SELF",
            "variable cycle: $SELF -> $SELF",
        );
        assert_err(&parse("alert ip $OUTER any -> any any (sid:1;)"), "BROKEN", "`10.0.0.256`");
        // The same variable twice side by side is not a cycle.
        let parsed = parse_rule(
            "alert ip [$HOME_NET,$HOME_NET] any -> any any (sid:1;)",
            FILE,
            7,
            &vars,
            &Classifications::default(),
        );
        assert!(matches!(parsed, Ok(Parsed::Signature(_))));
    }

    // ---- ports ----

    #[test]
    fn ports() {
        assert_eq!(sport("any"), PortMatch::default());
        assert_eq!(
            sport("0"),
            PortMatch {
                include: vec![(0, 0)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("80"),
            PortMatch {
                include: vec![(80, 80)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("1024:65535"),
            PortMatch {
                include: vec![(1024, 65535)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("1024:"),
            PortMatch {
                include: vec![(1024, 65535)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport(":1023"),
            PortMatch {
                include: vec![(0, 1023)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("[80, 443,8000:8080]"),
            PortMatch {
                include: vec![(80, 80), (443, 443), (8000, 8080)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("!80"),
            PortMatch {
                include: vec![],
                exclude: vec![(80, 80)]
            }
        );
        assert_eq!(
            sport("[1:1000,!80]"),
            PortMatch {
                include: vec![(1, 1000)],
                exclude: vec![(80, 80)]
            }
        );
        assert_eq!(
            sport("![80,![443]]"),
            PortMatch {
                include: vec![(443, 443)],
                exclude: vec![(80, 80)]
            }
        );
        assert_eq!(
            sport("[any,!22]"),
            PortMatch {
                include: vec![],
                exclude: vec![(22, 22)]
            }
        );
        assert_eq!(
            sport("$HTTP_PORTS"),
            PortMatch {
                include: vec![(80, 80)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("$SHELLCODE_PORTS"),
            PortMatch {
                include: vec![],
                exclude: vec![(80, 80)]
            }
        );
        assert_eq!(
            sport("$FILE_DATA_PORTS"),
            PortMatch {
                include: vec![(80, 80), (110, 110), (143, 143)],
                exclude: vec![]
            }
        );
        assert_eq!(
            sport("!$FILE_DATA_PORTS"),
            PortMatch {
                include: vec![],
                exclude: vec![(80, 80), (110, 110), (143, 143)]
            }
        );
    }

    #[test]
    fn port_errors() {
        let bad = |field: &str| fail_full(&format!("alert tcp any {field} -> any any (sid:1;)"));
        assert_err(&bad("65536"), "port", "`65536` is not a port");
        assert_err(&bad("-1"), "port", "`-1` is not a port");
        assert_err(&bad("+80"), "port", "`+80`");
        assert_err(&bad("http"), "port", "`http`");
        assert_err(&bad("100:10"), "port", "low > high");
        assert_err(&bad(":"), "port", "not a port range");
        assert_err(&bad("1:2:3"), "port", "`2:3`");
        assert_err(&bad("!any"), "port", "`!any`");
        assert_err(&bad("[80,"), "port", "missing `]`");
        assert_err(&bad("$HOME_NET"), "HOME_NET", "`192.168.0.0/16` is not a port");
        assert_err(&fail_full("alert tcp any any -> any 99999 (sid:1;)"), "port", "`99999`");
    }

    // ---- options syntax ----

    #[test]
    fn option_syntax() {
        // Whitespace around names and values, a missing final `;`, upper-case names.
        let signature = sig("  MSG : \"a b\" ;  Sid:  42 ; rev : 2");
        assert_eq!((signature.msg.as_str(), signature.sid, signature.rev), ("a b", 42, 2));
        // `;` inside quotes does not end the option, escaped or not.
        assert_eq!(sig("msg:\"a;b\\;c\"; sid:1;").msg, "a;b;c");
        // Rules may be spread over lines (parse_rule treats newlines as whitespace).
        assert_eq!(sig("msg:\"x\";\n    sid:2;\n").sid, 2);
        assert_err(&fail("msg:\"open; sid:1;"), "msg", "unterminated quoted string");
        assert_err(&fail("sid:1;; msg:\"x\";"), "options", "an empty option");
        assert_err(&fail("sid:1; :x;"), "options", "an empty option");
        assert_err(&fail("msg \"x\"; sid:1;"), "options", "`msg \"x\"` is not an option name");
    }

    #[test]
    fn msg_escapes() {
        assert_eq!(
            sig(r#"msg:"quote \" semi \; back \\ colon \: done"; sid:1;"#).msg,
            r#"quote " semi ; back \ colon : done"#
        );
        assert_eq!(
            sig(r#"msg:"pipes | are \|plain"; sid:1;"#).msg,
            "pipes | are |plain",
            "msg has no hex, other escapes unescape"
        );
        assert_eq!(sig("msg:unquoted words; sid:1;").msg, "unquoted words");
        assert_eq!(sig("msg:\"ünïcödé\"; sid:1;").msg, "ünïcödé");
        assert_err(&fail(r#"msg:"a" b; sid:1;"#), "msg", "text after the closing quote");
        assert_err(&fail(r#"msg:"a\"; sid:1;"#), "msg", "unterminated");
        assert_err(&fail("msg; sid:1;"), "msg", "needs a value");
        assert_err(&fail("msg:\"a\"; msg:\"b\"; sid:1;"), "msg", "given twice");
    }

    #[test]
    fn sid_rev_gid() {
        let signature = sig("sid:4294967295; rev:0; gid:2;");
        assert_eq!((signature.sid, signature.rev, signature.gid), (u32::MAX, 0, 2));
        assert_err(&fail("msg:\"x\";"), "sid", "no sid");
        assert_err(&fail("sid:0;"), "sid", "at least 1");
        assert_err(&fail("sid:4294967296;"), "sid", "not a number");
        assert_err(&fail("sid:-1;"), "sid", "not a number");
        assert_err(&fail("sid:12a;"), "sid", "not a number");
        assert_err(&fail("sid;"), "sid", "needs a value");
        assert_err(&fail("sid:1; sid:2;"), "sid", "given twice");
        assert_err(&fail("sid:1; rev:x;"), "rev", "not a number");
        assert_err(&fail("sid:1; rev:1; rev:2;"), "rev", "given twice");
        assert_err(&fail("sid:1; gid:0;"), "gid", "at least 1");
    }

    #[test]
    fn classtype_and_priority() {
        let classes = Classifications::parse(
            concat!(
                "# comment\n\nconfig classification: trojan-activity,A Network Trojan was detected,1\n",
                "config classification:misc-activity, Misc activity ,3\n",
            ),
            "classification.config",
        )
        .unwrap();
        let parse = |options: &str| {
            parse_rule(
                &format!("alert tcp any any -> any any ({options})"),
                FILE,
                7,
                &Vars::default(),
                &classes,
            )
        };
        let loaded = |options: &str| match parse(options) {
            Ok(Parsed::Signature(signature)) => signature,
            other => panic!("{other:?}"),
        };
        assert_eq!(loaded("classtype:trojan-activity; sid:1;").priority, 1);
        assert_eq!(
            loaded("classtype:trojan-activity; sid:1;").classtype.as_deref(),
            Some("trojan-activity")
        );
        assert_eq!(loaded("classtype:misc-activity; sid:1;").category.as_deref(), Some("Misc activity"), "the description, trimmed");
        assert_eq!(loaded("classtype:trojan-activity; priority:4; sid:1;").priority, 4);
        assert_eq!(
            loaded("priority:4; classtype:trojan-activity; sid:1;").priority,
            4,
            "order does not matter"
        );
        assert_eq!(loaded("sid:1;").priority, 3);
        assert_err(
            &parse("classtype:nope; sid:1;").unwrap_err(),
            "classtype",
            "unknown classtype `nope`",
        );
        // Without a classification config any classtype goes, with the default priority.
        assert_eq!(sig("classtype:whatever; sid:1;").priority, 3);
        assert_eq!(sig("priority:255; sid:1;").priority, 255);
        assert_err(&fail("priority:0; sid:1;"), "priority", "1..=255");
        assert_err(&fail("priority:256; sid:1;"), "priority", "1..=255");
        assert_err(&fail("priority:1; priority:2; sid:1;"), "priority", "given twice");
        assert_err(&fail("classtype:a b; sid:1;"), "classtype", "not a classtype name");
        assert_err(&fail("classtype:a; classtype:b; sid:1;"), "classtype", "given twice");
    }

    #[test]
    fn classification_file() {
        let classes = Classifications::parse(
            concat!(
                "config classification: web-attack,Web Application Attack, with a comma,1\n",
                "  # indented comment\r\nconfig  classification : a_b,x,255\n",
            ),
            "c.config",
        )
        .unwrap();
        assert_eq!(classes.len(), 2);
        assert!(!classes.is_empty());
        assert_eq!(classes.get("web-attack"), Some(("Web Application Attack, with a comma", 1)));
        assert_eq!(classes.get("a_b"), Some(("x", 255)));
        assert_eq!(classes.get("nope"), None);
        assert!(Classifications::default().is_empty());

        let error = |text: &str| Classifications::parse(text, "c.config").unwrap_err();
        let e = error("\n\nconfig reference: x http://");
        assert_eq!((e.file.as_str(), e.line, e.keyword.as_str()), ("c.config", 3, "classification"));
        assert!(e.to_string().starts_with("c.config:3: classification: expected"), "{e}");
        assert!(error("config classification: a,b").message.contains("expected"));
        assert!(error("config classification: a,b,0").message.contains("priority `0`"));
        assert!(error("config classification: a,b,x").message.contains("priority `x`"));
        assert!(error("config classification: a b,c,1")
            .message
            .contains("not a valid classtype name"));
        let e = error("config classification: a,b,1\nconfig classification: a,c,2");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("defined twice"));
    }

    #[test]
    fn reference_metadata_target() {
        let signature = sig("reference:cve,2021-44228; reference:url,a.example/b\\;c; metadata:k v; target:src_ip; sid:1;");
        assert_eq!(
            signature.references,
            vec!["cve,2021-44228".to_string(), "url,a.example/b\\;c".to_string()],
            "verbatim"
        );
        assert_eq!(signature.metadata, vec!["k v".to_string()]);
        assert_err(&fail("reference; sid:1;"), "reference", "needs a value");
        assert_err(&fail("metadata; sid:1;"), "metadata", "needs a value");
    }

    // ---- content ----

    #[test]
    fn content_decoding() {
        assert_eq!(sig("content:\"abc\"; sid:1;").checks, vec![PayloadCheck::Content(plain(b"abc"))]);
        assert_eq!(content(&sig("content:\"|41 42 0d0a|\"; sid:1;"), 0).bytes, b"AB\r\n");
        assert_eq!(content(&sig("content:\"|4142|\"; sid:1;"), 0).bytes, b"AB");
        assert_eq!(content(&sig("content:\"|ff FE|\"; sid:1;"), 0).bytes, [0xff, 0xfe]);
        assert_eq!(
            content(&sig("content:\"GET|20|/x|0d 0a|Host\"; sid:1;"), 0).bytes,
            b"GET /x\r\nHost"
        );
        assert_eq!(content(&sig("content:\"a||b\"; sid:1;"), 0).bytes, b"ab");
        assert_eq!(content(&sig(r#"content:"q\"s\;b\\c\:"; sid:1;"#), 0).bytes, b"q\"s;b\\c:");
        assert_eq!(content(&sig("content:\"a;b\"; sid:1;"), 0).bytes, b"a;b");
        assert_eq!(content(&sig("content:\"é\"; sid:1;"), 0).bytes, "é".as_bytes());
        assert_eq!(
            sig("content:!\"evil\"; sid:1;").checks,
            vec![PayloadCheck::Content(Content {
                negated: true,
                ..plain(b"evil")
            })]
        );
        assert!(content(&sig("content: ! \"evil\" ; sid:1;"), 0).negated);
    }

    #[test]
    fn content_errors() {
        assert_err(&fail("content:\"\"; sid:1;"), "content", "empty pattern");
        assert_err(&fail("content:\"||\"; sid:1;"), "content", "empty pattern");
        assert_err(&fail("content:\"|414|\"; sid:1;"), "content", "odd number of hex digits");
        assert_err(&fail("content:\"|4g|\"; sid:1;"), "content", "`g` in a `|...|` hex section");
        assert_err(&fail("content:\"|41\"; sid:1;"), "content", "unterminated `|`");
        assert_err(&fail(r#"content:"a\x41"; sid:1;"#), "content", "`\\x` is not an escape");
        assert_err(&fail("content:abc; sid:1;"), "content", "must be a quoted string");
        assert_err(&fail("content:\"a\"b; sid:1;"), "content", "text after the closing quote");
        assert_err(&fail("content:\"a; sid:1;"), "content", "unterminated quoted string");
        assert_err(&fail("content; sid:1;"), "content", "needs a value");
    }

    #[test]
    fn content_modifier_values() {
        let c = |options: &str| content(&sig(&format!("content:\"abcd\"; {options} sid:1;")), 0).clone();
        assert_eq!(
            c("nocase;"),
            Content {
                nocase: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("offset:0;"),
            Content {
                offset: Some(0),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("offset:10; depth:4;"),
            Content {
                offset: Some(10),
                depth: Some(4),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("depth:100;"),
            Content {
                depth: Some(100),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("distance:-3;"),
            Content {
                distance: Some(-3),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("distance:0; within:4;"),
            Content {
                distance: Some(0),
                within: Some(4),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("within:7;"),
            Content {
                within: Some(7),
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("startswith;"),
            Content {
                startswith: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("endswith;"),
            Content {
                endswith: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("startswith; endswith; nocase;"),
            Content {
                startswith: true,
                endswith: true,
                nocase: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("offset:1; endswith;"),
            Content {
                offset: Some(1),
                endswith: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("fast_pattern;"),
            Content {
                fast_pattern: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("fast_pattern:only;"),
            Content {
                fast_pattern: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("fast_pattern:1,2;"),
            Content {
                fast_pattern: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(
            c("fast_pattern: 0 , 4 ;"),
            Content {
                fast_pattern: true,
                ..plain(b"abcd")
            }
        );
        assert_eq!(c("rawbytes;"), plain(b"abcd"));
        // Modifiers apply to the most recent content, even past an isdataat.
        let signature = sig("content:\"a\"; content:\"bc\"; isdataat:2,relative; nocase; distance:1; sid:1;");
        assert_eq!(content(&signature, 0), &plain(b"a"));
        assert_eq!(
            content(&signature, 1),
            &Content {
                nocase: true,
                distance: Some(1),
                ..plain(b"bc")
            }
        );
        // Suricata's flat-rule order (the same modifier on two contents) is fine.
        let signature = sig("content:\"a\"; depth:1; content:\"b\"; depth:5; sid:1;");
        assert_eq!(content(&signature, 1).depth, Some(5));
    }

    #[test]
    fn content_modifier_errors() {
        for modifier in [
            "nocase",
            "offset:1",
            "depth:1",
            "distance:1",
            "within:1",
            "startswith",
            "endswith",
            "fast_pattern",
            "rawbytes",
        ] {
            let keyword = modifier.split(':').next().unwrap();
            assert_err(
                &fail(&format!("{modifier}; content:\"a\"; sid:1;")),
                keyword,
                "needs a preceding content",
            );
            assert_err(
                &fail(&format!("isdataat:1; {modifier}; sid:1;")),
                keyword,
                "needs a preceding content",
            );
        }
        let e = |options: &str| fail(&format!("content:\"abcd\"; {options} sid:1;"));
        assert_err(&e("depth:3;"), "depth", "depth 3 is shorter than the 4-byte content");
        assert_err(&e("depth:0;"), "depth", "depth 0");
        assert_err(&e("within:3;"), "within", "within 3 is shorter");
        assert_err(&e("offset:-1;"), "offset", "not a non-negative number");
        assert_err(&e("depth:4x;"), "depth", "not a non-negative number");
        assert_err(&e("distance:1.5;"), "distance", "not an integer");
        assert_err(&e("distance:99999999999;"), "distance", "out of range");
        assert_err(&e("offset;"), "offset", "needs a value");
        assert_err(&e("offset:1; distance:1;"), "distance", "cannot mix");
        assert_err(&e("depth:4; within:4;"), "within", "cannot mix");
        assert_err(&e("distance:0; offset:1;"), "offset", "cannot mix");
        assert_err(&e("within:5; depth:5;"), "depth", "cannot mix");
        assert_err(&e("offset:1; startswith;"), "startswith", "cannot be combined");
        assert_err(&e("within:4; startswith;"), "startswith", "cannot be combined");
        assert_err(&e("startswith; depth:4;"), "depth", "cannot be combined with startswith");
        assert_err(&e("startswith; distance:0;"), "distance", "cannot be combined with startswith");
        assert_err(&e("offset:1; offset:2;"), "offset", "given twice");
        assert_err(&e("nocase; nocase;"), "nocase", "given twice");
        assert_err(&e("endswith; endswith;"), "endswith", "given twice");
        assert_err(&e("startswith; startswith;"), "startswith", "given twice");
        assert_err(&e("within:4; within:5;"), "within", "given twice");
        assert_err(&e("nocase:1;"), "nocase", "takes no value");
        assert_err(&e("rawbytes:x;"), "rawbytes", "takes no value");
        assert_err(&e("fast_pattern:all;"), "fast_pattern", "`all`");
        assert_err(&e("fast_pattern:1;"), "fast_pattern", "`1`");
        assert_err(&e("fast_pattern; content:\"e\"; fast_pattern;"), "fast_pattern", "only one content");
        assert_err(&e("fast_pattern; fast_pattern;"), "fast_pattern", "only one content");
    }

    #[test]
    fn byte_extract_variables_skip_the_rule() {
        assert_eq!(skip("content:\"a\"; offset:off; sid:1;"), vec!["byte_extract"]);
        assert_eq!(skip("content:\"a\"; depth:my_len; distance:x1; sid:1;"), vec!["byte_extract"]);
        assert_eq!(skip("isdataat:len,relative; sid:1;"), vec!["byte_extract"]);
        assert_eq!(
            skip("byte_extract:2,0,len; content:\"a\"; within:len; sid:1;"),
            vec!["byte_extract"]
        );
    }

    // ---- isdataat, flow, dsize ----

    #[test]
    fn isdataat() {
        let check = |value: &str| sig(&format!("isdataat:{value}; sid:1;")).checks;
        assert_eq!(
            check("5"),
            vec![PayloadCheck::IsDataAt(IsDataAt {
                pos: 5,
                relative: false,
                negated: false
            })]
        );
        assert_eq!(
            check("!0"),
            vec![PayloadCheck::IsDataAt(IsDataAt {
                pos: 0,
                relative: false,
                negated: true
            })]
        );
        assert_eq!(
            check("! 10 , relative"),
            vec![PayloadCheck::IsDataAt(IsDataAt {
                pos: 10,
                relative: true,
                negated: true
            })]
        );
        assert_eq!(
            check("3,relative,rawbytes"),
            vec![PayloadCheck::IsDataAt(IsDataAt {
                pos: 3,
                relative: true,
                negated: false
            })]
        );
        assert_err(&fail("isdataat:1,backwards; sid:1;"), "isdataat", "`backwards`");
        assert_err(&fail("isdataat:-1; sid:1;"), "isdataat", "`-1`");
        assert_err(&fail("isdataat; sid:1;"), "isdataat", "needs a value");
        // Order of checks is the rule's order.
        let signature = sig("isdataat:1; content:\"a\"; isdataat:2,relative; content:\"b\"; sid:1;");
        assert!(matches!(
            signature.checks.as_slice(),
            [
                PayloadCheck::IsDataAt(IsDataAt { pos: 1, .. }),
                PayloadCheck::Content(a),
                PayloadCheck::IsDataAt(IsDataAt { pos: 2, .. }),
                PayloadCheck::Content(b),
            ] if a.bytes == b"a" && b.bytes == b"b"
        ));
    }

    #[test]
    fn flow() {
        let flow = |value: &str| sig(&format!("flow:{value}; sid:1;")).flow;
        assert_eq!(
            flow("to_server"),
            FlowMatch {
                to_server: Some(true),
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("from_client"),
            FlowMatch {
                to_server: Some(true),
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("to_client"),
            FlowMatch {
                to_server: Some(false),
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("from_server"),
            FlowMatch {
                to_server: Some(false),
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("established, to_server"),
            FlowMatch {
                to_server: Some(true),
                established: true,
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("not_established"),
            FlowMatch {
                not_established: true,
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("Stateless,to_client"),
            FlowMatch {
                to_server: Some(false),
                stateless: true,
                ..FlowMatch::default()
            }
        );
        assert_eq!(
            flow("to_server,from_client"),
            FlowMatch {
                to_server: Some(true),
                ..FlowMatch::default()
            }
        );
        assert_err(&fail("flow:to_server,to_client; sid:1;"), "flow", "contradict");
        assert_err(&fail("flow:from_server,from_client; sid:1;"), "flow", "contradict");
        assert_err(&fail("flow:established,not_established; sid:1;"), "flow", "contradict");
        assert_err(&fail("flow:sideways; sid:1;"), "flow", "unknown flow option `sideways`");
        assert_err(&fail("flow:established,; sid:1;"), "flow", "empty flow option");
        assert_err(&fail("flow:to_server; flow:established; sid:1;"), "flow", "given twice");
        assert_err(&fail("flow; sid:1;"), "flow", "needs a value");
        for option in ["only_stream", "no_stream", "only_frag", "no_frag"] {
            assert_eq!(skip(&format!("flow:established,{option}; sid:1;")), vec![format!("flow:{option}")]);
        }
    }

    #[test]
    fn dsize() {
        let dsize = |value: &str| sig(&format!("dsize:{value}; sid:1;")).dsize;
        assert_eq!(dsize("0"), Some(SizeRange { min: 0, max: 0 }));
        assert_eq!(dsize("300"), Some(SizeRange { min: 300, max: 300 }));
        assert_eq!(dsize("<10"), Some(SizeRange { min: 0, max: 9 }));
        assert_eq!(dsize(">10"), Some(SizeRange { min: 11, max: 65535 }));
        assert_eq!(dsize("<=10"), Some(SizeRange { min: 0, max: 10 }));
        assert_eq!(dsize(">=10"), Some(SizeRange { min: 10, max: 65535 }));
        assert_eq!(dsize("10<>20"), Some(SizeRange { min: 11, max: 19 }));
        assert_eq!(dsize(" 10 <> 12 "), Some(SizeRange { min: 11, max: 11 }));
        assert_eq!(dsize("10-20"), Some(SizeRange { min: 11, max: 19 }));
        assert_err(&fail("dsize:<0; sid:1;"), "dsize", "matches no size");
        assert_err(&fail("dsize:>65535; sid:1;"), "dsize", "matches no size");
        assert_err(&fail("dsize:5<>6; sid:1;"), "dsize", "matches no size");
        assert_err(&fail("dsize:20<>10; sid:1;"), "dsize", "matches no size");
        assert_err(&fail("dsize:65536; sid:1;"), "dsize", "not a size");
        assert_err(&fail("dsize:big; sid:1;"), "dsize", "not a size");
        assert_err(&fail("dsize:!x; sid:1;"), "dsize", "not a size");
        assert_err(&fail("dsize:1; dsize:2; sid:1;"), "dsize", "given twice");
        assert_eq!(skip("dsize:!5; sid:1;"), vec!["dsize:!"]);
    }

    // ---- byte_test, byte_jump, pcre ----

    fn only_check(options: &str) -> PayloadCheck {
        let s = sig(options);
        assert_eq!(s.checks.len(), 1, "{options}");
        s.checks[0].clone()
    }

    #[test]
    fn byte_test_forms() {
        let read = |count, offset| ByteRead { count, offset, relative: false, little_endian: false, string_base: None, bitmask: None };
        assert_eq!(
            only_check("byte_test:2,>,0x100,4; sid:1;"),
            PayloadCheck::ByteTest(ByteTest { read: read(2, 4), op: ByteOp::Gt, negated: false, value: 256 })
        );
        let PayloadCheck::ByteTest(t) = only_check("byte_test: 4 , !&, 7, -3, relative, little, string, hex, bitmask 0xf0; sid:1;") else {
            panic!()
        };
        assert_eq!((t.op, t.negated, t.value), (ByteOp::And, true, 7));
        assert_eq!(
            t.read,
            ByteRead { count: 4, offset: -3, relative: true, little_endian: true, string_base: Some(16), bitmask: Some(0xf0) }
        );
        for (op, want) in [("<", ByteOp::Lt), ("<=", ByteOp::Le), (">=", ByteOp::Ge), ("=", ByteOp::Eq), ("^", ByteOp::Xor), ("!", ByteOp::Eq)] {
            let PayloadCheck::ByteTest(t) = only_check(&format!("byte_test:1,{op},1,0; sid:1;")) else { panic!() };
            assert_eq!((t.op, t.negated), (want, op == "!"), "{op}");
        }
        let PayloadCheck::ByteTest(t) = only_check("byte_test:3,=,12,0,string; sid:1;") else { panic!() };
        assert_eq!(t.read.string_base, Some(10));
        assert_eq!(skip("byte_test:1,=,x,0; sid:1;"), vec!["byte_extract"]);
        assert_eq!(skip("byte_test:1,=,1,off; sid:1;"), vec!["byte_extract"]);
        for (bad, needle) in [
            ("byte_test:1,=,1", "needs <count>"),
            ("byte_test:1,~,1,0", "not an operator"),
            ("byte_test:9,=,1,0", "1 to 8 bytes"),
            ("byte_test:21,=,1,0,string", "1 to 20 bytes"),
            ("byte_test:0,=,1,0", "1 to 8 bytes"),
            ("byte_test:1,=,1,0,hex", "needs `string`"),
            ("byte_test:1,=,1,0,sideways", "not a byte_test option"),
            ("byte_test:1,=,-1,0", "not in 0..=2^64-1"),
            ("byte_test:1,=,1,0,bitmask 0", "masks every bit"),
            ("byte_test:1,=,1z,0", "not a number"),
        ] {
            assert_err(&fail(&format!("{bad}; sid:1;")), "byte_test", needle);
        }
    }

    #[test]
    fn byte_jump_forms() {
        let PayloadCheck::ByteJump(j) = only_check("byte_jump:2,1; sid:1;") else { panic!() };
        assert_eq!((j.read.count, j.read.offset, j.multiplier, j.align, j.from, j.post_offset), (2, 1, 1, false, JumpFrom::Read, 0));
        let PayloadCheck::ByteJump(j) =
            only_check("byte_jump:4,-2,relative,multiplier 2,little,align,from_end,post_offset -5,bitmask 0x3; sid:1;")
        else {
            panic!()
        };
        assert_eq!((j.read.offset, j.read.relative, j.read.little_endian, j.multiplier), (-2, true, true, 2));
        assert_eq!((j.align, j.from, j.post_offset, j.read.bitmask), (true, JumpFrom::End, -5, Some(3)));
        let PayloadCheck::ByteJump(j) = only_check("byte_jump:3,0,string,dec,from_beginning; sid:1;") else { panic!() };
        assert_eq!((j.read.string_base, j.from), (Some(10), JumpFrom::Beginning));
        assert_eq!(skip("byte_jump:4,0,dce; sid:1;"), vec!["byte_jump:dce"]);
        assert_eq!(skip("byte_jump:4,0,post_offset x; sid:1;"), vec!["byte_extract"]);
        for (bad, needle) in [
            ("byte_jump:4", "needs <count>,<offset>"),
            ("byte_jump:4,0,from_end,from_beginning", "exclude each other"),
            ("byte_jump:4,0,multiplier 0", "at least 1"),
            ("byte_jump:4,0,multiplier", "not a number"),
            ("byte_jump:4,0,upwards", "not a byte_jump option"),
            ("byte_jump:300,0", "out of range"),
        ] {
            assert_err(&fail(&format!("{bad}; sid:1;")), "byte_jump", needle);
        }
    }

    #[test]
    fn pcre_forms() {
        let PayloadCheck::Pcre(p) = only_check(r#"pcre:"/^GET \/a\;b/ismxAGRBOE"; sid:1;"#) else { panic!() };
        assert_eq!(p.pattern, r"^GET \/a\;b");
        assert!(p.nocase && p.dotall && p.multiline && p.extended && p.anchored && p.ungreedy && p.relative && !p.negated);
        let PayloadCheck::Pcre(p) = only_check(r#"pcre:!"/a/b/"; sid:1;"#) else { panic!() };
        assert_eq!((p.pattern.as_str(), p.negated, p.nocase), ("a/b", true, false));
        for flag in ["U", "I", "P", "Q", "H", "D", "M", "C", "S", "Y", "V", "W", "Z", "K"] {
            assert_eq!(skip(&format!(r#"pcre:"/a/i{flag}"; sid:1;"#)), vec![format!("pcre/{flag}")]);
        }
        assert_eq!(skip(r#"pcre:"/(a)\1/"; sid:1;"#), vec!["pcre:unsupported"]);
        assert_eq!(skip(r#"pcre:"/a(?=b)/"; sid:1;"#), vec!["pcre:unsupported"]);
        assert_eq!(skip(r#"pcre:"/x[a-z]{1,5000}y[a-z]{1,5000}/"; sid:1;"#), vec!["pcre:too-large"]);
        for (bad, needle) in [
            (r#"pcre:/a/"#, "quoted string"),
            (r#"pcre:"a/""#, "start with `/`"),
            (r#"pcre:"/a""#, "no closing `/`"),
            (r#"pcre:"//i""#, "empty pattern"),
            (r#"pcre:"/a/q""#, "not a pcre flag"),
            (r#"pcre:"/a/" x"#, "after the closing quote"),
        ] {
            assert_err(&fail(&format!("{bad}; sid:1;")), "pcre", needle);
        }
    }

    #[test]
    fn threshold_and_detection_filter() {
        let s = sig("content:\"a\"; threshold: type limit, track by_src, count 1, seconds 60; sid:1;");
        assert_eq!(s.threshold, Some(Threshold { kind: Some(ThresholdKind::Limit), track: Track::BySrc, count: 1, seconds: 60 }));
        let s = sig("content:\"a\"; threshold:seconds 5,count 3,track by_both,type both; detection_filter:track by_dst, count 10, seconds 1; sid:1;");
        assert_eq!(s.threshold, Some(Threshold { kind: Some(ThresholdKind::Both), track: Track::ByBoth, count: 3, seconds: 5 }));
        assert_eq!(s.detection_filter, Some(Threshold { kind: None, track: Track::ByDst, count: 10, seconds: 1 }));
        let s = sig("threshold:type threshold, track by_rule, count 2, seconds 9; sid:1;");
        assert_eq!(s.threshold.map(|t| (t.kind, t.track)), Some((Some(ThresholdKind::Threshold), Track::ByRule)));
        assert_eq!(skip("detection_filter:track by_flow, count 1, seconds 1; sid:1;"), vec!["detection_filter:by_flow"]);
        assert_eq!(skip_full("pass tcp any any -> any any (detection_filter:track by_src, count 1, seconds 1; sid:1;)").keywords, vec!["detection_filter:pass"]);
        for (keyword, bad, needle) in [
            ("threshold", "threshold:track by_src, count 1, seconds 1", "needs `type`"),
            ("threshold", "threshold:type limit, count 1, seconds 1", "needs `track`"),
            ("threshold", "threshold:type limit, track by_src, seconds 1", "needs `count`"),
            ("threshold", "threshold:type limit, track by_src, count 1", "needs `seconds`"),
            ("threshold", "threshold:type often, track by_src, count 1, seconds 1", "not limit, threshold or both"),
            ("threshold", "threshold:type limit, track by_port, count 1, seconds 1", "not by_src"),
            ("threshold", "threshold:type limit, track by_src, count 0, seconds 1", "count `0`"),
            ("threshold", "threshold:type limit, track by_src, count 1, seconds 1, count 2", "given twice"),
            ("threshold", "threshold:type limit, track by_src, count 1, seconds 1; threshold:type limit, track by_src, count 1, seconds 1", "given twice"),
            ("threshold", "threshold:limit", "not `<name> <value>`"),
            ("detection_filter", "detection_filter:type limit, track by_src, count 1, seconds 1", "not track, count or seconds"),
        ] {
            assert_err(&fail(&format!("{bad}; sid:1;")), keyword, needle);
        }
    }

    #[test]
    fn flowbits_and_noalert() {
        use FlowbitOp::*;
        let fb = |op, names: &[&str]| Flowbit { op, names: names.iter().map(|n| n.to_string()).collect() };
        let s = sig("content:\"a\"; flowbits:set,ET.login; flowbits: isset , a|b.c ; FlowBits:noalert; sid:1;");
        assert_eq!(s.flowbits, vec![fb(Set, &["ET.login"]), fb(IsSet, &["a", "b.c"])]);
        assert!(s.noalert);
        let s = sig("flowbits:unset,x; flowbits:toggle,y; flowbits:isnotset,x|y; noalert; sid:1;");
        assert_eq!(s.flowbits, vec![fb(Unset, &["x"]), fb(Toggle, &["y"]), fb(IsNotSet, &["x", "y"])]);
        assert!(s.noalert);
        assert!(!sig("flowbits:set,x; sid:1;").noalert);
        assert_eq!(skip("flowbits:set,a|b; sid:1;"), vec!["flowbits:or-effect"]);
        assert_eq!(skip("flowbits:isset,a&b; sid:1;"), vec!["flowbits:&"]);
        assert_eq!(
            skip("noalert; detection_filter:track by_src, count 1, seconds 1; sid:1;"),
            vec!["detection_filter:noalert"]
        );
        for (keyword, bad, needle) in [
            ("flowbits", "flowbits:sett,x", "is not set, unset, toggle"),
            ("flowbits", "flowbits:set", "needs a name"),
            ("flowbits", "flowbits:isset, ", "needs a name"),
            ("flowbits", "flowbits:noalert,x", "takes no name"),
            ("flowbits", "flowbits:isset,a||b", "is not a flowbit name"),
            ("flowbits", "flowbits:set,a b", "is not a flowbit name"),
            ("flowbits", "flowbits", "needs"),
            ("noalert", "noalert:1", "takes no value"),
        ] {
            assert_err(&fail(&format!("{bad}; sid:1;")), keyword, needle);
        }
    }

    // ---- unsupported keywords ----

    #[test]
    fn unsupported_keywords_skip_the_rule() {
        let keywords = skip(
            "msg:\"x\"; flow:established,to_server; http.method; content:\"GET\"; http.uri; content:\"/a\"; http.uri; \
             pcre:\"/a;b\\/c/Ui\"; xbits:set,x,track ip_src; byte_test:1,&,1,0,dce; threshold:type limit, track by_flow, count 1, seconds 60; sid:5;",
        );
        assert_eq!(
            keywords,
            vec!["http.method", "http.uri", "pcre/U", "xbits", "byte_test:dce", "threshold:by_flow"]
        );
        for keyword in [
            "http_uri",
            "dns.query",
            "dns_query",
            "tls.sni",
            "tls_sni",
            "file.data",
            "file_data",
            "pkt_data",
            "bsize:10",
            "byte_extract:1,0,x",
            "xbits:set,x,track ip_src",
            "app-layer-event:http.x",
            "urilen:>10",
            "base64_decode",
            "ja3.hash",
            "tag:session,10,packets",
        ] {
            let name = keyword.split(':').next().unwrap();
            assert_eq!(
                skip(&format!("content:\"a\"; {keyword}; sid:1;")),
                vec![name.to_string()],
                "{keyword}"
            );
        }
        let skipped = skip_full("alert tcp any any -> any any (Http.URI; sid:77;)");
        assert_eq!(
            skipped,
            Skipped {
                line: 7,
                sid: Some(77),
                keywords: vec!["http.uri".to_string()]
            }
        );
    }

    #[test]
    fn modifiers_after_an_unsupported_keyword_are_not_checked() {
        // After a sticky buffer the modifiers may belong to contents of that buffer.
        assert_eq!(
            skip("http.uri; nocase; depth:1; content:\"abcdef\"; depth:2; offset:1; distance:0; startswith; sid:1;"),
            vec!["http.uri"]
        );
        assert_eq!(
            skip("content:\"a\"; fast_pattern; http.uri; content:\"b\"; fast_pattern; sid:1;"),
            vec!["http.uri"]
        );
        assert_eq!(skip("content:\"abc\"; http_uri; depth:1; sid:1;"), vec!["http_uri"]);
        assert_eq!(
            skip_full("alert http any any -> any any (nocase; content:\"abc\"; within:1; sid:1;)").keywords,
            vec!["protocol:http"]
        );
        // Before it, they are, and syntax is checked throughout.
        assert_err(&fail("content:\"abc\"; depth:1; http.uri; sid:1;"), "depth", "shorter");
        assert_err(
            &fail("http.uri; content:\"a\"; depth:1x; sid:1;"),
            "depth",
            "not a non-negative number",
        );
        assert_err(&fail("http.uri; content:\"a\"; nocase:yes; sid:1;"), "nocase", "takes no value");
        assert_err(&fail("pcre:\"/a/; sid:1;"), "pcre", "unterminated quoted string");
        assert_err(&fail("http.uri; flow:bogus; sid:1;"), "flow", "unknown flow option");
        assert_err(&fail("http.uri; dsize:x; sid:1;"), "dsize", "not a size");
    }

    // ---- files ----

    #[test]
    fn rule_file_with_comments_continuations_and_skips() {
        let text = "\
# Rampart test rules\r
\r
#alert tcp any any -> any any (msg:\"off\"; sid:100;)\r
# drop udp any any -> any any (sid:101;)\r
## pass ip any any -> any any (sid:102;)\r
# alert me when this works\r
#   content:\"x\"; sid:103;)\r
alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:\"multi\"; \\\r
    content:\"GET\"; \\  \r
    sid:1;)\r
  alert udp any any -> any 53 (msg:\"dns\"; content:\"|01 00|\"; sid:2;)
alert http any any -> any any (msg:\"h\"; http.uri; content:\"/x\"; sid:3;)
alert tcp any any -> any any (msg:\"p\"; pcre:\"/(x)\\1/\"; content:\"y\"; sid:4;)
alert tcp any any -> any any (msg:\"q\"; http.uri; content:\"z\"; gid:2; sid:4;)
";
        let file = parse_rules(text, "f.rules", &Vars::suricata_defaults(), &Classifications::default()).unwrap();
        assert_eq!(file.disabled, 3);
        assert_eq!(file.signatures.len(), 2);
        let first = &file.signatures[0];
        assert_eq!((first.sid, first.msg.as_str(), first.origin.line), (1, "multi", 8));
        assert_eq!(
            first.origin,
            Origin {
                file: "f.rules".to_string(),
                line: 8
            }
        );
        assert_eq!(content(first, 0).bytes, b"GET");
        assert_eq!(first.dst_ports.include, vec![(80, 80)]);
        assert_eq!(file.signatures[1].origin.line, 11);
        assert_eq!(file.signatures[1].proto, SigProto::Udp);
        assert_eq!(
            file.skipped,
            vec![
                Skipped {
                    line: 12,
                    sid: Some(3),
                    keywords: vec!["protocol:http".to_string(), "http.uri".to_string()]
                },
                Skipped {
                    line: 13,
                    sid: Some(4),
                    keywords: vec!["pcre:unsupported".to_string()]
                },
                Skipped {
                    line: 14,
                    sid: Some(4),
                    keywords: vec!["http.uri".to_string()]
                },
            ]
        );
        assert_eq!(
            file.skipped_keywords(),
            vec![
                ("http.uri".to_string(), 2),
                ("pcre:unsupported".to_string(), 1),
                ("protocol:http".to_string(), 1)
            ]
        );
        assert_eq!(
            file.summary(),
            "2 loaded, 3 skipped (http.uri ×2, pcre:unsupported ×1, protocol:http ×1), 3 commented out"
        );
    }

    #[test]
    fn summaries() {
        assert_eq!(RuleFile::default().summary(), "0 loaded, 0 skipped, 0 commented out");
        assert!(RuleFile::default().skipped_keywords().is_empty());
        let file = parse_rules(
            "alert tcp any any -> any any (sid:1;)\n",
            "f",
            &Vars::default(),
            &Classifications::default(),
        )
        .unwrap();
        assert_eq!(file.summary(), "1 loaded, 0 skipped, 0 commented out");
        let empty = parse_rules("", "f", &Vars::default(), &Classifications::default()).unwrap();
        assert_eq!(empty, RuleFile::default());
    }

    #[test]
    fn continuation_splits_inside_a_string_and_at_end_of_file() {
        let text = "alert tcp any any -> any any (content:\"ab\\\ncd\"; sid:1;)\nalert tcp any any -> any any (sid:2;) \\";
        let file = parse_rules(text, "f", &Vars::default(), &Classifications::default()).unwrap();
        assert_eq!(
            content(&file.signatures[0], 0).bytes,
            b"abcd",
            "joined with nothing in between, like Suricata"
        );
        assert_eq!(file.signatures[1].sid, 2);
        assert_eq!(file.signatures[1].origin.line, 3);
    }

    #[test]
    fn file_errors_name_file_line_and_keyword() {
        let text =
            "# header\n\nalert tcp any any -> any any (sid:1;)\nalert tcp any any -> any any (msg:\"a\"; \\\n  content:\"|4|\"; sid:2;)\n";
        let error = parse_rules(text, "bad.rules", &Vars::default(), &Classifications::default()).unwrap_err();
        assert_eq!(
            error,
            ParseError {
                file: "bad.rules".to_string(),
                line: 4,
                keyword: "content".to_string(),
                message: error.message.clone()
            }
        );
        assert!(
            error.to_string().starts_with("bad.rules:4: content: odd number of hex digits"),
            "{error}"
        );

        let text = "alert tcp any any -> any any (sid:1;)\n\nalert http any any -> any any (http.uri; sid:1;)\n";
        let error = parse_rules(text, "dup.rules", &Vars::default(), &Classifications::default()).unwrap_err();
        assert_eq!((error.line, error.keyword.as_str()), (3, "sid"));
        assert!(
            error.message.contains("sid 1 (gid 1) is already used by the rule at line 1"),
            "{error}"
        );

        let text = "alert tcp any any -> any any (sid:1;)\nalert tcp any any -> any any (sid:1; gid:2;)\n";
        assert!(
            parse_rules(text, "f", &Vars::default(), &Classifications::default()).is_ok(),
            "same sid, other gid"
        );

        let error = parse_rules(
            "\n\nalert tcp $HOME_NET any -> any any (sid:1;)",
            "v.rules",
            &Vars::default(),
            &Classifications::default(),
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "v.rules:3: HOME_NET: undefined variable $HOME_NET");
    }

    #[test]
    fn suricata_default_vars() {
        let vars = Vars::suricata_defaults();
        assert_eq!(vars.get("HOME_NET"), Some("[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]"));
        assert_eq!(vars.get("EXTERNAL_NET"), Some("!$HOME_NET"));
        assert_eq!(vars.get("FILE_DATA_PORTS"), Some("[$HTTP_PORTS,110,143]"));
        for name in [
            "SMTP_SERVERS",
            "SQL_SERVERS",
            "TELNET_SERVERS",
            "AIM_SERVERS",
            "DC_SERVERS",
            "DNP3_SERVER",
            "DNP3_CLIENT",
            "MODBUS_CLIENT",
            "MODBUS_SERVER",
            "ENIP_CLIENT",
            "ENIP_SERVER",
        ] {
            assert_eq!(vars.get(name), Some("$HOME_NET"), "{name}");
        }
        for (name, value) in [
            ("SHELLCODE_PORTS", "!80"),
            ("ORACLE_PORTS", "1521"),
            ("SSH_PORTS", "22"),
            ("DNP3_PORTS", "20000"),
            ("MODBUS_PORTS", "502"),
            ("FTP_PORTS", "21"),
            ("GENEVE_PORTS", "6081"),
            ("VXLAN_PORTS", "4789"),
            ("TEREDO_PORTS", "3544"),
        ] {
            assert_eq!(vars.get(name), Some(value), "{name}");
        }
        assert_eq!(Vars::default().get("HOME_NET"), None);
    }

    #[test]
    fn range_prefixes_cover_exactly() {
        assert_eq!(range_prefixes(0, u128::MAX, 128), vec![(0, 0)]);
        assert_eq!(range_prefixes(5, 5, 32), vec![(5, 32)]);
        assert_eq!(range_prefixes(1, 6, 32), vec![(1, 32), (2, 31), (4, 31), (6, 32)]);
        assert_eq!(range_prefixes(u128::MAX, u128::MAX, 128), vec![(u128::MAX, 128)]);
        assert_eq!(range_prefixes(u128::MAX - 1, u128::MAX, 128), vec![(u128::MAX - 1, 127)]);
    }

    // ---- the ET-shaped sample ----

    #[test]
    fn et_sample_loads() {
        let text = include_str!("../tests/fixtures/et_sample.rules");
        let file = parse_rules(text, "et_sample.rules", &Vars::suricata_defaults(), &Classifications::default()).unwrap();
        assert!(file.signatures.len() + file.skipped.len() >= 150, "{}", file.summary());
        // Plain tcp/udp rules (no sticky buffer, pcre, flowbits, byte_*, threshold): at least 95 % load.
        let mut plain = 0usize;
        let mut loaded = 0usize;
        let loaded_sids: std::collections::HashSet<u32> = file.signatures.iter().map(|signature| signature.sid).collect();
        for line in text.replace("\\\n", "").lines() {
            let rule = line.trim();
            if rule.is_empty() || rule.starts_with('#') {
                continue;
            }
            let proto = rule.split_whitespace().nth(1).unwrap_or("");
            if !matches!(proto, "tcp" | "udp") || uses_unmodelled(rule) {
                continue;
            }
            plain += 1;
            let sid = rule
                .split("sid:")
                .nth(1)
                .and_then(|rest| rest.split(';').next())
                .and_then(|sid| sid.trim().parse().ok())
                .unwrap_or(0);
            if loaded_sids.contains(&sid) {
                loaded += 1;
            }
        }
        assert!(plain >= 10, "the sample has {plain} plain tcp/udp rules");
        assert!(
            loaded * 100 >= plain * 95,
            "{loaded} of {plain} plain tcp/udp rules loaded; {}",
            file.summary()
        );
    }

    /// Whether a rule uses a keyword class Rampart does not model (the cross-check's
    /// definition of "not plain").
    fn uses_unmodelled(rule: &str) -> bool {
        let Some((_, options)) = rule.split_once('(') else { return true };
        options
            .split(';')
            .map(|option| option.trim().split(':').next().unwrap_or("").to_ascii_lowercase())
            .any(|name| {
                name.contains('.')
                    || name.starts_with("http_")
                    || name.starts_with("dns_")
                    || name.starts_with("tls_")
                    || name.starts_with("byte_")
                    || matches!(
                        name.as_str(),
                        "pcre" | "flowbits" | "threshold" | "file_data" | "pkt_data" | "bsize" | "xbits" | "detection_filter"
                    )
            })
    }

    // ---- properties ----

    /// Encodes bytes as a content string: hex sections, escapes and plain characters,
    /// chosen by `modes`.
    fn encode_content(bytes: &[u8], modes: &[u8]) -> String {
        let mut out = String::new();
        let mut in_hex = false;
        for (i, &byte) in bytes.iter().enumerate() {
            let mode = modes.get(i).copied().unwrap_or(0);
            let printable = byte.is_ascii_graphic() || byte == b' ';
            let hex = !printable || byte == b'|' || mode % 4 == 0;
            if hex {
                if !in_hex {
                    out.push('|');
                    in_hex = true;
                } else if mode % 3 == 0 {
                    out.push(' ');
                }
                out.push_str(&format!("{byte:02x}"));
                continue;
            }
            if in_hex {
                out.push('|');
                in_hex = false;
            }
            if matches!(byte, b'"' | b';' | b'\\' | b':') {
                out.push('\\');
            }
            out.push(char::from(byte));
        }
        if in_hex {
            out.push('|');
        }
        out
    }

    /// Escapes a msg.
    fn encode_msg(msg: &str) -> String {
        let mut out = String::new();
        for c in msg.chars() {
            if matches!(c, '"' | ';' | '\\' | ':') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    proptest! {
        #[test]
        fn content_round_trips(bytes in collection::vec(any::<u8>(), 1..64), modes in collection::vec(any::<u8>(), 64)) {
            let encoded = encode_content(&bytes, &modes);
            let signature = sig(&format!("content:\"{encoded}\"; sid:1;"));
            prop_assert_eq!(&content(&signature, 0).bytes, &bytes, "{}", encoded);
        }

        #[test]
        fn msg_round_trips(msg in "[ -~é€]{0,40}") {
            let signature = sig(&format!("msg:\"{}\"; sid:1;", encode_msg(&msg)));
            prop_assert_eq!(signature.msg, msg);
        }

        #[test]
        fn prefixes_are_masked(addr in any::<u32>(), len in 0u8..=32) {
            let signature = sig_full(&format!("alert ip {}/{len} any -> any any (sid:1;)", Ipv4Addr::from(addr)));
            let cidr = signature.src.include[0];
            let IpAddr::V4(base) = cidr.addr else { panic!() };
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            prop_assert_eq!(u32::from(base), addr & mask);
            prop_assert_eq!(cidr.len, len);
        }

        #[test]
        fn address_ranges_cover_exactly(a in any::<u32>(), b in any::<u32>()) {
            let (lo, hi) = (a.min(b), a.max(b));
            let prefixes = range_prefixes(u128::from(lo), u128::from(hi), 32);
            let mut next = u64::from(lo);
            for (base, len) in &prefixes {
                prop_assert_eq!(*base as u64, next);
                next += 1u64 << (32 - u32::from(*len));
            }
            prop_assert_eq!(next, u64::from(hi) + 1);
            prop_assert!(prefixes.len() <= 62);
        }

        #[test]
        fn port_ranges_parse(a in any::<u16>(), b in any::<u16>()) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert_eq!(sport(&format!("{lo}:{hi}")).include, vec![(lo, hi)]);
            prop_assert_eq!(sport(&format!("!{lo}:{hi}")).exclude, vec![(lo, hi)]);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_rules(&text, "p", &Vars::suricata_defaults(), &Classifications::default());
            let _ = Classifications::parse(&text, "p");
        }

        #[test]
        fn rule_shaped_text_never_panics(tail in "[a-z0-9 ()\\[\\]!$:;,\"|\\\\/.<>_-]{0,200}", head in 0usize..4) {
            let prefixes = ["", "alert tcp ", "alert tcp any any -> any any (", "drop udp [1.1.1.1,!$HOME_NET] 1: <> any any (content:\""];
            let prefix = prefixes[head];
            let text = format!("{prefix}{tail}");
            let _ = parse_rules(&text, "p", &Vars::suricata_defaults(), &Classifications::default());
            let _ = parse_rule(&format!("{text})"), "p", 1, &Vars::suricata_defaults(), &Classifications::default());
        }
    }
}
