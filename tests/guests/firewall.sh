#!/bin/bash
# Guests tier (DESIGN.md §7, §9): Rampart's stateful firewall between two real Linux guests
# in QEMU on vhost-user ports. Default action drop; rules allow B → A on tcp/80, tcp/8080 and
# icmp, and reject B → A on tcp/81. A (10.0.0.1) serves a token with busybox httpd on ports
# 80, 81 and 82 and runs a line listener on 8080; B (10.0.0.2) serves the token on port 80.
#
#   1  B fetches the token from A on port 80 (allowed; A's replies pass by state only)
#   2  B → A:81 (rule reject) is refused at once (an RST from Rampart: A does listen on 81)
#   3  B → A:82 (no rule: default drop) times out, not refused
#   4  A → B:80 (no rule) times out while B → A:80 works
#   5  B pings A (allowed); A cannot ping B (A's echo replies to B passed by state)
#   6  B streams a line every 0.5 s to A:8080 (rule b-to-a-8080); the host sees the flow
#      ESTABLISHED in `rampartctl flows`, removes the rule and reloads: the flow is cut at its
#      next packet or by the dataplane's sweep (flow_table removals, a flow record with
#      reason "policy" in the event log);
#      A stops receiving while B keeps writing (its socket's send queue fills)
#   7  per-rule counters (packets, flows), flow table, no conntrack drops of good traffic
#   8  inspection (rule b-to-a-inspected, B → A tcp/83, action inspect): B's request to A's
#      httpd succeeds; the same request carrying a signature's string ("/etc/passwd" in its
#      Referer) is blocked inline and an eve alert names sid 9100001; with B's port reloaded
#      into monitor mode the request succeeds and the alert says the drop would have happened
#
# The host drives both guests: each runs tests/guests/serve.sh, which executes the steps the
# host writes on its second serial port (ttyS1, a QEMU pipe chardev) and reports each with a
# RESULT marker on its console. Guests boot with ipv6.disable=1 so that no background IPv6
# traffic (router and neighbour solicitations) moves the drop counters this test compares.
#
# Usage: tests/guests/firewall.sh     Environment:
#   CI=true            a missing prerequisite (QEMU, hugepages, root) fails instead of skipping
#   RAMPART_SKIP_BUILD=1  use target/release binaries as they are (no cargo build)
#   KEEP_LOGS=1        keep the temp dir (configs, logs, guest consoles) and print its path
# Prints PASS/FAIL per check and ends with `firewall-guests: N passed, M failed`; exit 1 on
# any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/guests/common.sh
. "$here/common.sh" # also sets $repo, $gdir (the test guest) and $bin (target/release)
guest_mem=256 dp_mem=256
t0=$EPOCHREALTIME
passed=0 failed=0 suite=firewall-guests
work='' dp_pid='' ctl_pid='' qa_pid='' qb_pid='' waiter='' prefix="rp-fw-$$" shm="/dev/shm/rampart-fw-$$"

show_logs() {
	show_rampart_logs
	[[ -n $work && -d $work ]] || return 0
	if [[ -S $work/control.sock ]]; then
		echo "---- rampartctl flows ----"
		ctl flows 2>&1 | sed 's/^/  | /'
	fi
	if [[ -f $work/log/eve.json ]]; then
		echo "---- event log: flow and drop records (last 20) ----"
		grep -E '"event_type":"(flow|drop)"' "$work/log/eve.json" | tail -n 20 | sed 's/^/  | /'
	fi
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_waiter
	# QEMU first (the guests' vhost-user peers), then control, then the dataplane.
	stop "$qb_pid" "guest b"
	stop "$qa_pid" "guest a"
	stop "$ctl_pid" "rampartctl run"
	stop "$dp_pid" "rampart-dataplane"
	# A dataplane that had to be SIGKILLed leaves its hugepage files, runtime dir and segment.
	# The segment, and the flow dump `rampartctl flows` made (the dataplane leaves it behind).
	rm -f /dev/hugepages/"$prefix"map_* "$shm" "$shm.flows" "$shm.tmp"
	rm -rf "/var/run/dpdk/$prefix"
	remove_work
	exit "$rc"
}
install_traps

