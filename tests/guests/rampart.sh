#!/bin/bash
# Guests tier (DESIGN.md §7, §9): two real Linux guests in QEMU on Rampart vhost-user ports.
#
#   phase 1  vm-a and vm-b enabled in segment "lan": B pings A and fetches a random token
#            from A's busybox httpd over TCP; host: both ports count rx and tx packets.
#   phase 2  the host rewrites the config with vm-b disabled and runs `rampartctl reload`;
#            B must no longer reach A (ping and TCP fail); host: `port_disabled` drops grow.
#   phase 3  the host re-enables vm-b and reloads; B reaches A again (proves that phase 2
#            failed because of the policy, not because the guest or the port broke).
#
# Guest B is booted once: it blocks between phases on its second serial port (ttyS1, a QEMU
# pipe chardev) until the host writes the name of the next phase there, after the reload.
#
# Usage: tests/guests/rampart.sh     Environment:
#   CI=true            a missing prerequisite (QEMU, hugepages, root) fails instead of skipping
#   RAMPART_SKIP_BUILD=1  use target/release binaries as they are (no cargo build)
#   KEEP_LOGS=1        keep the temp dir (configs, logs, guest consoles) and print its path
# Prints PASS/FAIL per check and ends with `guests: N passed, M failed`; exit 1 on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/guests/common.sh
. "$here/common.sh" # also sets $repo, $gdir (the test guest) and $bin (target/release)
guest_mem=256 dp_mem=256
t0=$EPOCHREALTIME
passed=0 failed=0 suite=guests
work='' dp_pid='' ctl_pid='' qa_pid='' qb_pid='' waiter='' prefix="rp-guests-$$" shm="/dev/shm/rampart-guests-$$"

show_logs() { show_rampart_logs; }

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
	if [[ -z $dp_pid ]] || ! alive "$dp_pid"; then
		rm -f /dev/hugepages/"$prefix"map_* "$shm"
		rm -rf "/var/run/dpdk/$prefix"
	fi
	remove_work
	exit "$rc"
}
install_traps

