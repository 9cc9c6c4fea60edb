#!/usr/bin/env python3
"""Generates ET-Open-shaped Suricata rules, deterministically from a seed.

The rules mimic the shape of the Emerging Threats Open set (2024): its protocol mix
(http 14.5k, dns 4.0k, tcp 3.0k, tls 2.5k, udp 0.3k, ip 0.2k enabled rules) and its
keyword mix (share of enabled rules using a keyword at least once: content 95 %,
flow 77 %, nocase 53 %, fast_pattern 45 %, http.uri 31 %, distance 30 %, endswith 27 %,
pcre 17 %, http.method 16 %, dns.query 15 %, depth 12 %, http.host 10 %, bsize 9 %,
flowbits 9 %, threshold 8 %, within 8 %, startswith 7 %, tls.sni 7 %; isdataat,
byte_test, byte_jump, offset, dsize 2 % or less each), with long option lists, `msg`s
holding escaped `;` and `"`, contents with `|hex|` sections and escapes, `\\` line
continuations, `$HOME_NET`/`$EXTERNAL_NET`/`$HTTP_PORTS` variables, sticky buffers,
metadata/reference/classtype/sid/rev, and commented-out (disabled) rules.

Every rule is valid Suricata (modifiers never contradict each other: `depth`/`within`
cover their content, `startswith` stands alone, one `fast_pattern` per rule), and
stays within what idstools' simple parser splits the same way (single spaces in
headers, no nested address lists, every `;` inside a string escaped).

Usage: gen_et_rules.py --count N --seed S --out FILE [--stats]
"""

import argparse
import random
import sys

PROTOCOLS = [("http", 14500), ("dns", 4000), ("tcp", 3000), ("tls", 2500), ("udp", 300), ("ip", 200)]

# P(rule uses keyword | protocol), tuned so the overall shares match ET Open's (see --stats).
P = {
    "http": dict(content=.97, flow=.84, nocase=.55, fast_pattern=.50, distance=.30, endswith=.25, pcre=.22, depth=.08,
                 bsize=.08, flowbits=.07, threshold=.07, within=.06, startswith=.06, offset=.005, isdataat=.005),
    "dns": dict(content=.99, flow=.40, nocase=.75, fast_pattern=.60, distance=.15, endswith=.50, pcre=.04, depth=.04,
                bsize=.20, flowbits=.02, threshold=.08, within=.03, startswith=.15, offset=.0, isdataat=.0),
    "tcp": dict(content=.95, flow=.92, nocase=.25, fast_pattern=.30, distance=.45, endswith=.04, pcre=.22, depth=.40,
                bsize=.0, flowbits=.25, threshold=.14, within=.27, startswith=.03, offset=.08, isdataat=.09,
                byte_test=.10, byte_jump=.05, dsize=.07),
    "tls": dict(content=.95, flow=.95, nocase=.50, fast_pattern=.35, distance=.25, endswith=.45, pcre=.05, depth=.15,
                bsize=.20, flowbits=.10, threshold=.05, within=.05, startswith=.05, offset=.0, isdataat=.0),
    "udp": dict(content=.90, flow=.20, nocase=.20, fast_pattern=.30, distance=.35, endswith=.05, pcre=.10, depth=.45,
                bsize=.0, flowbits=.05, threshold=.12, within=.25, startswith=.05, offset=.20, isdataat=.10,
                byte_test=.20, byte_jump=.08, dsize=.40),
    "ip": dict(content=.08, flow=.0, nocase=.0, fast_pattern=.05, distance=.0, endswith=.0, pcre=.0, depth=.05,
               bsize=.0, flowbits=.0, threshold=.90, within=.0, startswith=.0, offset=.0, isdataat=.0),
}
# Share of http rules per sticky buffer (a rule may use several).
HTTP_BUFFERS = [("http.uri", .42), ("http.method", .27), ("http.host", .13), ("http.header", .10), ("http.user_agent", .08),
                ("file.data", .05), ("http.request_body", .03), ("http.cookie", .02), ("http.stat_code", .03)]
# The buffer of an http rule that picked none of the above.
HTTP_FALLBACK = ["http.uri", "http.header", "http.host", "http.user_agent", "file.data"]
HTTP_FALLBACK_WEIGHTS = [40, 25, 15, 10, 10]
TLS_BUFFERS = [("tls.sni", .70), ("tls.cert_subject", .10), ("tls.cert_issuer", .06), ("ja3.hash", .04)]
# Keywords Rampart does not model that a plain tcp/udp rule sometimes carries anyway.
RARE_PLAIN = ["flags:S,12", "app-layer-protocol:!http", "stream_size:server,<,6", "flow:established,to_server,only_stream"]