# ---------------------------------------------------------------------------- prerequisites
check_prerequisites
# ---------------------------------------------------------------------------- configuration
work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-fw-guests.XXXXXX")
cfg=$work/rampart.toml
port=$((20000 + RANDOM % 20000))
while [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; do port=$((20000 + RANDOM % 20000)); done

# Run private copies: a rebuild by someone else mid-run must not pair a new rampartctl
# (which publishes policy images and reloads) with the running dataplane.
mkdir -p "$work/bin"
for b in rampart-dataplane rampartctl; do cp "$bin/$b" "$work/bin/$b" || abort "cannot copy $bin/$b"; done
bin=$work/bin

# write_cfg WITH_8080 [B_MODE]: the config, with or without rule b-to-a-8080, vm-b's port
# inline (default) or in monitor mode (written atomically).
write_cfg() {
	{
		cfg_head drop
		cat <<-EOF

			[[ports]]
			name = "vm-a"
			kind = "vhost-server"
			socket = "$work/vm-a.sock"
			segment = "lan"
			macs = ["52:54:00:12:00:0a"]
			addresses = ["10.0.0.1"]
			tags = ["web"]
			enabled = true

			[[ports]]
			name = "vm-b"
			kind = "vhost-server"
			socket = "$work/vm-b.sock"
			segment = "lan"
			macs = ["52:54:00:12:00:0b"]
			addresses = ["10.0.0.2"]
			enabled = true
			mode = "${2:-inline}"

			[[rules]]
			id = "b-to-a-http"
			from = ["guest:vm-b"]
			to = ["guest:vm-a"]
			protocol = "tcp"
			ports = "80"
			action = "allow"

			[[rules]]
			id = "b-to-a-rejected"
			from = ["guest:vm-b"]
			to = ["guest:vm-a"]
			protocol = "tcp"
			ports = "81"
			action = "reject"

			[[rules]]
			id = "b-to-a-ping"
			from = ["guest:vm-b"]
			to = ["guest:vm-a"]
			protocol = "icmp"
			action = "allow"

			[[rules]]
			id = "b-to-a-inspected"
			from = ["guest:vm-b"]
			to = ["guest:vm-a"]
			protocol = "tcp"
			ports = "83"
			action = "inspect"

			[[inspection]]
			vars = { HOME_NET = "[10.0.0.0/24]" }
			signatures = ['drop tcp any any -> \$HOME_NET 83 (msg:"passwd file named in a request"; flow:to_server,established; content:"/etc/passwd"; classtype:web-application-attack; sid:9100001; rev:1;)']
		EOF
		[[ $1 == true ]] && cat <<-EOF

			[[rules]]
			id = "b-to-a-8080"
			from = ["guest:vm-b"]
			to = ["tag:web"]
			protocol = "tcp"
			ports = "8080"
			action = "allow"
		EOF
	} >"$cfg.new"
	mv "$cfg.new" "$cfg"
}
write_cfg true
# snap NAME: save `rampartctl stats --json` to $work/NAME.json.
snap() { ctl stats --json >"$work/$1.json" 2>"$work/$1.err" || echo "firewall.sh: stats --json: $(cat "$work/$1.err")" >&2; }
drops() { json "$work/$1.json" "d['stats']['drops'].get('$2', 0)" || echo -1; }
all_drops() { json "$work/$1.json" "', '.join('%s=%d' % kv for kv in sorted(d['stats']['drops'].items()) if kv[1]) or 'none'"; }
rule_field() { json "$work/$1.json" "next((r['$3'] for r in d['stats']['rules'] if r['id'] == '$2'), -1)" || echo -1; }
show_rules() {
	json "$work/$1.json" "'\n'.join('       rule %-16s %-7s packets=%d bytes=%d flows=%d' % (r['id'], r['action'], r['packets'], r['bytes'], r['flows']) for r in d['stats']['rules']) + '\n       flow table: ' + ', '.join('%s=%s' % kv for kv in d['stats']['flow_table'].items()) + '\n       drops: ' + (', '.join('%s=%d' % kv for kv in sorted(d['stats']['drops'].items()) if kv[1]) or 'none')"
}
# flows NAME [FILTERS]: save `rampartctl flows --json FILTERS` to $work/NAME.json.
flows() {
	local n=$1
	shift
	ctl flows --json "$@" >"$work/$n.json" 2>"$work/$n.err" || echo "firewall.sh: flows --json: $(cat "$work/$n.err")" >&2
}
# flow8080 NAME: the tracked flows to A's port 8080, one per line.
flow8080() {
	json "$work/$1.json" "'\n'.join('%s %s:%s -> %s:%s %s guest=%s pkts=%s bytes=%s' % (f.get('proto'), f.get('src_ip'), f.get('src_port'), f.get('dest_ip'), f.get('dest_port'), f.get('state'), f.get('guest'), f.get('pkts'), f.get('bytes')) for f in d['flows'] if f.get('dest_port') == 8080 and f.get('dest_ip') == '10.0.0.1')"
}

# ---------------------------------------------------------------------------- rampart up
start_rampart

# ---------------------------------------------------------------------------- guests
token=rampart-$RANDOM$RANDOM$RANDOM
{
	cat <<-EOF
		token=$token
		mkdir -p /tmp/www && echo "\$token" >/tmp/www/f
		# The same token on 80 (allowed), 81 (rejected) and 82 (no rule): whatever fails
		# from B fails in the network, not for want of a server.
		for p in 80 81 82; do httpd -h /tmp/www -p \$p || echo "a: httpd -p \$p failed"; done
		# 83: inspected (step 8).
		httpd -h /tmp/www -p 83 || echo "a: httpd -p 83 failed"
		# 8080: every connection's lines appear on the console as A-GOT lines.
		printf '#!/bin/sh\nwhile read -r l; do echo "A-GOT \$l" >/dev/console; done\necho A-GOT-EOF >/dev/console\n' >/tmp/got
		chmod +x /tmp/got
		nc -ll -p 8080 -e /tmp/got &
		# say HOST PORT WORD: one line over TCP.
		say() { echo "\$3" | timeout 10 nc -w 5 "\$1" "\$2"; }
	EOF
	cat "$here/serve.sh"
} >"$work/a.sh"
{
	cat <<-EOF
		token=$token
		mkdir -p /tmp/www && echo "\$token" >/tmp/www/f
		httpd -h /tmp/www -p 80 || echo "b: httpd -p 80 failed"
		# stream HOST PORT: one long-lived connection, a line every 0.5 s, in the background.
		stream() {
			( i=0; while [ \$i -lt 2000 ]; do i=\$((i + 1)); echo "b-seq \$i"; echo "B-SENT \$i" >/dev/console; sleep 0.5; done ) |
				nc -w 10 "\$1" "\$2" >/dev/null 2>/tmp/stream.err &
			echo \$! >/tmp/stream.pid
			sleep 1
			kill -0 "\$(cat /tmp/stream.pid)" || { note "nc ended: \$(cat /tmp/stream.err)"; return 1; }
		}
		# stalled HOST PORT: the connection is still open and its send queue is not empty.
		stalled() {
			l=\$(netstat -tn | awk -v p="\$1:\$2" '\$5 == p')
			note "\${l:-no socket to \$1:\$2}"
			echo "\$l" | awk '{ exit !(\$3 > 0 && \$6 == "ESTABLISHED") }'
		}
		stream_stop() { kill "\$(cat /tmp/stream.pid)"; }
	EOF
	cat "$here/serve.sh"
} >"$work/b.sh"
t=$EPOCHREALTIME
for g in a b; do
	ip=10.0.0.1 && [[ $g == b ]] && ip=10.0.0.2
	pid=$(start_served_guest $g $ip vhost-user,chardev=c0 --extra "-chardev socket,id=c0,path=$work/vm-$g.sock,reconnect=1") ||
		abort "cannot start guest $g"
	if [[ $g == a ]]; then qa_pid=$pid; else qb_pid=$pid; fi
done

for g in a b; do
	waitg "$work/$g.log" "RAMPART-GUEST-READY $g" 180 || abort "guest $g did not boot within 180 s"
	pass "guest $g booted and ready ($(since "$t") since start; guest uptime" \
		"$(tr -d '\r' <"$work/$g.log" | sed -n "s/^RAMPART-GUEST-BEGIN $g uptime=//p")s)"
done

# run GUEST STEP TIMEOUT WHAT FUNCTION [ARGS...]: have GUEST run `rp_check STEP FUNCTION ARGS`;
# its RESULT must say rc 0. A missing result (timeout, guest gone) ends the run.
run() { run_step "$@"; }

# grew BEFORE AFTER REASON MIN WHAT: drop counter REASON rose by at least MIN.
grew() {
	local b a
	b=$(drops "$1" "$3") a=$(drops "$2" "$3")
	if ((a >= 0 && b >= 0 && a - b >= $4)); then
		pass "stats: drops $3 $b -> $a (+$((a - b))): $5"
	else
		fail "stats: drops $3 $b -> $a, expected +$4 or more: $5 (drops now: $(all_drops "$2"))"
	fi
}

# last_seq LOG WORD: the highest N of the console lines `WORD b-seq N` / `WORD N`.
last_seq() { tr -d '\r' <"$work/$1.log" | awk -v w="$2" '$1 == w { n = $NF + 0; if (n > m) m = n } END { print m + 0 }'; }

# ---------------------------------------------------------------------------- servers
echo "---- servers answer locally"
for p in 80 81 82; do run a local$p 60 "A serves the token on port $p over loopback" fetch 127.0.0.1 $p; done
run a local8080 60 "A's 8080 listener takes a line over loopback" say 127.0.0.1 8080 local-check
if waitg "$work/a.log" "A-GOT local-check" 30; then pass "a: the 8080 listener printed the line"; else fail "a: the 8080 listener printed nothing"; fi
run b local80 60 "B serves the token on port 80 over loopback" fetch 127.0.0.1 80

# ---------------------------------------------------------------------------- 1. allowed service
echo "---- 1: B -> A:80 allowed by rule b-to-a-http; A's replies pass by state"
snap s0
run b fetch 90 "B fetches the token from A:80" fetch 10.0.0.1 80

# ---------------------------------------------------------------------------- 2. reject
echo "---- 2: B -> A:81, rule b-to-a-rejected (reject)"
snap s1
run b refused81 60 "B -> A:81 is refused at once (A listens on 81)" refused 10.0.0.1 81
snap s2
grew s1 s2 rule_reject 1 "Rampart rejected B's SYN to A:81"
r=$(rule_field s2 b-to-a-rejected packets)
if ((r > 0)); then pass "rule b-to-a-rejected: packets=$r"; else fail "rule b-to-a-rejected: packets=$r, expected > 0"; fi

# ---------------------------------------------------------------------------- 3. default drop
echo "---- 3: B -> A:82, no rule (default drop)"
run b silent82 60 "B -> A:82 times out, without a refusal (A listens on 82)" silent 10.0.0.1 82
snap s3
grew s2 s3 policy_drop 1 "B's SYNs to A:82 met the default action"
if [[ $(drops s3 rule_reject) == "$(drops s2 rule_reject)" ]]; then pass "stats: no rejection for A:82"; else fail "stats: rule_reject moved during step 3"; fi

# ---------------------------------------------------------------------------- 4. reverse denied
echo "---- 4: A -> B:80, no rule (default drop), while B -> A:80 works"
run a silent_b80 60 "A -> B:80 times out (B listens on 80)" silent 10.0.0.2 80
snap s4
grew s3 s4 policy_drop 1 "A's SYNs to B:80 met the default action"
run b fetch_again 90 "B still fetches the token from A:80" fetch 10.0.0.1 80

# ---------------------------------------------------------------------------- 5. icmp
echo "---- 5: ping B -> A allowed (rule b-to-a-ping), A -> B denied"
run b ping_a 60 "B pings A (A's echo replies pass by state)" pings 10.0.0.1
snap s5a
run a no_ping_b 60 "A cannot ping B" no_pings 10.0.0.2
snap s5
grew s5a s5 policy_drop 3 "A's 3 echo requests met the default action"
for reason in conntrack_invalid conntrack_not_syn policy_cut rule_deny; do
	n=$(drops s5 $reason)
	if [[ $n == 0 ]]; then pass "stats: drops $reason=0 before the reload"; else fail "stats: drops $reason=$n before the reload (good traffic dropped?)"; fi
done
show_rules s5

# ---------------------------------------------------------------------------- 6. reload cuts
echo "---- 6: a long-lived B -> A:8080 connection, cut by a reload that removes b-to-a-8080"
run b stream 60 "B opens a connection to A:8080 and writes a line every 0.5 s" stream 10.0.0.1 8080
if waitg "$work/a.log" "A-GOT b-seq 4" 60; then
	pass "a: receives B's lines on 8080 (A-GOT b-seq 4)"
else
	fail "a: did not receive B's 4th line on 8080"
fi
flows f6
established=$(flow8080 f6 | grep -i ' established ')
if [[ -n $established ]]; then
	pass "rampartctl flows: $established"
else
	fail "rampartctl flows lists no ESTABLISHED flow to 10.0.0.1:8080: $(flow8080 f6 | tr '\n' ';') (all: $(head -c 600 "$work/f6.json"))"
fi
# The same through the filters: --port and --state (ESTABLISHED, as its help spells it).
flows f6f --guest vm-b --port 8080 --state ESTABLISHED
n=$(json "$work/f6f.json" "len(d['flows'])")
if [[ $n == 1 ]] && flow8080 f6f | grep -qi ' established '; then
	pass "rampartctl flows --guest vm-b --port 8080 --state ESTABLISHED: $(flow8080 f6f)"
else
	fail "rampartctl flows --guest vm-b --port 8080 --state ESTABLISHED: ${n:-?} flows: $(head -c 600 "$work/f6f.json")"
fi
snap s6a
live=$(json "$work/s6a.json" "d['stats']['flow_table']['live']")
if ((${live:-0} >= 1)); then pass "stats: flow_table live=$live"; else fail "stats: flow_table live=${live:-?}, expected >= 1"; fi

t=$EPOCHREALTIME
write_cfg false
if out=$(ctl reload 2>&1); then pass "rampartctl reload without rule b-to-a-8080: $out"; else fail "rampartctl reload exited non-zero: $out"; fi
gen=$(applied)
if [[ $gen == 2 ]]; then pass "status: applied_generation 2"; else fail "status: applied_generation is ${gen:-unknown}, expected 2"; fi
# Cut at its next packet (drops policy_cut) or by the dataplane's sweep after the reload,
# whichever comes first: either way the flow table counts one removal.
cut=0
for _ in $(seq 100); do # 20 s
	snap s6b
	cut=$(json "$work/s6b.json" "d['stats']['flow_table']['removals']" || echo 0)
	((cut >= 1)) && break
	sleep 0.2
done
if ((cut >= 1)); then pass "stats: flow_table removals=$cut, drops policy_cut=$(drops s6b policy_cut) ($(since "$t") after the reload)"; else fail "stats: flow_table removals=$cut 20 s after the reload (drops: $(all_drops s6b))"; fi
rec=''
for _ in $(seq 50); do # 10 s: the event log is written by the control process
	rec=$(grep '"event_type":"flow"' "$work/log/eve.json" 2>/dev/null | grep '"reason":"policy"' | grep '"dest_port":8080' | head -n1)
	[[ -n $rec ]] && break
	sleep 0.2
done
if [[ -n $rec ]]; then pass "event log: $rec"; else fail "event log: no flow record with reason policy for port 8080 (records with reason policy: $(grep '"reason":"policy"' "$work/log/eve.json" 2>/dev/null | head -c 600))"; fi

# The guest side: after the cut A gets nothing more while B goes on writing.
sleep 3
got1=$(last_seq a A-GOT) sent1=$(last_seq b B-SENT)
sleep 6
got2=$(last_seq a A-GOT) sent2=$(last_seq b B-SENT)
if ((got2 == got1 && got1 >= 4 && sent2 >= sent1 + 4)); then
	pass "a: stopped receiving at line $got1 while B wrote lines $sent1 -> $sent2"
else
	fail "a: received lines $got1 -> $got2 over 6 s while B wrote $sent1 -> $sent2 (expected no new line at A, >= 4 at B)"
fi
run b stalled 30 "B's connection to A:8080 is stuck: open, unacknowledged data queued" stalled 10.0.0.1 8080
flows f6c
if flow8080 f6c | grep -qi ' established '; then
	fail "rampartctl flows still lists the 8080 flow ESTABLISHED after the cut: $(flow8080 f6c)"
else
	pass "rampartctl flows: no ESTABLISHED flow to A:8080 after the cut"
fi
snap s6
grew s6b s6 policy_drop 1 "B's retransmissions after the cut met the default action"
show_rules s6
run b stream_stop 30 "B stops its writer" stream_stop
run b fetch_after 90 "B still fetches the token from A:80 under the new policy" fetch 10.0.0.1 80

# ---------------------------------------------------------------------------- 7. counters
echo "---- 7: per-rule counters"
snap s7
show_rules s7
p=$(rule_field s7 b-to-a-http packets) f=$(rule_field s7 b-to-a-http flows)
if ((p > 0 && f >= 1)); then pass "rule b-to-a-http: packets=$p flows=$f"; else fail "rule b-to-a-http: packets=$p flows=$f, expected packets > 0 and flows >= 1"; fi
p=$(rule_field s7 b-to-a-ping packets) f=$(rule_field s7 b-to-a-ping flows)
if ((p >= 6 && f >= 1)); then pass "rule b-to-a-ping: packets=$p flows=$f"; else fail "rule b-to-a-ping: packets=$p flows=$f, expected packets >= 6 (3 requests, 3 replies) and flows >= 1"; fi
c=$(json "$work/s7.json" "d['stats']['flow_table']['creations']")
if ((${c:-0} >= 5)); then pass "stats: flow_table creations=$c"; else fail "stats: flow_table creations=${c:-?}, expected >= 5 (3 fetches, a ping, the stream)"; fi

# ---------------------------------------------------------------------------- 8. inspection
echo "---- 8: B -> A:83 inspected (rule b-to-a-inspected): inline, then in monitor mode"
# alert_for WHAT FILTER: waits (10 s) for an eve alert of sid 9100001 whose line matches FILTER.
alert_for() {
	local rec=''
	for _ in $(seq 50); do
		rec=$(grep '"event_type":"alert"' "$work/log/eve.json" 2>/dev/null | grep '"signature_id":9100001' | grep -e "$2" | tail -n1)
		[[ -n $rec ]] && break
		sleep 0.2
	done
	if [[ -n $rec ]]; then pass "event log ($1): $rec"; else fail "event log: no alert of sid 9100001 matching $2 ($1; alerts: $(grep '"event_type":"alert"' "$work/log/eve.json" 2>/dev/null | tail -n3))"; fi
}
snap s8a
run b inspected_ok 90 "B fetches the token from A:83 through inspection (a clean request)" fetch_with 10.0.0.1 83 /index.html
run b inspected_blocked 90 "B's request naming /etc/passwd is blocked inline: no answer" blocked_with 10.0.0.1 83 /etc/passwd
snap s8b
grew s8a s8b signature 1 "a drop signature matched B's request"
alert_for inline '"action":"blocked"'
write_cfg false monitor
if out=$(ctl reload 2>&1); then pass "rampartctl reload with vm-b in monitor mode: $out"; else fail "rampartctl reload exited non-zero: $out"; fi
run b monitored 90 "in monitor mode the same request succeeds" fetch_with 10.0.0.1 83 /etc/passwd
alert_for monitor '"would":"drop"'
snap s8
w=$(json "$work/s8.json" "d['stats']['would_drops'].get('signature', 0)")
if ((${w:-0} >= 1)); then pass "stats: would_drops signature=$w"; else fail "stats: would_drops signature=${w:-?}, expected >= 1"; fi

# ---------------------------------------------------------------------------- the end
for g in a b; do
	timeout 10 bash -c 'echo done >"$1"' _ "$work/$g-ctl.in"
	if waitg "$work/$g.log" "RAMPART-GUEST-POWEROFF $g" 60; then pass "guest $g powered off"; else fail "guest $g did not power off"; fi
done
if alive "$dp_pid" && alive "$ctl_pid"; then pass "dataplane and control still running"; else fail "dataplane or control exited"; fi
finish