# ---------------------------------------------------------------------------- prerequisites
check_prerequisites
# ---------------------------------------------------------------------------- configuration
work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-guests.XXXXXX")
cfg=$work/rampart.toml
port=$((20000 + RANDOM % 20000))
while [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; do port=$((20000 + RANDOM % 20000)); done

# write_cfg ENABLED_B: the config, with vm-b enabled or not (written atomically).
write_cfg() {
	{
		cfg_head forward
		cat <<-EOF

		[[ports]]
		name = "vm-a"
		kind = "vhost-server"
		socket = "$work/vm-a.sock"
		segment = "lan"
		macs = ["52:54:00:12:00:0a"]
		enabled = true

		[[ports]]
		name = "vm-b"
		kind = "vhost-server"
		socket = "$work/vm-b.sock"
		segment = "lan"
		macs = ["52:54:00:12:00:0b"]
		enabled = $1
		EOF
	} >"$cfg.new"
	mv "$cfg.new" "$cfg"
}
write_cfg true
# snap NAME: save `rampartctl stats --json` to $work/NAME.json.
snap() { ctl stats --json >"$work/$1.json" 2>"$work/$1.err"; }
port_field() { json "$1" "next((p['$3'] for p in d['stats']['ports'] if p['name'] == '$2'), -1)"; }
drops() { json "$1" "d['stats']['drops'].get('$2', 0)"; }
show_stats() {
	json "$1" "'\n'.join('       %-5s state=%s enabled=%s rx=%d tx=%d dropped=%d' % (p['name'], p['state'], p['enabled'], p['rx_packets'], p['tx_packets'], p['drop_packets']) for p in d['stats']['ports']) + '\n       drops: ' + (', '.join('%s=%d' % kv for kv in d['stats']['drops'].items()) or 'none')"
}

# ---------------------------------------------------------------------------- rampart up
start_rampart

# ---------------------------------------------------------------------------- guests
token=rampart-$RANDOM$RANDOM$RANDOM
cat >"$work/a.sh" <<-EOF
	mkdir -p /tmp/www && echo $token >/tmp/www/f
	rp_check httpd httpd -h /tmp/www -p 80
	# Serving locally before B asks: a failure here is A's, not the network's.
	rp_check local sh -c "printf 'GET /f HTTP/1.0\r\n\r\n' | nc 127.0.0.1 80 | grep -q $token"
EOF
cat >"$work/b.sh" <<-EOF
	# The host's phase signals arrive on ttyS1. Open it now, before the host can write, so
	# nothing it sends is lost, and keep the tty from echoing it back.
	exec 3<>/dev/ttyS1 && stty -echo <&3 || echo "b: no control port /dev/ttyS1"
	# wait_host WORD: block until the host writes WORD (after its reload), up to 5 minutes.
	wait_host() {
		while read -t 300 -r w <&3; do
			[ "\$w" = "\$1" ] && return 0
			echo "b: ignoring '\$w' from the host while waiting for '\$1'"
		done
		return 1
	}
	# reach N: A answers a ping within about N seconds (A boots at the same time as B).
	reach() { i=0; until ping -c 1 -W 1 10.0.0.1 >/dev/null; do i=\$((i + 1)); [ \$i -lt \$1 ] || return 1; done; }
	fetch() {
		printf 'GET /f HTTP/1.0\r\n\r\n' | timeout 20 nc -w 5 10.0.0.1 80 >/tmp/resp
		cat /tmp/resp
		grep -q '^HTTP/1.[01] 200' /tmp/resp && grep -q '^$token\$' /tmp/resp
	}
	no_ping() { ! ping -c 3 -W 1 10.0.0.1; }
	no_fetch() { ! fetch; }

	ok=0
	rp_check reach reach 90 || ok=1
	rp_check ping ping -c 3 -W 2 10.0.0.1 || ok=1
	rp_check fetch fetch || ok=1
	rp_check phase1 test \$ok = 0

	ok=0
	rp_check signal2 wait_host phase2 || ok=1
	rp_check blocked_ping no_ping || ok=1
	rp_check blocked_fetch no_fetch || ok=1
	rp_check phase2 test \$ok = 0

	ok=0
	rp_check signal3 wait_host phase3 || ok=1
	rp_check reach_again reach 30 || ok=1
	rp_check fetch_again fetch || ok=1
	exit \$ok
EOF
mkfifo "$work/b-ctl.in" "$work/b-ctl.out"

t=$EPOCHREALTIME
qa_pid=$("$here/run-guest.sh" --name a --ip 10.0.0.1/24 --mac 52:54:00:12:00:0a --stay \
	--mem "$guest_mem" --netdev vhost-user,chardev=c0 \
	--extra "-chardev socket,id=c0,path=$work/vm-a.sock,reconnect=1" \
	--script "$work/a.sh" --log "$work/a.log" --guest-dir "$gdir") || abort "cannot start guest a"
qb_pid=$("$here/run-guest.sh" --name b --ip 10.0.0.2/24 --mac 52:54:00:12:00:0b \
	--mem "$guest_mem" --netdev vhost-user,chardev=c0 \
	--extra "-chardev socket,id=c0,path=$work/vm-b.sock,reconnect=1 -chardev pipe,id=ctl,path=$work/b-ctl -serial chardev:ctl" \
	--script "$work/b.sh" --log "$work/b.log" --guest-dir "$gdir") || abort "cannot start guest b"

for g in a b; do
	waitg "$work/$g.log" "RAMPART-GUEST-BEGIN $g " 120 || abort "guest $g did not boot within 120 s"
	pass "guest $g booted ($(since "$t") since start; guest uptime" \
		"$(tr -d '\r' <"$work/$g.log" | sed -n "s/^RAMPART-GUEST-BEGIN $g uptime=//p")s)"
done

# expect GUEST STEP TIMEOUT WHAT: the guest's RESULT line for STEP must say rc 0.
# A missing line (timeout, guest gone) ends the run: later steps cannot come either.
expect() {
	local log=$work/$1.log key=$1${2:+/$2} t=$EPOCHREALTIME rc
	waitg "$log" "RAMPART-GUEST-RESULT $key " "$3" ||
		abort "$key: $4 (no result within $3 s)"
	rc=$(tr -d '\r' <"$log" | awk -v k="$key" '$1 == "RAMPART-GUEST-RESULT" && $2 == k { print $3; exit }')
	if [[ $rc == 0 ]]; then pass "$key: $4 ($(since "$t"))"; else fail "$key: $4 (rc=$rc)"; fi
}

# signal WORD: tell guest B that the next phase starts.
signal() {
	timeout 10 bash -c 'echo "$1" >"$2"' _ "$1" "$work/b-ctl.in" || abort "cannot signal $1 to guest b"
}

# reload ENABLED_B GEN: rewrite the config and apply it; it must be generation GEN.
reload() {
	local t=$EPOCHREALTIME out
	write_cfg "$1"
	if out=$(ctl reload 2>&1); then
		pass "rampartctl reload with vm-b enabled=$1: $out ($(since "$t"))"
	else
		fail "rampartctl reload with vm-b enabled=$1 exited non-zero: $out"
	fi
	local gen
	gen=$(applied)
	if [[ $gen == "$2" ]]; then
		pass "status: applied_generation $2"
	else
		fail "status: applied_generation is ${gen:-unknown}, expected $2: $(cat "$work/status.json")"
	fi
	snap "gen$2"
	if [[ $(port_field "$work/gen$2.json" vm-b enabled) == "$([[ $1 == true ]] && echo True || echo False)" ]]; then
		pass "ports: vm-b enabled=$1"
	else
		fail "ports: vm-b enabled is not $1"
		show_stats "$work/gen$2.json"
	fi
}

# ---------------------------------------------------------------------------- phase 1
echo "---- phase 1: vm-a and vm-b enabled"
expect a httpd 60 "A serves the token with httpd"
expect a local 60 "A fetches its own token over loopback"
expect b reach 150 "B reaches A (ping)"
expect b ping 60 "B pings A 3 times"
expect b fetch 60 "B fetches the token from A over TCP"
expect b phase1 10 "phase 1 in the guest"
if snap phase1; then
	show_stats "$work/phase1.json"
	for p in vm-a vm-b; do
		rx=$(port_field "$work/phase1.json" $p rx_packets) tx=$(port_field "$work/phase1.json" $p tx_packets)
		if ((${rx:-0} > 0 && ${tx:-0} > 0)); then
			pass "stats: $p rx_packets=$rx tx_packets=$tx"
		else
			fail "stats: $p rx_packets=${rx:-?} tx_packets=${tx:-?}, expected both > 0"
		fi
	done
else
	fail "rampartctl stats --json: $(cat "$work/phase1.err")"
fi
disabled0=$(drops "$work/phase1.json" port_disabled)

# ---------------------------------------------------------------------------- phase 2
echo "---- phase 2: vm-b disabled by policy"
reload false 2
signal phase2
expect b signal2 60 "B got the phase 2 signal"
expect b blocked_ping 60 "B cannot ping A"
expect b blocked_fetch 60 "B cannot fetch from A"
expect b phase2 10 "phase 2 in the guest"
if snap phase2; then
	show_stats "$work/phase2.json"
	disabled=$(drops "$work/phase2.json" port_disabled)
	if ((${disabled:-0} > ${disabled0:-0})); then
		pass "stats: drops port_disabled=$disabled (was ${disabled0:-0} after phase 1)"
	else
		fail "stats: drops port_disabled=${disabled:-?}, expected > ${disabled0:-0}"
	fi
else
	fail "rampartctl stats --json: $(cat "$work/phase2.err")"
fi

# ---------------------------------------------------------------------------- phase 3
echo "---- phase 3: vm-b enabled again"
reload true 3
signal phase3
expect b signal3 60 "B got the phase 3 signal"
expect b reach_again 60 "B reaches A again"
expect b fetch_again 60 "B fetches the token from A again"
expect b '' 30 "guest B script"
if waitg "$work/b.log" "RAMPART-GUEST-POWEROFF b" 30; then
	pass "guest b powered off"
else
	fail "guest b did not power off"
fi
if alive "$qa_pid"; then pass "guest a still up"; else fail "guest a's QEMU (pid $qa_pid) exited"; fi
if alive "$dp_pid" && alive "$ctl_pid"; then pass "dataplane and control still running"; else fail "dataplane or control exited"; fi
finish
