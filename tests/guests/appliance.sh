#!/bin/bash
# Guests tier (DESIGN.md §1 service-VM mode, §7, §9): the Rampart service VM
# (target/vm-image/rampart.qcow2, built by vm-image/build.sh) booted in QEMU (TCG) from its
# disk, chained between two real Linux guests: A (10.0.0.1) on its NIC "inside", B
# (10.0.0.2) on "outside" (QEMU UDP socket netdev pairs), and a management NIC on
# `-netdev user,restrict=on` whose ports 9100 (metrics) and 9101 (status page) are forwarded
# to host loopback only. A serves a token with busybox httpd on ports 80 and 81.
#
#   good   config drive = vm-image/config/{rampart.conf,policy.toml} (the shipped examples:
#          a wire inside <-> outside, default drop, B -> A tcp/80 and icmp allowed):
#          the appliance reports `forwarding`; boot-to-forwarding time = QEMU start to B's
#          first ping reply from A; B fetches from A:80; B -> A:81 times out (no rule);
#          Prometheus over the management channel: port and rule counters rise, policy_drop
#          counts the blocked SYNs; over the serial console the host edits
#          /etc/rampart/rampart.toml (rule "web": port 80 -> 81) and runs `rampartctl
#          reload`: now B -> A:80 times out and B fetches from A:81
#   closed a malformed policy.toml (default failure=closed): the appliance reports
#          `failed-closed` with the error (file and line) on its console, its status page and
#          its metrics port; B can neither ping A nor reach A:80; it did not reboot
#   open   failure=open and no policy.toml: `failed-open` with the error; the two data NICs
#          are wired, B fetches from A:81 (no policy: everything passes)
#
# The guests run tests/guests/serve.sh: the host writes steps on their second serial port.
# Every wait has a timeout; an appliance that does not come up says so and ends the run.
#
# Usage: tests/guests/appliance.sh     Environment:
#   CI=true            a missing prerequisite (QEMU, hugepages, root) fails instead of skipping
#   RAMPART_SKIP_BUILD=1  use target/release binaries as they are (no cargo build)
#   KEEP_LOGS=1        keep the temp dir (config drives, consoles, scrapes) and print its path
# Prints PASS/FAIL per check, the image size and boot-to-forwarding time, and ends with
# `appliance-guests: N passed, M failed`; exit 1 on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/guests/common.sh
. "$here/common.sh" # also sets $repo, $gdir (the test guest) and $bin (target/release)
guest_mem=128 dp_mem=0
boot_timeout=240 # s, QEMU start to the appliance's state marker (TCG on a busy 2-core host)
t0=$EPOCHREALTIME
passed=0 failed=0 suite=appliance-guests
work='' qa_pid='' qb_pid='' app_pid='' waiter=''

show_logs() {
	[[ -n $work && -d $work ]] || return 0
	local f
	for f in a b app; do
		[[ -f $work/$f.log ]] || continue
		echo "---- $f console (last 40 lines) ----"
		tr -d '\r' <"$work/$f.log" | grep -v '^$' | tail -n 40 | sed 's/^/  | /'
	done
	[[ -s $work/app.qemu ]] && { echo "---- appliance QEMU ----"; tail -n 10 "$work/app.qemu" | sed 's/^/  | /'; }
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_waiter
	stop "$app_pid" "appliance"
	stop "$qb_pid" "guest b"
	stop "$qa_pid" "guest a"
	remove_work
	exit "$rc"
}
install_traps

# ---------------------------------------------------------------------------- prerequisites
check_prerequisites
t=$EPOCHREALTIME
if ! blog=$("$repo/vm-image/build.sh" 2>&1); then
	echo "$blog" | tail -n 20 | sed 's/^/  | /'
	missing "cannot build the service-VM image with vm-image/build.sh (Debian packages, syslinux, mtools, qemu-utils)"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/rampart-appliance.XXXXXX")
