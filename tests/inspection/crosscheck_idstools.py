#!/usr/bin/env python3
"""Cross-checks Rampart's rule parser against idstools' (`pip install idstools`).

Usage: crosscheck_idstools.py RULES_FILE RAMPART_JSON

RAMPART_JSON is what Rampart's parser made of RULES_FILE (dumped by `rampartctl`): a
JSON array (JSON Lines, one object a line, is accepted too) with one object per rule
Rampart loaded or skipped; commented-out rules have none.

A loaded rule:

    {
      "sid": 2000001,                 # integer
      "gid": 1,                       # integer (1 unless the rule sets gid)
      "rev": 3,                       # integer (0 when the rule has no rev)
      "msg": "ET FOO \\"x\\"; y",     # the msg, escapes decoded
      "action": "alert",              # alert | drop | reject | pass (rejectsrc/dst/both -> reject)
      "proto": "tcp",                 # tcp | udp | icmp | ip (Rampart's SigProto, lower case)
      "src":      {"include": ["10.0.0.0/8", "2001:db8::/32"], "exclude": ["10.1.0.0/16"]},
      "src_port": {"include": [[1024, 65535]], "exclude": [[80, 80]]},
      "direction": "->",              # -> | <>
      "dst":      {...as src...},
      "dst_port": {...as src_port...},
      "content": ["474554", "0d0a"],  # the contents' decoded bytes, lower-case hex, rule order
      "raw_header": "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS",
                                      # the rule's text before its first "(", trimmed
                                      # (continuation lines joined), variables unresolved
      "line": 12                      # optional: the rule's first line
    }

Addresses are "addr/len" prefixes (host bits cleared; "/32" or "/128" for one address),
ports inclusive [low, high] pairs; empty include lists mean "any".

A skipped rule:

    {"sid": 2000002, "skipped": true, "gid": 1, "keywords": ["http.uri", "pcre"], "line": 13}

where only "sid" and "skipped" are required.

For every enabled rule idstools parses, the script finds Rampart's entry (by gid and
sid; a rule idstools parsed that Rampart has no entry for is a disagreement). For each
rule both loaded it compares the header fields (the raw strings: action, protocol,
source/destination address and port, direction), sid/gid/rev, the msg (idstools keeps
escapes: they are decoded here the way Suricata does) and the contents (idstools' raw
content values, decoded here: `!` negation stripped, `|hex|` and `\\"` `\\;` `\\\\` `\\:`
escapes decoded), plus a light check of Rampart's resolution (`any` resolves to empty
lists; a literal address, prefix or port to itself).

"Plain" tcp/udp rules are rules whose protocol is tcp or udp and that use no sticky
buffer (any `name.with.dots`, the legacy `http_*`/`dns_*`/`tls_*`/... modifiers,
`file_data`, `pkt_data`), `pcre`, `flowbits`, `byte_*` or `threshold` keyword: Rampart
should load nearly all of them.

Prints each disagreement, then
    crosscheck: N rules, loaded L (P % of plain tcp/udp), skipped S, agree A, disagree D
and exits 1 if D > 0 or if fewer than 95 % of the plain tcp/udp rules loaded.
"""

import ipaddress
import json
import sys

try:
    import idstools.rule
except ImportError:  # pragma: no cover
    sys.exit("crosscheck: idstools is not installed (pip install idstools)")

PROTO_ALIASES = {"tcp": "tcp", "tcp-pkt": "tcp", "tcp-stream": "tcp", "udp": "udp", "icmp": "icmp", "icmpv4": "icmp",
                 "icmpv6": "icmp", "icmp6": "icmp", "ip": "ip"}
ACTION_ALIASES = {"alert": "alert", "drop": "drop", "pass": "pass", "reject": "reject", "rejectsrc": "reject",
                  "rejectdst": "reject", "rejectboth": "reject"}
LEGACY_BUFFER_PREFIXES = ("http_", "dns_", "tls_", "ssh_", "ja3", "file_", "smb_", "krb5_", "sip_", "dnp3_", "modbus_",
                          "snmp_", "ftp_", "smtp_", "mqtt_", "rfb_", "quic_", "dhcp_", "nfs_", "ike_", "base64_")
