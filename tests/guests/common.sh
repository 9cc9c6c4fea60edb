# Shared by the guests-tier scripts (sourced). Expects from the caller: $here,
# $dp_mem, $guest_mem (MB), $suite (the summary's name), $t0, and show_logs.

# Paths every script uses (the caller sets $here, its own directory, before sourcing).
repo=$(cd "$here/../.." && pwd)
gdir=$repo/target/guest
bin=$repo/target/release

# check_prerequisites: root, the guest image, the rampart binaries and enough free hugepages
# for the dataplane and two guests; a missing one fails under CI=true and skips elsewhere.
check_prerequisites() {
	[[ $(id -u) == 0 ]] || missing "needs root (hugepages, QEMU guest RAM on hugetlbfs)"
	command -v python3 >/dev/null || missing "python3 not found (scripts/deps.sh installs it)"

	t=$EPOCHREALTIME
	if ! blog=$("$here/build.sh" "$gdir" 2>&1); then
		echo "$blog" | tail -n 20 | sed 's/^/  | /'
		missing "cannot build the test guest with tests/guests/build.sh (QEMU, busybox, kernel from Debian)"
	fi
	command -v qemu-system-x86_64 >/dev/null || missing "qemu-system-x86_64 not found"
	pass "guest image ready ($(since "$t"))"

	if [[ ${RAMPART_SKIP_BUILD:-} != 1 ]]; then
		t=$EPOCHREALTIME
		if ! blog=$(cd "$repo" && cargo build --release -p rampart-dataplane -p rampart-control 2>&1); then
			echo "$blog" | tail -n 30 | sed 's/^/  | /'
			abort "cargo build --release -p rampart-dataplane -p rampart-control"
		fi
		pass "cargo build ($(since "$t"))"
	fi
	for b in rampart-dataplane rampartctl; do
		[[ -x $bin/$b ]] || abort "$bin/$b missing (cargo build --release)"
	done

	# Hugepages for the dataplane (memory_mb) and both guests, on top of what others use now.
	hp=/sys/kernel/mm/hugepages/hugepages-2048kB
	need=$((dp_mem / 2 + 2 * ((guest_mem + 1) / 2) + 16))
	mkdir -p /dev/hugepages 2>/dev/null
	mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null ||
		missing "cannot mount hugetlbfs on /dev/hugepages"
	fstype=$(awk '$2 == "/dev/hugepages" { t = $3; o = $4 } END { print t (o ~ /pagesize=1G/ ? "-1G" : "") }' /proc/mounts)
	[[ $fstype == hugetlbfs ]] || missing "/dev/hugepages is '$fstype', expected a 2 MB hugetlbfs"
	free=$(cat "$hp/free_hugepages" 2>/dev/null || echo 0)
	total=$(cat "$hp/nr_hugepages" 2>/dev/null || echo 0)
	if ((free < need)); then
		echo $((total + need - free)) >"$hp/nr_hugepages" 2>/dev/null
		free=$(cat "$hp/free_hugepages" 2>/dev/null || echo 0)
	fi
	((free >= need)) || missing "need $need free 2 MB hugepages, have $free of $(cat "$hp/nr_hugepages" 2>/dev/null)"
	pass "hugepages: $free free, $need needed"

}

# The EXIT trap `cleanup` each script defines starts with stop_waiter and ends with
# remove_work; install_traps sets it up, and makes INT/TERM a failure with a summary.
stop_waiter() { [[ -z $waiter ]] || { kill "$waiter" 2>/dev/null; wait "$waiter" 2>/dev/null; }; }
remove_work() {
	[[ -n $work && -d $work ]] || return 0
	if [[ ${KEEP_LOGS:-} == 1 ]]; then echo "${0##*/}: logs kept in $work"; else rm -rf "$work"; fi
}
install_traps() {
	trap cleanup EXIT
	trap 'fail "interrupted by a signal"; summary; exit 130' INT TERM
}

# waitg ARGS: wait-guest.sh in the background, so that a signal interrupts the wait at
# once rather than after it (bash runs traps only between foreground commands).
waitg() {
	"$here/wait-guest.sh" "$@" &
	waiter=$!
	wait "$waiter"
	local rc=$?
	waiter=''
	return $rc
}

