# Shared by the guests-tier scripts (sourced). Expects from the caller: $here, $gdir, $repo,
# $bin, $dp_mem, $guest_mem (MB), and the functions pass, missing, abort and since.

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
