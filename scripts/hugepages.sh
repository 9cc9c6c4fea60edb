#!/bin/bash
# Reserves 2 MB hugepages and mounts hugetlbfs, idempotently.
# HUGEPAGES (default 1536 = 3 GiB) is a minimum: more already reserved is kept.
set -euo pipefail
want=${HUGEPAGES:-1536}
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
have=$(cat "$nr")
if ((have < want)); then
	echo "$want" >"$nr" || { echo "hugepages: cannot write $nr (run as root)" >&2; exit 1; }
	have=$(cat "$nr")
	((have >= want)) || echo "hugepages: asked for $want, the kernel gave $have (memory fragmented?)" >&2
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
echo "hugepages: $(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages) of $have free on /dev/hugepages"
