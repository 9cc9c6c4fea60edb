#!/bin/sh
# /init of the Rampart test guest (busybox ash, PID 1). Built into the initramfs by build.sh.
#
# Kernel command line (set by run-guest.sh):
#   rp.name=NAME      used in the console markers
#   rp.ip=ADDR/PREFIX address for eth0 (absent: eth0 stays unconfigured)
#   rp.stay=1         keep running after the script (servers); default: power off
# The test script arrives through QEMU fw_cfg as opt/rampart/script (no script: idle, stays up).
#
# Console protocol, one marker per line on ttyS0 (the host greps for these):
#   RAMPART-GUEST-BEGIN <name> uptime=<s>   network is up, script starts
#   RAMPART-GUEST-RESULT <name>/<step> <rc> from rp_check inside the script
#   RAMPART-GUEST-RESULT <name> <rc>        the script finished with <rc>
#   RAMPART-GUEST-IDLE <name>               staying up (rp.stay=1 or no script)
#   RAMPART-GUEST-ERROR <name> <why>        init failed; the guest powers off
#   RAMPART-GUEST-POWEROFF <name>

export PATH=/bin
mount -t devtmpfs dev /dev
# The kernel may have started us without a console (no /dev/console before devtmpfs).
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
# Keep late kernel messages from splitting our marker lines.
echo 1 >/proc/sys/kernel/printk

name=guest ip='' stay=0
for w in $(cat /proc/cmdline); do
	case $w in
	rp.name=*) name=${w#rp.name=} ;;
	rp.ip=*) ip=${w#rp.ip=} ;;
	rp.stay=*) stay=${w#rp.stay=} ;;
	esac
done

marker() { printf '\nRAMPART-GUEST-%s\n' "$*"; }
die() {
	marker "ERROR $name $*"
	marker "POWEROFF $name"
	poweroff -f
}

# rp_check STEP CMD...: run CMD, report its exit code as a RESULT line, return it.
# Scripts use it for each assertion so the host can check steps one by one.
rp_check() {
	_step=$1
	shift
	"$@"
	_rc=$?
	marker "RESULT $name/$_step $_rc"
	return $_rc
}

# Order matters: busybox insmod does not resolve dependencies. Built-in ones are absent.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
	failover net_failover virtio_net qemu_fw_cfg; do
	[ -e "/lib/modules/$m.ko" ] || continue
	insmod "/lib/modules/$m.ko" || die "insmod $m failed"
done

ip link set lo up
if [ -n "$ip" ]; then
	# virtio_net probes asynchronously on some kernels: give eth0 a moment to appear.
	i=0
	while ! ip link show eth0 >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt 50 ] && die "no eth0"
		sleep 0.1
	done
	ip addr add "$ip" dev eth0 || die "bad rp.ip=$ip"
	ip link set eth0 up || die "eth0 up failed"
fi

fw=/sys/firmware/qemu_fw_cfg/by_name/opt/rampart/script/raw
if [ -r "$fw" ]; then
	cat "$fw" >/tmp/script || die "cannot read $fw"
	marker "BEGIN $name uptime=$(cut -d' ' -f1 /proc/uptime)"
	# A subshell: the script sees rp_check and $name, and its `exit` ends only itself.
	(cd /tmp && . /tmp/script)
	marker "RESULT $name $?"
else
	stay=1
fi

if [ "$stay" = 1 ]; then
	marker "IDLE $name"
	while :; do sleep 3600; done
fi
marker "POWEROFF $name"
poweroff -f