CATEGORIES = ["MALWARE", "INFO", "POLICY", "EXPLOIT", "WEB_SPECIFIC_APPS", "WEB_SERVER", "WEB_CLIENT", "HUNTING", "PHISHING",
              "TROJAN", "CURRENT_EVENTS", "SCAN", "DNS", "ATTACK_RESPONSE", "USER_AGENTS", "MOBILE_MALWARE", "COINMINER", "JA3"]
FAMILIES = ["Win32/Lumma Stealer", "Cobalt Strike", "AsyncRAT", "Generic", "Suspicious", "Observed", "Possible", "ELF/Mirai",
            "MSIL/Agent Tesla", "Win32/Emotet", "Android/SpyNote", "PowerShell", "Log4j", "Apache Struts", "WordPress Plugin",
            "Tor", "DNS-over-HTTPS", "Fake Browser Update", "SocGholish", "Gootloader", "IcedID", "QakBot", "njRAT"]
PHRASES = ["CnC Checkin", "Domain in DNS Lookup", "SSL Cert Observed", "Activity", "Request", "Inbound", "Outbound",
           "Payload Download", "Exfiltration", "Beacon", "User-Agent", "Remote Code Execution Attempt", "SQL Injection Attempt",
           "Directory Traversal", "Exploit Kit Landing", "Retrieving Payload", "POST Request", "Response", "Query to TLD"]
CLASSTYPES = ["trojan-activity", "policy-violation", "bad-unknown", "attempted-admin", "web-application-attack", "misc-activity",
              "attempted-recon", "command-and-control", "exploit-kit", "social-engineering", "coin-mining", "misc-attack",
              "protocol-command-decode", "attempted-user", "domain-c2", "credential-theft", "targeted-activity"]
WORDS = ["login", "admin", "gate", "panel", "update", "config", "upload", "api", "wp-content", "plugins", "cgi-bin", "index",
         "bot", "task", "report", "data", "download", "install", "check", "ping", "beacon", "session", "token", "shell"]
TLDS = ["com", "net", "org", "top", "xyz", "ru", "info", "online", "site", "io", "cc", "duckdns.org", "ngrok.io", "pw"]
EXTS = ["php", "asp", "aspx", "jsp", "cgi", "html", "js", "exe", "dll", "zip", "ps1", "bin"]
AGENTS = ["Mozilla/4.0 (compatible|3b 20|MSIE 6.0)", "python-requests/", "Go-http-client/1.1", "curl/7.", "WinHTTP", "Loader"]


def escaped(text):
    """Escapes `"`, `;`, `\\` and `:` for a quoted rule string."""
    out = []
    for c in text:
        if c in '";\\:':
            out.append("\\")
        out.append(c)
    return "".join(out)


class ContentText:
    """A content's rule text (escaped, with |hex|) and its decoded length."""

    def __init__(self):
        self.parts = []
        self.length = 0

    def text(self, s):
        """Appends plain text (escaped as needed)."""
        if s:
            self.parts.append(escaped(s))
            self.length += len(s.encode())
        return self

    def hex(self, data, rng):
        """Appends bytes as a |..| section (spaced or not)."""
        if data:
            sep = " " if rng.random() < .8 else ""
            self.parts.append("|" + sep.join("%02x" % b for b in data) + "|")
            self.length += len(data)
        return self

    def render(self):
        """The text between the quotes."""
        return "".join(self.parts)


def domain(rng):
    """A random domain name."""
    return "%s%s.%s" % (rng.choice(WORDS), rng.randint(1, 999) if rng.random() < .5 else "", rng.choice(TLDS))


