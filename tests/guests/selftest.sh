#!/bin/bash
# Prove the guest kit: two guests wired back to back (QEMU UDP socket netdev, no Rampart).
# A (10.0.0.1) serves a file with busybox httpd and stays up; B (10.0.0.2) pings A, fetches
# the file with nc, and expects "Connection refused" from a closed port.
# Usage: tests/guests/selftest.sh [GUEST_DIR]   Logs are kept in a temp dir on failure
# (and on success with KEEP_LOGS=1).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gdir=$(realpath -m "${1:-$here/../../target/guest}")
work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-guest-selftest.XXXXXX")
pids=()
t0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
cleanup() {
	# Only the QEMUs this run started.
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
fail() {
	echo "selftest.sh: FAIL: $*" >&2
	echo "selftest.sh: logs in $work" >&2
	exit 1
}

# expect GUEST STEP TIMEOUT: wait for the RESULT line of a step, require rc 0, print timing.
expect() {
	local log=$work/$1.log key=$1${2:+/$2} t=$EPOCHREALTIME rc
	"$here/wait-guest.sh" "$log" "RAMPART-GUEST-RESULT $key " "$3" || fail "no result for $key"
	rc=$(tr -d '\r' <"$log" | awk -v k="$key" '$1 == "RAMPART-GUEST-RESULT" && $2 == k { print $3 }')
	[[ $rc == 0 ]] || fail "$key returned rc=$rc (see $log)"
	echo "ok   $key ($(since "$t"))"
}

t=$EPOCHREALTIME
"$here/build.sh" "$gdir" >/dev/null || fail "build.sh failed"
echo "ok   build ($(since "$t"))"

token=rampart-$RANDOM$RANDOM
cat >"$work/a.sh" <<-EOF
	mkdir -p /tmp/www && echo $token >/tmp/www/f
	rp_check httpd httpd -h /tmp/www -p 80
	# Serving locally before B asks: a failure here is A's, not the link's.
	rp_check local sh -c "printf 'GET /f HTTP/1.0\r\n\r\n' | nc 127.0.0.1 80 | grep -q $token"
EOF
cat >"$work/b.sh" <<-EOF
	# A boots at the same time: wait until it answers (up to ~60 s) before asserting.
	reach() { i=0; until ping -c 1 -W 1 10.0.0.1 >/dev/null; do i=\$((i + 1)); [ \$i -lt 60 ] || return 1; done; }
	fetch() {
		printf 'GET /f HTTP/1.0\r\n\r\n' | nc -w 5 10.0.0.1 80 >/tmp/resp
		cat /tmp/resp
		grep -q '^HTTP/1.[01] 200' /tmp/resp && grep -q '^$token' /tmp/resp
	}
	refused() { nc -w 5 10.0.0.1 81 </dev/null 2>&1 | tee /dev/console | grep -q 'Connection refused'; }
	rp_check reach reach
	rp_check ping ping -c 3 -W 2 10.0.0.1
	rp_check fetch fetch
	rp_check refused refused
EOF

# UDP socket netdevs: each side binds its own port, so start order does not matter
# (unlike socket listen=/connect=, where the listener blocks until the peer connects).
pa=$((20000 + RANDOM % 20000)) pb=$((pa + 1))
t=$EPOCHREALTIME
pids+=("$("$here/run-guest.sh" --name a --ip 10.0.0.1/24 --mac 52:54:00:00:00:0a --stay \
	--netdev "socket,udp=127.0.0.1:$pb,localaddr=127.0.0.1:$pa" \
	--script "$work/a.sh" --log "$work/a.log" --guest-dir "$gdir")") || fail "cannot start guest a"
pids+=("$("$here/run-guest.sh" --name b --ip 10.0.0.2/24 --mac 52:54:00:00:00:0b \
	--netdev "socket,udp=127.0.0.1:$pa,localaddr=127.0.0.1:$pb" \
	--script "$work/b.sh" --log "$work/b.log" --guest-dir "$gdir")") || fail "cannot start guest b"

for g in a b; do
	"$here/wait-guest.sh" "$work/$g.log" "RAMPART-GUEST-BEGIN $g " 180 || fail "guest $g did not boot"
	echo "ok   boot $g to ready ($(since "$t") since start; guest uptime" \
		"$(tr -d '\r' <"$work/$g.log" | sed -n "s/^RAMPART-GUEST-BEGIN $g uptime=//p")s)"
done
expect a httpd 60
expect a local 60
expect a '' 60
expect b reach 90
expect b ping 30
expect b fetch 30
expect b refused 30
expect b '' 30

# B must power itself off; A must still be up (it was told to stay).
"$here/wait-guest.sh" "$work/b.log" "RAMPART-GUEST-POWEROFF b" 10 || fail "b did not power off"
for _ in $(seq 50); do kill -0 "${pids[1]}" 2>/dev/null || break; sleep 0.2; done
! kill -0 "${pids[1]}" 2>/dev/null || fail "b's QEMU (pid ${pids[1]}) still running after poweroff"
kill -0 "${pids[0]}" 2>/dev/null || fail "a's QEMU exited, but a was told to stay up"
echo "PASS selftest ($(since "$t0") total)"
[[ ${KEEP_LOGS:-} == 1 ]] && echo "logs in $work" || rm -rf "$work"