# A private copy: a rebuild by someone else mid-run must not change the disk under QEMU.
cp "$repo/target/vm-image/rampart.qcow2" "$work/rampart.qcow2" || abort "cannot copy the image"
size=$(stat -c %s "$work/rampart.qcow2")
pass "service-VM image ready ($(since "$t")): $(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }') qcow2 ($(grep -E '^(kernel|initramfs)=' "$repo/target/vm-image/build-info.txt" | tr '\n' ' '))"

# free_port: a TCP port nobody listens on, for the management forwards.
free_port() {
	local p=$((20000 + RANDOM % 20000))
	while [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; do p=$((20000 + RANDOM % 20000)); done
	echo "$p"
}
metrics_port=$(free_port) status_port=$(free_port)
# UDP socket netdevs bind their own port on each side: start order does not matter.
ua=$((40000 + RANDOM % 10000 * 2)) ub=$((ua + 2))

# ---------------------------------------------------------------------------- guests
token=rampart-$RANDOM$RANDOM$RANDOM
{
	cat <<-EOF
		token=$token
		mkdir -p /tmp/www && echo "\$token" >/tmp/www/f
		for p in 80 81; do httpd -h /tmp/www -p \$p || echo "a: httpd -p \$p failed"; done
	EOF
	cat "$here/serve.sh"
} >"$work/a.sh"
{
	cat <<-EOF
		token=$token
		# reach HOST TRIES: ping once a second until HOST answers.
		reach() {
			i=0
			until ping -c 1 -W 1 "\$1" >/dev/null 2>&1; do
				i=\$((i + 1))
				[ \$i -lt "\$2" ] || { note "no reply after \$i tries"; return 1; }
			done
			note "a reply after \$i unanswered tries"
		}
	EOF
	cat "$here/serve.sh"
} >"$work/b.sh"
t=$EPOCHREALTIME
qa_pid=$(start_served_guest a 10.0.0.1 "socket,udp=127.0.0.1:$((ua + 1)),localaddr=127.0.0.1:$ua" --stay) ||
	abort "cannot start guest a"
qb_pid=$(start_served_guest b 10.0.0.2 "socket,udp=127.0.0.1:$((ub + 1)),localaddr=127.0.0.1:$ub" --stay) ||
	abort "cannot start guest b"
for g in a b; do
	waitg "$work/$g.log" "RAMPART-GUEST-READY $g" 180 || abort "guest $g did not boot within 180 s"
	pass "guest $g booted and ready ($(since "$t") since start)"
done
run_step a local80 60 "A serves the token on port 80 over loopback" fetch 127.0.0.1 80

# ---------------------------------------------------------------------------- appliance
# boot_appliance CONFIG_IMAGE: start the service VM from its disk (no -kernel), with the
# config drive as a second disk; console on a unix socket (logged to $work/app.log).
boot_appliance() {
	stop "$app_pid" "appliance"
	rm -f "$work/app.sock"
	: >"$work/app.log"
	qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 -nodefaults -display none \
		-no-user-config -no-reboot \
		-drive "file=$work/rampart.qcow2,if=virtio,format=qcow2,snapshot=on" \
		-drive "file=$1,if=virtio,format=raw,readonly=on" \
		-netdev "user,id=m0,restrict=on,hostfwd=tcp:127.0.0.1:$metrics_port-:9100,hostfwd=tcp:127.0.0.1:$status_port-:9101" \
		-device virtio-net-pci,netdev=m0,mac=52:54:00:00:99:01,addr=0x3 \
		-netdev "socket,id=d0,udp=127.0.0.1:$ua,localaddr=127.0.0.1:$((ua + 1))" \
		-device virtio-net-pci,netdev=d0,mac=52:54:00:00:99:0a,addr=0x4 \
		-netdev "socket,id=d1,udp=127.0.0.1:$ub,localaddr=127.0.0.1:$((ub + 1))" \
		-device virtio-net-pci,netdev=d1,mac=52:54:00:00:99:0b,addr=0x5 \
		-chardev "socket,id=s0,path=$work/app.sock,server=on,wait=off,logfile=$work/app.log" \
		-serial chardev:s0 </dev/null >"$work/app.qemu" 2>&1 &
	app_pid=$!
	echo "$app_pid" >"$work/app.log.pid" # wait-guest.sh notices a QEMU that exited
	app_t0=$EPOCHREALTIME
}

# appliance_state WANT: wait for the state marker; PASS if it is WANT. Sets app_uptime.
appliance_state() {
	local got
	waitg "$work/app.log" "RAMPART-APPLIANCE-STATE " "$boot_timeout" ||
		abort "the appliance did not report a state within $boot_timeout s of QEMU start (see its console below)"
	got=$(tr -d '\r' <"$work/app.log" | awk '$1 == "RAMPART-APPLIANCE-STATE" { print $2; exit }')
	app_uptime=$(tr -d '\r' <"$work/app.log" | sed -n 's/^RAMPART-APPLIANCE-STATE .* uptime=//p' | head -n1)
	if [[ $got == "$1" ]]; then
		pass "appliance state $got ($(since "$app_t0") after QEMU start; appliance uptime ${app_uptime}s)"
	else
		fail "appliance state '$got', expected '$1': $(tr -d '\r' <"$work/app.log" | grep -m3 'RAMPART-APPLIANCE-ERROR' | tr '\n' ' ')"
		[[ $1 == forwarding ]] && finish
	fi
}

# fetch_url NAME PORT PATH: GET http://127.0.0.1:PORT/PATH (the management forwards) into
# $work/NAME.txt (10 s timeout, 3 tries: slirp's forward may lag the guest's listener).
fetch_url() {
	local i
	for i in 1 2 3; do
		python3 - "http://127.0.0.1:$2/$3" "$work/$1.txt" <<-'EOF' 2>"$work/$1.err" && return 0
			import sys, urllib.request
			with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
			    open(sys.argv[2], "wb").write(r.read())
		EOF
		sleep 2
	done
	echo "appliance.sh: GET :$2/$3: $(tail -n1 "$work/$1.err")" >&2
	return 1
}
# metric NAME SERIES: the value of SERIES (name{labels} as printed) in scrape NAME, or -1.
metric() { awk -v s="$2" '$1 == s { v = $2 } END { print (v == "" ? -1 : v) }' "$work/$1.txt" 2>/dev/null || echo -1; }
# rose BEFORE AFTER SERIES MIN WHAT: SERIES grew by at least MIN between two scrapes.
rose() {
	local b a
	b=$(metric "$1" "$3") a=$(metric "$2" "$3")
	if awk -v a="$a" -v b="$b" -v m="$4" 'BEGIN { exit !(b >= 0 && a - b >= m) }'; then
		pass "metrics: $3 $b -> $a: $5"
	else
		fail "metrics: $3 $b -> $a, expected +$4 or more: $5"
	fi
}

# console CMD TIMEOUT: run CMD in the appliance's serial-console shell; print its output,
# return its exit code (124: no answer within TIMEOUT s).
cat >"$work/console.py" <<-'EOF'
	import re, socket, sys, time
	sock, cmd, timeout, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(1)
	s.connect(sock)
	s.sendall(f"echo RAMPART-CMD-BEGIN-{n}; {cmd}; echo RAMPART-CMD-END-{n} rc=$?\n".encode())
	out, end = b"", time.time() + timeout
	while time.time() < end:
	    try:
	        out += s.recv(65536)
	    except socket.timeout:
	        pass
	    text = out.decode(errors="replace").replace("\r", "")
	    m = re.search(rf"^RAMPART-CMD-BEGIN-{n}\n(.*?)^RAMPART-CMD-END-{n} rc=(\d+)", text, re.S | re.M)
	    if m:
	        print(m.group(1), end="")
	        sys.exit(int(m.group(2)))
	sys.exit(124)
EOF
console() { python3 "$work/console.py" "$work/app.sock" "$1" "$2" "$RANDOM$RANDOM"; }

# ---------------------------------------------------------------------------- good config
echo "---- good config: the shipped example (a wire inside <-> outside, B -> A tcp/80 and icmp)"
"$repo/vm-image/mkconfig.sh" "$work/good.img" "$repo/vm-image/config/rampart.conf" "$repo/vm-image/config/policy.toml" ||
	abort "vm-image/mkconfig.sh failed"
boot_appliance "$work/good.img"
# B pings A from the moment QEMU starts: the first reply marks boot-to-forwarding.
send_step b reach reach 10.0.0.1 $((boot_timeout + 60))
appliance_state forwarding
step_result b reach $((boot_timeout + 90)) "B reaches A through the appliance (ping)" "$app_t0"
forwarding_s=$(since "$app_t0")
echo "boot-to-forwarding under TCG: $forwarding_s (QEMU start -> first ping reply through the appliance; the appliance reported forwarding at uptime ${app_uptime}s)"
if fetch_url status1 "$status_port" status && grep -qx 'state=forwarding' "$work/status1.txt"; then
	pass "status page (management channel): $(grep -E '^(state|error)=' "$work/status1.txt" | tr '\n' ' ')"
else
	fail "status page: $(head -c 300 "$work/status1.txt" 2>/dev/null)"
fi
fetch_url m1 "$metrics_port" metrics || fail "metrics: no answer on the management channel (127.0.0.1:$metrics_port)"
run_step b fetch80 90 "B fetches the token from A:80 (rule web)" fetch 10.0.0.1 80
run_step b silent81 60 "B -> A:81 is blocked (no rule: default drop; A listens on 81)" silent 10.0.0.1 81
run_step b ping 60 "B pings A 3 times (rule ping)" pings 10.0.0.1
if fetch_url m2 "$metrics_port" metrics; then
	rose m1 m2 'rampart_port_rx_packets_total{port="outside"}' 6 "B's traffic entered the appliance"
	rose m1 m2 'rampart_port_tx_packets_total{port="inside"}' 6 "and left it towards A"
	rose m1 m2 'rampart_rule_packets_total{rule="web",action="allow"}' 1 "rule web counted B's HTTP request"
	rose m1 m2 'rampart_drops_total{reason="policy_drop"}' 1 "the SYNs to A:81 met the default action"
else
	fail "metrics: no second scrape"
fi

echo "---- policy reload over the serial console: rule web moves from tcp/80 to tcp/81"
if out=$(console "sed -i 's/^ports = \"80\"/ports = \"81\"/' /etc/rampart/rampart.toml && grep -c '^ports = \"81\"' /etc/rampart/rampart.toml && rampartctl reload" 60); then
	pass "serial console: edited /etc/rampart/rampart.toml, rampartctl reload: $(echo "$out" | tr '\n' ' ')"
else
	fail "serial console: the edit or rampartctl reload failed (rc $?): $(echo "$out" | tr '\n' ' ')"
fi
run_step b silent80 60 "B -> A:80 is blocked after the reload" silent 10.0.0.1 80
run_step b fetch81 90 "B fetches the token from A:81 after the reload" fetch 10.0.0.1 81
if fetch_url m3 "$metrics_port" metrics; then
	rose m2 m3 'rampart_rule_packets_total{rule="web",action="allow"}' 1 "rule web (now tcp/81) counted B's request to A:81"
	rose m2 m3 'rampart_drops_total{reason="policy_drop"}' 1 "the SYNs to A:80 met the default action"
	g=$(metric m3 'rampart_policy_generation{state="applied"}')
	if [[ $g == 2 ]]; then pass "metrics: policy generation 2 applied"; else fail "metrics: applied policy generation $g, expected 2"; fi
else
	fail "metrics: no third scrape"
fi

# ---------------------------------------------------------------------------- bad config, closed
echo "---- malformed policy.toml, failure=closed (the default)"
mkdir -p "$work/bad"
cp "$repo/vm-image/config/policy.toml" "$work/bad/policy.toml"
printf '\n[[rules]]\nid = "oops"\nfrom = ["guest:outside"]\naction = "maybe"\n' >>"$work/bad/policy.toml"
bad_line=$(grep -n 'action = "maybe"' "$work/bad/policy.toml" | cut -d: -f1)
"$repo/vm-image/mkconfig.sh" "$work/bad.img" "$repo/vm-image/config/rampart.conf" "$work/bad/policy.toml" || abort "vm-image/mkconfig.sh failed"
boot_appliance "$work/bad.img"
appliance_state failed-closed
err=$(tr -d '\r' <"$work/app.log" | grep -m1 '^RAMPART-APPLIANCE-ERROR ')
if [[ $err == *"policy.toml:$bad_line:"* ]]; then pass "console: $err"; else fail "console: no error naming policy.toml line $bad_line: '${err:-none}'"; fi
if fetch_url bm "$metrics_port" metrics && [[ $(metric bm 'rampart_appliance_state{state="failed-closed"}') == 1 ]] &&
	grep -q '^rampart_appliance_config_error{error=".*policy.toml.*"} 1$' "$work/bm.txt"; then
	pass "metrics port: $(grep -E '^rampart_appliance_(state\{state="failed-closed"\}|config_error)' "$work/bm.txt" | cut -c1-200 | tr '\n' ' ')"
else
	fail "metrics port does not report failed-closed with the error: $(head -c 400 "$work/bm.txt" 2>/dev/null)"
fi
if fetch_url bs "$status_port" status && grep -qx 'state=failed-closed' "$work/bs.txt" && grep -q '^error=.*policy.toml' "$work/bs.txt"; then
	pass "status page: $(grep -E '^(state|error)=' "$work/bs.txt" | cut -c1-200 | tr '\n' ' ')"
else
	fail "status page does not report failed-closed with the error: $(head -c 300 "$work/bs.txt" 2>/dev/null)"
fi
run_step b closed_ping 60 "B cannot ping A (nothing is forwarded)" no_pings 10.0.0.1
run_step b closed80 60 "B -> A:80 times out (nothing is forwarded)" silent 10.0.0.1 80
n=$(tr -d '\r' <"$work/app.log" | grep -c 'SYSLINUX')
if alive "$app_pid" && [[ $n == 1 ]]; then
	pass "the appliance stayed up without rebooting (one boot on its console, QEMU -no-reboot still running)"
else
	fail "the appliance rebooted or exited (boots on its console: $n, QEMU alive: $(alive "$app_pid" && echo yes || echo no))"
fi

# ---------------------------------------------------------------------------- bad config, open
echo "---- no policy.toml, failure=open in rampart.conf"
mkdir -p "$work/open"
sed 's/^failure=closed/failure=open/' "$repo/vm-image/config/rampart.conf" >"$work/open/rampart.conf"
grep -q '^failure=open' "$work/open/rampart.conf" || abort "cannot set failure=open in a copy of vm-image/config/rampart.conf"
"$repo/vm-image/mkconfig.sh" "$work/open.img" "$work/open/rampart.conf" || abort "vm-image/mkconfig.sh failed"
boot_appliance "$work/open.img"
appliance_state failed-open
if fetch_url os "$status_port" status && grep -qx 'state=failed-open' "$work/os.txt" && grep -q '^error=.*policy.toml missing' "$work/os.txt"; then
	pass "status page: $(grep -E '^(state|error)=' "$work/os.txt" | tr '\n' ' ')"
else
	fail "status page does not report failed-open with the error: $(head -c 300 "$work/os.txt" 2>/dev/null)"
fi
run_step b open81 120 "B fetches the token from A:81 (failure=open forwards everything)" fetch 10.0.0.1 81

# ---------------------------------------------------------------------------- the end
echo "image size: $(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }') qcow2; boot-to-forwarding under TCG: $forwarding_s"
finish