def rand_word(rng, lo=4, hi=10):
    """A random lowercase word."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(lo, hi)))


def content_for(buffer, rng, index):
    """A content for `buffer` (None: the payload), `index`-th in that buffer."""
    c = ContentText()
    r = rng.random()
    if buffer == "http.method":
        return c.text(rng.choice(["GET", "POST", "PUT", "HEAD", "OPTIONS"]))
    if buffer == "http.uri":
        if index == 0:
            c.text("/" + rng.choice(WORDS))
            if r < .3:
                c.text("/" + rand_word(rng) + "." + rng.choice(EXTS))
            elif r < .4:
                c.text("?id=" + rand_word(rng, 2, 5))
        else:
            c.text(rng.choice(["&", "=", ".", "/", "?"]) + rng.choice(WORDS + EXTS))
        if rng.random() < .05:
            c.text('"' if rng.random() < .5 else ";")
        return c
    if buffer in ("http.host", "dns.query", "tls.sni", "tls.cert_subject", "tls.cert_issuer"):
        if index > 0:
            return c.text("." + rng.choice(TLDS))
        if buffer.startswith("tls.cert"):
            return c.text("CN=" + domain(rng))
        if buffer == "dns.query" and rng.random() < .15:
            return c.text(rand_word(rng)).hex([0x2e], rng).text(rng.choice(TLDS))
        return c.text(domain(rng) if rng.random() < .7 else "." + domain(rng))
    if buffer == "http.header":
        c.text(rng.choice(["User-Agent", "Referer", "Cookie", "X-Forwarded-For", "Content-Type", "Accept"]))
        c.hex([0x3a, 0x20], rng)
        return c.text(rand_word(rng, 3, 12))
    if buffer == "http.user_agent":
        text = rng.choice(AGENTS)
        if "|" in text:
            head, hexpart, tail = text.split("|")
            return c.text(head).hex(bytes.fromhex(hexpart.replace(" ", "")), rng).text(tail)
        return c.text(text)
    if buffer == "http.stat_code":
        return c.text(rng.choice(["200", "302", "404", "500"]))
    if buffer == "ja3.hash":
        return c.text("".join(rng.choice("0123456789abcdef") for _ in range(32)))
    if buffer in ("file.data", "http.request_body", "http.cookie"):
        c.text(rng.choice(["<script", "eval(", "PK", "MZ", "powershell", "cmd.exe /c", "base64,", "user=", "pass="]))
        if rng.random() < .3:
            c.hex(rng.randbytes(rng.randint(1, 4)), rng)
        return c
    # payload (tcp/udp/ip/tls handshake bytes)
    if r < .35:
        c.hex(rng.randbytes(rng.randint(1, 8)), rng)
    elif r < .7:
        c.text(rng.choice(["GET /", "USER ", "PASS ", "HELO", "SSH-2.0-", "MAIL FROM", "/bin/sh", "cmd", "AUTH"]))
        if rng.random() < .5:
            c.hex(rng.choice([[0x0d, 0x0a], [0x00], [0x20], list(rng.randbytes(2))]), rng)
    else:
        c.hex(rng.randbytes(rng.randint(1, 3)), rng).text(rand_word(rng, 2, 6))
        if rng.random() < .2:
            c.text(rng.choice(['"', ";", "\\", ":"]))
        if rng.random() < .5:
            c.hex(rng.randbytes(rng.randint(1, 4)), rng)
    if c.length == 0:
        c.text("x")
    return c


class Content:
    """One content of a rule, with the modifiers placed on it."""

    def __init__(self, text, negated=False):
        self.text = text
        self.negated = negated
        self.mods = []
        self.absolute = False
        self.relative = False
        self.startswith = False
        self.nocase = False

    def render(self):
        """The content option and its modifiers."""
        out = ['content:%s"%s"' % ("!" if self.negated else "", self.text.render())]
        out += self.mods
        return out


def make_msg(rng, proto):
    """An ET-style msg, sometimes with escaped quotes and semicolons."""
    msg = "ET %s %s %s" % (rng.choice(CATEGORIES), rng.choice(FAMILIES), rng.choice(PHRASES))
    r = rng.random()
    if r < .06:
        msg += ' ("%s")' % domain(rng)
    elif r < .09:
        msg += " (%s; %s)" % (rng.choice(WORDS), rng.choice(WORDS))
    elif r < .11:
        msg += " M%d \"%s\"; %s" % (rng.randint(1, 9), rng.choice(WORDS), proto.upper())
    elif r < .13:
        msg += " C:\\Windows\\%s" % rng.choice(WORDS)
    return escaped(msg)


def place_modifiers(groups, want, rng, proto):
    """Places the rule's modifiers (`want`: keyword -> bool) on its contents validly."""
    contents = [c for _, cs in groups for c in cs]
    if not contents:
        return
    firsts = [cs[0] for _, cs in groups if cs]
    # Relative modifiers need a second content in a buffer: add one if needed.
    if (want["distance"] or want["within"]) and not any(len(cs) > 1 for _, cs in groups):
        buffer, cs = groups[-1]
        cs.append(Content(content_for(buffer, rng, 1)))
        contents = [c for _, cs in groups for c in cs]
    seconds = [c for _, cs in groups for c in cs[1:]]
    if want["startswith"]:
        c = rng.choice(firsts)
        c.startswith = True
        c.mods.append("startswith")
    if want["depth"] or want["offset"]:
        free = [c for c in firsts if not c.startswith]
        if free:
            c = rng.choice(free)
            c.absolute = True
            if want["offset"]:
                c.mods.append("offset:%d" % rng.randint(0, 12))
            if want["depth"] or rng.random() < .5:
                c.mods.append("depth:%d" % (c.text.length + rng.choice([0, 0, 1, 2, 4, 10, 50])))
    if want["distance"] or want["within"]:
        c = rng.choice(seconds)
        c.relative = True
        if want["distance"] or rng.random() < .3:
            c.mods.append("distance:%d" % rng.choice([0, 0, 0, 0, 1, 2, 4, 8, -1]))
        if want["within"]:
            c.mods.append("within:%d" % (c.text.length + rng.choice([0, 1, 3, 10, 30])))
        # ET often chains several relative contents.
        for other in seconds:
            if other is not c and not other.startswith and rng.random() < .4:
                other.mods.append("distance:0")
                other.relative = True
    if want["nocase"]:
        for c in rng.sample(contents, rng.randint(1, len(contents))):
            c.mods.insert(0, "nocase")
    if want["endswith"]:
        lasts = [cs[-1] for _, cs in groups if cs]
        rng.choice(lasts).mods.append("endswith")
    if want["fast_pattern"]:
        candidates = [c for c in contents if not c.negated]
        if candidates:
            c = max(candidates, key=lambda c: (c.text.length, rng.random()))
            where = rng.randint(0, len(c.mods))
            variant = "fast_pattern"
            if rng.random() < .07:
                variant = rng.choice(["fast_pattern:only", "fast_pattern:0,%d" % c.text.length])
            c.mods.insert(where, variant)
    if want["isdataat"]:
        rng.choice(contents).mods.append("isdataat:%s%d,relative" % ("!" if rng.random() < .6 else "", rng.randint(1, 64)))