UNMODELLED = {"pcre", "flowbits", "threshold", "file_data", "pkt_data", "base64_data"}
MIN_PLAIN_SHARE = 95.0


def unescape_msg(text):
    """Decodes a msg the way Suricata does: any `\\c` becomes `c`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def decode_content(value):
    """A raw content value (`!"..|41|.."`) → its bytes as lower-case hex, or raises ValueError."""
    value = value.strip()
    if value.startswith("!"):
        value = value[1:].strip()
    if len(value) < 2 or not value.startswith('"') or not value.endswith('"'):
        raise ValueError("content is not quoted: %r" % value)
    inner = value[1:-1]
    out = bytearray()
    i, hexmode, pending = 0, False, ""
    while i < len(inner):
        c = inner[i]
        if hexmode:
            if c == "|":
                if pending:
                    raise ValueError("odd hex digits")
                hexmode = False
            elif c in "0123456789abcdefABCDEF":
                pending += c
                if len(pending) == 2:
                    out.append(int(pending, 16))
                    pending = ""
            elif not c.isspace():
                raise ValueError("bad hex character %r" % c)
            i += 1
        elif c == "|":
            hexmode = True
            i += 1
        elif c == "\\":
            if i + 1 >= len(inner) or inner[i + 1] not in '";\\:':
                raise ValueError("bad escape in %r" % value)
            out += inner[i + 1].encode()
            i += 2
        else:
            out += c.encode()
            i += 1
    if hexmode:
        raise ValueError("unterminated hex")
    return out.hex()


def header_fields(raw_header):
    """Splits a raw header into its fields at whitespace outside `[...]`."""
    fields, cur, depth = [], "", 0
    for c in raw_header:
        if c.isspace() and depth == 0:
            if cur:
                fields.append(cur)
                cur = ""
            continue
        depth += {"[": 1, "]": -1}.get(c, 0)
        cur += c
    if cur:
        fields.append(cur)
    return fields


def is_plain(rule):
    """Whether an idstools rule is a plain tcp/udp rule (see the module doc)."""
    if (rule.proto or "").lower() not in ("tcp", "udp"):
        return False
    for option in rule.options:
        name = option["name"].lower()
        if "." in name or name.startswith(LEGACY_BUFFER_PREFIXES) or name.startswith("byte_") or name in UNMODELLED:
            return False
    return True


def literal_addr(text):
    """The prefix a literal address field denotes, or None when it is not a plain literal."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return "%s/%d" % (net.network_address, net.prefixlen)


def literal_port(text):
    """The [lo, hi] a literal port field denotes, or None."""
    if text.isdigit():
        return [int(text), int(text)]
    if ":" in text:
        lo, hi = text.split(":", 1)
        if (lo == "" or lo.isdigit()) and (hi == "" or hi.isdigit()) and (lo or hi):
            return [int(lo or 0), int(hi or 65535)]
    return None


def check_resolution(kind, raw, resolved, problems):
    """Light check of Rampart's resolution of one header field."""
    if not isinstance(resolved, dict):
        problems.append("%s: resolved value missing" % kind)
        return
    include, exclude = resolved.get("include", []), resolved.get("exclude", [])
    if raw.lower() == "any":
        if include or exclude:
            problems.append("%s: `any` resolved to %s" % (kind, resolved))
        return
    literal = literal_addr(raw) if kind in ("src", "dst") else literal_port(raw)
    if literal is not None:
        if kind in ("src", "dst"):
            include = [literal_addr(x) for x in include]
        else:
            include = [list(x) for x in include]
        if include != [literal] or exclude:
            problems.append("%s: `%s` resolved to %s" % (kind, raw, resolved))


