# Guest side of a host-driven test (firewall.sh): the host appends this file to a guest's
# fw_cfg script (after its variables and setup), so the guest runs, one by one, the steps
# the host writes on the guest's second serial port (ttyS1, a QEMU pipe chardev):
#   STEP FUNCTION [ARGS...]   runs `rp_check STEP FUNCTION ARGS` (marker RESULT NAME/STEP RC)
#   done                      ends the script (the guest powers off unless rp.stay=1)
# The host waits for `RAMPART-GUEST-READY NAME` before it writes anything: the UART drops
# what arrives before the guest opened it. Functions may print `RAMPART-NOTE NAME/STEP TEXT`
# (note) lines; the host quotes the last one of a step in its PASS/FAIL line.
# Busybox ash; init.sh provides rp_check and marker.

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
note() { printf '\nRAMPART-NOTE %s/%s %s\n' "$name" "$step" "$*"; }
# at_least A B / below A B: decimal comparisons.
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# try NC_ARGS...: connect with nc sending nothing (stdin at EOF half-closes a connection that
# opens; the server then answers and closes, so nc ends with rc 0). Sets rc, took, out.
try() {
	_t=$(now)
	out=$(timeout 30 nc "$@" </dev/null 2>&1)
	rc=$?
	took=$(since "$_t")
	out=$(echo "$out" | tr '\r\n' '  ' | cut -c1-160)
}
# refused HOST PORT: the connection is refused (an RST), at once.
refused() {
	try "$1" "$2"
	note "nc $1 $2: rc=$rc after ${took}s: $out"
	[ "$rc" != 0 ] && echo "$out" | grep -q 'Connection refused' && below "$took" 2
}
# silent HOST PORT: nothing answers: nc's 3 s connect timeout expires (no RST, no ICMP).
silent() {
	try -w 3 "$1" "$2"
	note "nc -w 3 $1 $2: rc=$rc after ${took}s: $out"
	[ "$rc" != 0 ] && echo "$out" | grep -q 'timed out' && ! echo "$out" | grep -qi refused &&
		at_least "$took" 2.5
}
# fetch HOST PORT: GET /f over TCP returns the token.
fetch() {
	_t=$(now)
	printf 'GET /f HTTP/1.0\r\n\r\n' | timeout 20 nc -w 5 "$1" "$2" >/tmp/resp 2>&1
	rc=$?
	note "GET http://$1:$2/f: rc=$rc after $(since "$_t")s: $(head -n1 /tmp/resp | tr -d '\r'), body $(tail -n1 /tmp/resp)"
	grep -q '^HTTP/1.[01] 200' /tmp/resp && grep -q "^$token\$" /tmp/resp
}
# get_with HOST PORT REFERER: GET /f over TCP with that Referer header; the response in /tmp/resp.
get_with() {
	_t=$(now)
	printf 'GET /f HTTP/1.0\r\nReferer: %s\r\n\r\n' "$3" | timeout 8 nc -w 5 "$1" "$2" >/tmp/resp 2>&1
	rc=$?
	note "GET http://$1:$2/f (Referer $3): rc=$rc after $(since "$_t")s: $(head -n1 /tmp/resp | tr -d '\r')"
}
# fetch_with HOST PORT REFERER: the token comes back.
fetch_with() { get_with "$@" && grep -q '^HTTP/1.[01] 200' /tmp/resp && grep -q "^$token\$" /tmp/resp; }
# blocked_with HOST PORT REFERER: the connection opens but no answer comes back.
blocked_with() { get_with "$@"; ! grep -q '^HTTP' /tmp/resp; }
# pings HOST: 3 echo requests, 3 replies.
pings() {
	ping -c 3 -W 2 "$1" >/tmp/ping 2>&1
	rc=$?
	note "ping -c 3 $1: rc=$rc: $(grep 'packets' /tmp/ping)"
	[ "$rc" = 0 ] && grep -q '3 packets received' /tmp/ping
}
# no_pings HOST: 3 echo requests, no reply.
no_pings() {
	ping -c 3 -W 2 "$1" >/tmp/ping 2>&1
	rc=$?
	note "ping -c 3 $1: rc=$rc: $(grep 'packets' /tmp/ping)"
	[ "$rc" != 0 ] && grep -q ' 0 packets received' /tmp/ping
}

exec 3<>/dev/ttyS1 && stty -echo <&3 || { echo "$name: no control port /dev/ttyS1"; exit 1; }
marker "READY $name"
step=''
while read -t 900 -r step fn args <&3; do
	[ "$step" = done ] && exit 0
	[ -n "$step" ] || continue
	# shellcheck disable=SC2086 # args are words on purpose
	rp_check "$step" $fn $args
done
echo "$name: no word from the host for 900 s"
exit 1