def header(rng, proto):
    """The rule header and the flow direction it implies."""
    inbound = rng.random() < .25
    home, ext = "$HOME_NET", "$EXTERNAL_NET"
    if proto == "ip":
        ips = ",".join("%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
                       + ("/%d" % rng.choice([24, 28, 32]) if rng.random() < .2 else "")
                       for _ in range(rng.randint(1, 12)))
        src = "[%s]" % ips
        return "%s any -> %s any" % (src, home), None
    if proto == "http":
        if inbound:
            return "%s any -> %s %s" % (ext, rng.choice([home, "$HTTP_SERVERS"]), rng.choice(["any", "$HTTP_PORTS"])), "to_server"
        if rng.random() < .2:
            return "%s %s -> %s any" % (ext, rng.choice(["any", "$HTTP_PORTS"]), home), "to_client"
        return "%s any -> %s any" % (home, ext), "to_server"
    if proto == "dns":
        return "%s any -> any any" % home, None
    if proto == "tls":
        if rng.random() < .3:
            return "%s 443 -> %s any" % (ext, home), "to_client"
        return "%s any -> %s any" % (home, ext), "to_server"
    ports = ["any", "$HTTP_PORTS", "445", "[139,445]", "1024:", "![80,443]", "$SSH_PORTS", "3389", "[8080,8443]", ":1023", "$SHELLCODE_PORTS"]
    if proto == "udp":
        ports = ["53", "123", "161", "1900", "any", "[5060,5061]", "1024:", "69"]
    direction = "<>" if rng.random() < .01 else "->"
    if inbound:
        return "%s any %s %s %s" % (ext, direction, home, rng.choice(ports)), "to_server"
    if rng.random() < .25:
        return "%s %s %s %s any" % (ext, rng.choice(ports), direction, home), "to_client"
    return "%s any %s %s %s" % (home, direction, ext, rng.choice(ports)), "to_server"