# ------------------------------------------------------------------------ shared helpers
# PASS/FAIL lines, counted in $passed and $failed; the summary names $suite and uses $t0.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
summary() {
	((${summarised:-0})) && return 0
	summarised=1
	echo "${0##*/}: done in $(since "$t0")"
	echo "$suite: $passed passed, $failed failed"
}
# finish: the summary line; exit 1 if anything failed (the caller's EXIT trap cleans up).
# The caller defines show_logs (what to print when something failed).
finish() {
	((failed == 0)) || show_logs
	summary
	((failed == 0)) && exit 0 || exit 1
}
# abort MSG: a failure after which the remaining checks cannot run.
abort() { fail "$*"; finish; }
# missing MSG: a prerequisite is missing: fail under CI=true, skip elsewhere.
missing() {
	if [[ ${CI:-} == true ]]; then
		fail "prerequisite: $* (CI=true: a missing prerequisite is a failure)"
		finish
	fi
	echo "SKIP $suite tier: $* (set CI=true to make this a failure)"
	echo "$suite: skipped ($*)"
	exit 0
}

# alive PID: a process we started is alive (a zombie is not).
alive() {
	[[ -n $1 && -r /proc/$1/stat ]] || return 1
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[[ -n $st && $st != Z && $st != X ]]
}

