#!/bin/bash
# Start one test guest in the background; print QEMU's pid and write it to the pidfile.
# Usage:
#   run-guest.sh --name NAME --netdev SPEC --mac MAC --ip ADDR/PREFIX --log FILE
#                [--script FILE] [--stay] [--mem MB] [--pidfile FILE] [--guest-dir DIR]
#                [--extra 'QEMU ARGS'] [--append 'KERNEL ARGS'] [-- QEMU ARGS...]
#   SPEC is a QEMU -netdev value without id (the id is n0), e.g.
#     socket,udp=127.0.0.1:4001,localaddr=127.0.0.1:4000   or   vhost-user,chardev=c0
#   --script  shell script sourced by the guest's init (see init.sh: rp_check, markers);
#             without it the guest just brings eth0 up and idles.
#   --stay    keep the guest up after the script (servers); default: it powers off.
#   --extra   word-split extra QEMU args (e.g. '-chardev socket,id=c0,path=/tmp/x.sock');
#             args after -- are passed verbatim (for values with spaces).
#   --append  extra kernel command line words (e.g. 'ipv6.disable=1').
#   pidfile defaults to LOG.pid (wait-guest.sh uses it to notice a dead guest).
# Console (kernel + init markers) and QEMU's own errors both go to LOG.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name='' netdev='' mac='' ip='' script='' log='' mem=256 stay=0 pidfile='' extra='' append=''
gdir=$here/../../target/guest
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 2; }
while (($#)); do
	case $1 in
	--name) name=$2; shift ;;
	--netdev) netdev=$2; shift ;;
	--mac) mac=$2; shift ;;
	--ip) ip=$2; shift ;;
	--script) script=$2; shift ;;
	--log) log=$2; shift ;;
	--mem) mem=$2; shift ;;
	--stay) stay=1 ;;
	--pidfile) pidfile=$2; shift ;;
	--guest-dir) gdir=$2; shift ;;
	--extra) extra=$2; shift ;;
	--append) append=$2; shift ;;
	--) shift; break ;;
	*) echo "run-guest.sh: unknown argument $1" >&2; usage ;;
	esac
	shift
done
[[ -n $name && -n $netdev && -n $mac && -n $ip && -n $log ]] || usage
pidfile=${pidfile:-$log.pid}
[[ -z $script || -r $script ]] || { echo "run-guest.sh: cannot read script $script" >&2; exit 1; }
for f in vmlinuz initramfs.cpio.gz; do
	[[ -r $gdir/$f ]] || { echo "run-guest.sh: $gdir/$f missing: run tests/guests/build.sh" >&2; exit 1; }
done

# vhost-user needs guest RAM in shared hugepages, so check them here with a precise fix.
need=$(((mem + 1) / 2))
hp=/sys/kernel/mm/hugepages/hugepages-2048kB
free=$(cat "$hp/free_hugepages" 2>/dev/null || echo 0)
total=$(cat "$hp/nr_hugepages" 2>/dev/null || echo 0)
fstype=$(awk '$2 == "/dev/hugepages" { t = $3; o = $4 } END { print t (o ~ /pagesize=1G/ ? "-1G" : "") }' /proc/mounts)
if [[ $fstype != hugetlbfs ]] || ((free < need)); then
	cat >&2 <<-EOF
		run-guest.sh: guest '$name' needs $need free 2 MB hugepages on a hugetlbfs (2M pages)
		mounted at /dev/hugepages; found: mount='${fstype:-none}', free=$free of $total. Fix (as root):
		  echo $((total + need - free > 1024 ? total + need - free : 1024)) > $hp/nr_hugepages
		  mkdir -p /dev/hugepages; mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
	EOF
	exit 1
fi

args=(-accel tcg -nodefaults -display none -no-user-config -no-reboot -m "$mem"
	-object "memory-backend-file,id=mem,size=${mem}M,mem-path=/dev/hugepages,share=on"
	-numa node,memdev=mem
	-kernel "$gdir/vmlinuz" -initrd "$gdir/initramfs.cpio.gz"
	# panic=-1 + -no-reboot: a guest that panics exits instead of looping.
	-append "console=ttyS0 quiet panic=-1 rp.name=$name rp.ip=$ip rp.stay=$stay${append:+ $append}"
	-chardev "file,id=ser0,path=$log,append=on" -serial chardev:ser0
	-netdev "${netdev%%,*},id=n0${netdev#"${netdev%%,*}"}"
	# vectors=0: QEMU 7.2 under TCG crashes setting up MSI-X for vhost-user.
	-device "virtio-net-pci,netdev=n0,mac=$mac,vectors=0")
[[ -z $script ]] || args+=(-fw_cfg "name=opt/rampart/script,file=$script")
# shellcheck disable=SC2206 # --extra is word-split on purpose
[[ -z $extra ]] || args+=($extra)
args+=("$@")

: >"$log"
qemu-system-x86_64 "${args[@]}" </dev/null >>"$log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"
echo "$pid"