def gen_rule(rng, proto, sid):
    """One rule: its header text (action to destination port) and its options."""
    p = P[proto]
    want = {k: rng.random() < v for k, v in p.items()}
    head, direction = header(rng, proto)
    opts = ['msg:"%s"' % make_msg(rng, proto)]
    if want["flow"] and proto != "ip":
        if proto in ("udp",) or direction is None:
            opts.append("flow:%s" % ("to_server" if rng.random() < .7 else "to_client"))
        elif rng.random() < .015:
            opts.append("flow:established,%s,no_stream" % direction)
        else:
            opts.append("flow:established,%s" % direction)
    if want.get("dsize"):
        opts.append(rng.choice(["dsize:%d" % rng.randint(4, 200), "dsize:>%d" % rng.randint(10, 500), "dsize:<%d" % rng.randint(10, 300),
                                "dsize:%d<>%d" % (rng.randint(1, 50), rng.randint(60, 400))]))
    if want["flowbits"] and rng.random() < .5:
        opts.append("flowbits:isset,ET.%s" % rand_word(rng))

    # Buffers and their contents.
    groups = []
    if want["content"]:
        if proto == "http":
            for name, share in HTTP_BUFFERS:
                if rng.random() < share / p["content"]:
                    groups.append((name, []))
            if not groups:
                groups.append((rng.choices(HTTP_FALLBACK, HTTP_FALLBACK_WEIGHTS)[0], []))
        elif proto == "dns":
            groups.append(("dns.query", []))
        elif proto == "tls":
            for name, share in TLS_BUFFERS:
                if rng.random() < share / p["content"]:
                    groups.append((name, []))
            if not groups:
                groups.append((None, []))
        else:
            groups.append((None, []))
        for buffer, cs in groups:
            n = 1 if buffer in ("http.method", "http.stat_code", "ja3.hash") else rng.choice([1, 1, 1, 2, 2, 3])
            for i in range(n):
                negated = buffer is None and i > 0 and rng.random() < .04
                cs.append(Content(content_for(buffer, rng, i), negated))
        place_modifiers(groups, want, rng, proto)
    for buffer, cs in groups:
        if buffer is not None:
            if buffer == "dns.query" and rng.random() < .2:
                opts.append("dns.query")
                opts.append("dotprefix")
            else:
                opts.append(buffer)
        for c in cs:
            opts += c.render()
        if buffer is not None and want["bsize"] and rng.random() < .7:
            opts.append(rng.choice(["bsize:%d" % (sum(c.text.length for c in cs) + rng.randint(0, 5)), "bsize:>%d" % rng.randint(5, 40),
                                    "bsize:<%d" % rng.randint(50, 300)]))
            want["bsize"] = False
    if want["bsize"] and any(b is not None for b, _ in groups):
        opts.append("bsize:>%d" % rng.randint(5, 40))
    if want.get("byte_test") and groups:
        opts.append("byte_test:%d,%s,%d,%d,relative" % (rng.choice([1, 2, 4]), rng.choice([">", "<", "=", "&"]), rng.randint(0, 255), rng.randint(0, 8)))
    if want.get("byte_jump") and groups:
        opts.append("byte_jump:%d,%d,relative,little" % (rng.choice([1, 2, 4]), rng.randint(0, 8)))
    if want["pcre"]:
        opts.append('pcre:"/%s/%s"' % (rng.choice([r"^\/[a-z0-9]{8}\.php$", r"\x3b\s*[a-z]{4}", r"[0-9a-f]{32}\;", r"\/(?:gate|panel)\/\d+",
                                                     r"^[A-Z]{2,6}\x20\\\"", r"=\d{3,}&"]), rng.choice(["", "U", "Ui", "i", "R", "smi", "P"])))
    if proto in ("tcp", "udp") and not any(o.startswith("flow:") and "stream" in o for o in opts) and rng.random() < .015:
        opts.append(rng.choice(RARE_PLAIN[:3]))
    if want["flowbits"] and not any(o.startswith("flowbits") for o in opts):
        opts.append("flowbits:set,ET.%s" % rand_word(rng))
        if rng.random() < .5:
            opts.append("flowbits:noalert")
    if want["threshold"]:
        opts.append("threshold:type %s, track %s, count %d, seconds %d" % (rng.choice(["limit", "both", "threshold"]), rng.choice(["by_src", "by_dst"]),
                                                                          rng.randint(1, 5), rng.choice([60, 120, 300, 3600])))
    r = rng.random()
    if r < .5:
        opts.append("reference:url,%s/%s/%s" % (domain(rng), rng.choice(WORDS), rand_word(rng)))
    if r < .15:
        opts.append("reference:cve,%d-%d" % (rng.randint(2014, 2024), rng.randint(1000, 50000)))
    if rng.random() < .1:
        opts.append("reference:md5,%s" % "".join(rng.choice("0123456789abcdef") for _ in range(32)))
    opts.append("classtype:%s" % rng.choice(CLASSTYPES))
    opts.append("sid:%d" % sid)
    opts.append("rev:%d" % rng.randint(1, 12))
    if rng.random() < .02:
        opts.append("gid:1")
    date = "20%02d_%02d_%02d" % (rng.randint(15, 24), rng.randint(1, 12), rng.randint(1, 28))
    meta = ["attack_target %s" % rng.choice(["Client_Endpoint", "Server", "Web_Server", "Networking_Equipment"]), "created_at %s" % date,
            "deployment %s" % rng.choice(["Perimeter", "Internal", "SSLDecrypt"]), "former_category %s" % rng.choice(CATEGORIES),
            "signature_severity %s" % rng.choice(["Major", "Minor", "Critical", "Informational"]), "updated_at %s" % date]
    if rng.random() < .3:
        meta.insert(0, "affected_product %s" % rng.choice(["Windows_XP_Vista_7_8_10_Server_32_64_Bit", "Linux", "Android", "Any"]))
    if rng.random() < .2:
        meta.append("mitre_tactic_id TA%04d, mitre_tactic_name Command_And_Control" % rng.randint(1, 40))
    opts.append("metadata:" + ", ".join(meta))

    action = "alert" if rng.random() < .97 else rng.choice(["drop", "pass", "reject"])
    return "%s %s %s" % (action, proto, head), opts