# stop PID NAME: SIGTERM, then SIGKILL after 10 s. Only pids the calling script started.
stop() {
	local pid=$1 i
	alive "$pid" || { [[ -z $pid ]] || wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do alive "$pid" || break; sleep 0.2; done
	if alive "$pid"; then
		echo "${0##*/}: $2 (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null
		for i in $(seq 25); do alive "$pid" || break; sleep 0.2; done
	fi
	wait "$pid" 2>/dev/null # reaps our own children (QEMU started by run-guest.sh too)
	return 0
}

# Host-driven guests (serve.sh): the guest's second serial port is the QEMU pipe chardev
# $work/GUEST-ctl; its console log is $work/GUEST.log.
# send_step GUEST STEP FUNCTION [ARGS...]: have GUEST run `rp_check STEP FUNCTION ARGS`.
send_step() {
	local g=$1 step=$2
	shift 2
	timeout 10 bash -c 'echo "$1" >"$2"' _ "$step $*" "$work/$g-ctl.in" || abort "cannot write to guest $g's control port"
}
# step_result GUEST STEP TIMEOUT WHAT [T0]: wait for the step's RESULT; PASS when its rc is 0
# (with the step's last RAMPART-NOTE), FAIL otherwise; a missing result ends the run.
step_result() {
	local g=$1 step=$2 timeout=$3 what=$4 t=${5:-$EPOCHREALTIME} log=$work/$1.log rc note
	waitg "$log" "RAMPART-GUEST-RESULT $g/$step " "$timeout" || abort "$g/$step: $what (no result within $timeout s)"
	rc=$(tr -d '\r' <"$log" | awk -v k="$g/$step" '$1 == "RAMPART-GUEST-RESULT" && $2 == k { print $3; exit }')
	note=$(tr -d '\r' <"$log" | awk -v k="$g/$step" '$1 == "RAMPART-NOTE" && $2 == k { $1 = $2 = ""; n = substr($0, 3) } END { print n }')
	if [[ $rc == 0 ]]; then
		pass "$g/$step: $what ($(since "$t"))${note:+: $note}"
	else
		fail "$g/$step: $what (rc=$rc)${note:+: $note}"
	fi
	[[ $rc == 0 ]]
}
# start_served_guest GUEST IP NETDEV [RUN-GUEST ARGS...]: boot GUEST (a or b; MAC
# 52:54:00:12:00:0GUEST, IP/24, no IPv6) with the script $work/GUEST.sh (which ends with
# serve.sh) and its control pipe; prints QEMU's pid.
start_served_guest() {
	local g=$1 ip=$2 netdev=$3 extra=''
	shift 3
	[[ ${1:-} == --extra ]] && { extra="$2 "; shift 2; }
	mkfifo "$work/$g-ctl.in" "$work/$g-ctl.out"
	"$here/run-guest.sh" --name "$g" --ip "$ip/24" --mac "52:54:00:12:00:0$g" --mem "$guest_mem" \
		--netdev "$netdev" --append ipv6.disable=1 --extra "$extra-chardev pipe,id=ctl,path=$work/$g-ctl -serial chardev:ctl" \
		--script "$work/$g.sh" --log "$work/$g.log" --guest-dir "$gdir" "$@"
}
# run_step GUEST STEP TIMEOUT WHAT FUNCTION [ARGS...]: send_step, then step_result.
run_step() {
	local g=$1 step=$2 timeout=$3 what=$4 t=$EPOCHREALTIME
	shift 4
	send_step "$g" "$step" "$@"
	step_result "$g" "$step" "$timeout" "$what" "$t"
}

# show_rampart_logs: for show_logs after a failure: both guests' consoles, the dataplane's
# and control process's logs, and `rampartctl stats` (config in $work/rampart.toml).
show_rampart_logs() {
	[[ -n $work && -d $work ]] || return 0
	local f
	for f in a b; do
		[[ -f $work/$f.log ]] || continue
		echo "---- guest $f console (last 40 lines) ----"
		tr -d '\r' <"$work/$f.log" | grep -v '^$' | tail -n 40 | sed 's/^/  | /'
	done
	for f in dataplane control; do
		[[ -f $work/$f.log ]] || continue
		echo "---- $f log (last 30 lines) ----"
		tail -n 30 "$work/$f.log" | sed 's/^/  | /'
	done
	if [[ -S $work/control.sock ]]; then
		echo "---- rampartctl stats ----"
		"$bin/rampartctl" --config "$work/rampart.toml" stats 2>&1 | sed 's/^/  | /'
	fi
}

# cfg_head DEFAULT_ACTION: the start of a guests-tier config: the dataplane on cores 0 and 1
# ($dp_mem, $prefix, $shm), the control process in $work with metrics on 127.0.0.1:$port,
# the policy's default action and the segment "lan"; the caller appends ports and rules.
cfg_head() {
	cat <<-EOF
		[dataplane]
		main_core = 0
		worker_cores = [1]
		memory_mb = $dp_mem
		file_prefix = "$prefix"
		hugepages = true
		shm = "$shm"
		idle_sleep_us = 50

		[control]
		socket = "$work/control.sock"
		metrics = "127.0.0.1:$port"
		event_log = "$work/log/eve.json"
		event_key = "$work/eventlog.key"

		[policy]
		default_action = "$1"

		[[segments]]
		name = "lan"
	EOF
}

# start_rampart: starts the dataplane and `rampartctl run` on $cfg (logs in $work; pids in
# $dp_pid and $ctl_pid, which the caller's cleanup stops) and waits until both vhost-user
# sockets exist and policy generation 1 is applied (the caller's `applied`), or aborts.
start_rampart() {
	local t=$EPOCHREALTIME ready=0
	"$bin/rampart-dataplane" --config "$cfg" >"$work/dataplane.log" 2>&1 &
	dp_pid=$!
	"$bin/rampartctl" --config "$cfg" run >"$work/control.log" 2>&1 &
	ctl_pid=$!
	for _ in $(seq 300); do # 60 s
		alive "$dp_pid" || abort "rampart-dataplane exited (see its log below)"
		alive "$ctl_pid" || abort "rampartctl run exited (see its log below)"
		if [[ -S $work/vm-a.sock && -S $work/vm-b.sock ]] && [[ $(applied) == 1 ]]; then
			ready=1
			break
		fi
		sleep 0.2
	done
	((ready)) || abort "rampart not ready within 60 s (vhost-user sockets + applied_generation 1)"
	pass "rampart up: dataplane pid $dp_pid, control pid $ctl_pid, policy generation 1 applied ($(since "$t"))"
}

# ctl ARGS: rampartctl on this run's config ($cfg).
ctl() { "$bin/rampartctl" --config "$cfg" "$@"; }

# json FILE EXPR: evaluate a Python expression over the JSON document `d` in FILE.
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
# applied: the policy generation the dataplane runs, per `rampartctl status --json`.
# (Output goes to a file first: `ctl | grep -q` fails under pipefail when grep exits early.)
applied() { ctl status --json >"$work/status.json" 2>&1 && json "$work/status.json" "d['status']['applied_generation']"; }