def compare(rule, entry):
    """The disagreements between an idstools rule and Rampart's loaded entry."""
    problems = []
    fields = header_fields(entry.get("raw_header", ""))
    ours = dict(zip(["action", "proto", "source_addr", "source_port", "direction", "dest_addr", "dest_port"], fields))
    if len(fields) != 7:
        problems.append("raw_header has %d fields: %r" % (len(fields), entry.get("raw_header")))
    for field in ("action", "proto", "source_addr", "source_port", "direction", "dest_addr", "dest_port"):
        if ours.get(field) != rule[field]:
            problems.append("header %s: idstools %r, rampart %r" % (field, rule[field], ours.get(field)))
    if ACTION_ALIASES.get(rule.action) != entry.get("action"):
        problems.append("action: idstools %r, rampart %r" % (rule.action, entry.get("action")))
    if PROTO_ALIASES.get((rule.proto or "").lower()) != entry.get("proto"):
        problems.append("proto: idstools %r, rampart %r" % (rule.proto, entry.get("proto")))
    if rule.direction != entry.get("direction"):
        problems.append("direction: idstools %r, rampart %r" % (rule.direction, entry.get("direction")))
    for key, theirs in (("sid", rule.sid), ("gid", rule.gid), ("rev", rule.rev if rule.rev is not None else 0)):
        if theirs != entry.get(key):
            problems.append("%s: idstools %r, rampart %r" % (key, theirs, entry.get(key)))
    msg = unescape_msg(rule.msg or "")
    if msg != entry.get("msg"):
        problems.append("msg: idstools %r, rampart %r" % (msg, entry.get("msg")))
    try:
        contents = [decode_content(o["value"] or "") for o in rule.options if o["name"].lower() == "content"]
    except ValueError as error:
        contents = ["<%s>" % error]
    if contents != entry.get("content"):
        problems.append("content: idstools %r, rampart %r" % (contents, entry.get("content")))
    for kind, raw_key in (("src", "source_addr"), ("dst", "dest_addr"), ("src_port", "source_port"), ("dst_port", "dest_port")):
        check_resolution(kind, rule[raw_key] or "", entry.get(kind), problems)
    return problems


def load_json(path):
    """Rampart's entries: a JSON array, or JSON Lines."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(text)
    if stripped.startswith("{") and "\n" not in stripped.strip():
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv):
    """Runs the cross-check; returns the exit status."""
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        rules = [r for r in idstools.rule.parse_file(argv[1]) if r.enabled]
    except Exception as error:  # idstools raises bare Exceptions on rules it cannot split
        print("crosscheck: idstools could not parse %s: %s" % (argv[1], error), file=sys.stderr)
        return 2
    entries = load_json(argv[2])
    loaded, skipped = {}, {}
    for entry in entries:
        sid = entry.get("sid")
        if entry.get("skipped"):
            skipped.setdefault(sid, []).append(entry)
        else:
            loaded[(entry.get("gid", 1), sid)] = entry

    agree = disagree = n_loaded = n_skipped = 0
    plain = plain_loaded = 0
    matched = set()
    for rule in rules:
        key = (rule.gid, rule.sid)
        entry = loaded.get(key)
        plain_rule = is_plain(rule)
        plain += plain_rule
        if entry is not None:
            matched.add(key)
            n_loaded += 1
            plain_loaded += plain_rule
            problems = compare(rule, entry)
            if problems:
                disagree += 1
                for problem in problems:
                    print("disagree [%d:%d]: %s" % (rule.gid, rule.sid, problem))
            else:
                agree += 1
            continue
        candidates = [e for e in skipped.get(rule.sid, []) if e.get("gid", rule.gid) == rule.gid]
        if candidates:
            n_skipped += 1
            if plain_rule:
                print("note [%d:%d]: plain %s rule skipped (%s)" % (rule.gid, rule.sid, rule.proto, ", ".join(candidates[0].get("keywords", []))))
            continue
        disagree += 1
        print("disagree [%d:%d]: idstools parsed it, rampart has no entry: %s" % (rule.gid, rule.sid, rule.raw[:160]))
    for key in sorted(set(loaded) - matched):
        print("note [%d:%d]: loaded by rampart, not parsed by idstools (e.g. an action it does not know)" % key)

    share = 100.0 * plain_loaded / plain if plain else 100.0
    print("crosscheck: %d rules, loaded %d (%.1f %% of plain tcp/udp), skipped %d, agree %d, disagree %d"
          % (len(rules), n_loaded, share, n_skipped, agree, disagree))
    if disagree > 0 or share < MIN_PLAIN_SHARE:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