def render(head, opts, rng=None):
    """The rule text; with `rng`, split over lines at option boundaries with `\\` continuations."""
    if rng is None:
        return "%s (%s;)" % (head, "; ".join(opts))
    out = "%s (%s" % (head, opts[0])
    for opt in opts[1:]:
        out += ("; \\\n    " if rng.random() < .25 else "; ") + opt
    return out + ";)"


def generate(count, seed):
    """`count` rules (about 8 % of them commented out) as file text, and their per-rule option names."""
    rng = random.Random(seed)
    names, weights = zip(*PROTOCOLS)
    lines = ["# Emerging Threats-shaped rules generated by gen_et_rules.py (seed %d)" % seed, "#", "# Not real signatures.", ""]
    stats = []
    sid = 2000000
    for i in range(count):
        proto = rng.choices(names, weights)[0]
        sid += rng.randint(1, 3)
        head, opts = gen_rule(rng, proto, sid)
        rule = render(head, opts)
        disabled = rng.random() < .08
        if disabled:
            lines.append("#" + rule if rng.random() < .7 else "# " + rule)
            continue
        stats.append((proto, rule))
        lines.append(render(head, opts, rng) if rng.random() < .04 else rule)
        if rng.random() < .02:
            lines.append("")
            lines.append("# %s" % rng.choice(CATEGORIES).lower())
    return "\n".join(lines) + "\n", stats


def option_names(rule):
    """The option names of a single-line rule (split like Suricata: unescaped `;`)."""
    body = rule[rule.index("(") + 1:rule.rindex(")")]
    names, cur, i, quoted = [], "", 0, False
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            cur += body[i:i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            names.append(cur.strip().split(":", 1)[0].strip())
            cur = ""
        else:
            cur += ch
        i += 1
    return [n for n in names if n]


def print_stats(stats):
    """Prints the protocol and keyword shares of the enabled rules."""
    total = len(stats)
    counts = {}
    protos = {}
    for proto, rule in stats:
        protos[proto] = protos.get(proto, 0) + 1
        for name in set(option_names(rule)):
            counts[name] = counts.get(name, 0) + 1
    print("%d enabled rules; protocols: %s" % (total, ", ".join("%s %d" % kv for kv in sorted(protos.items(), key=lambda kv: -kv[1]))),
          file=sys.stderr)
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print("  %-20s %5.1f %%" % (name, 100.0 * n / total), file=sys.stderr)


def main():
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="number of rules (about 8 %% written commented out)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="output rules file ('-' for stdout)")
    parser.add_argument("--stats", action="store_true", help="print the protocol and keyword shares to stderr")
    args = parser.parse_args()
    text, stats = generate(args.count, args.seed)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    if args.stats:
        print_stats(stats)


if __name__ == "__main__":
    main()
