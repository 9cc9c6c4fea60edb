#!/bin/sh
# /init of the Rampart service VM (busybox ash, PID 1), built into the image by build.sh.
#
# At every boot (the appliance is stateless: its root lives in RAM):
#   1. loads the kernel modules, reserves hugepages, mounts hugetlbfs;
#   2. reads the first-boot configuration: rampart.conf and policy.toml from the root of a
#      config drive (any virtio disk with a FAT file system holding rampart.conf or
#      policy.toml; vm-image/mkconfig.sh makes one), then `rampart.KEY=VALUE` words of the
#      kernel command line, which win (keys: vm-image/config/rampart.conf);
#   3. sorts the virtio-net NICs: the management NIC (`mgmt` = its MAC; default the first
#      NIC in PCI order) keeps the kernel driver and gets `mgmt_address` (dhcp or ADDR/LEN);
#      every other NIC is a data NIC, named dataN in PCI order and by `nic.NAME=MAC`, and is
#      handed to DPDK: driver_override = uio_pci_generic, then drivers_probe;
#   4. renders /etc/rampart/rampart.toml: [dataplane] and [control] from rampart.conf, then
#      policy.toml with each `"nic:NAME"` replaced by that NIC's PCI address; validates it
#      with `rampartctl check`;
#   5. starts rampart-dataplane and `rampartctl run` (restarted with back-off if they exit),
#      waits until the policy is applied, prints the state; Prometheus metrics on
#      MGMT_IP:metrics_port (the control process), a status page on MGMT_IP:status_port;
#   6. runs a root shell on the serial console (rampartctl is on PATH; edit
#      /etc/rampart/rampart.toml and run `rampartctl reload` to change the policy).
# A missing or bad configuration never reboots and never loops: the appliance stays up
# fail-closed (no dataplane: nothing is forwarded) unless `failure=open`, which wires the two
# data NICs together and forwards everything. Either way the error is printed on the console
# and served on the management NIC: status page, and in fail-closed mode the metrics port
# (rampart_appliance_state, rampart_appliance_config_error).
#
# Console markers (one per line; tests grep for them):
#   RAMPART-APPLIANCE-ERROR <message>
#   RAMPART-APPLIANCE-STATE <forwarding|failed-closed|failed-open> uptime=<s>
#   RAMPART-APPLIANCE-NOTE <message>

export PATH=/usr/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=755 run /run
mkdir -p /dev/shm /dev/hugepages /dev/pts /run/rampart/www /var/log/rampart /mnt/config
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t devpts devpts /dev/pts
echo 1 >/proc/sys/kernel/printk # late kernel messages must not split marker lines
hostname rampart

uptime_s() { cut -d' ' -f1 /proc/uptime; }
marker() { printf '\nRAMPART-APPLIANCE-%s\n' "$*"; }
note() { marker "NOTE $*"; }
errors=''
# config_error MSG: remember a configuration error (the first one decides the state).
config_error() {
	marker "ERROR $*"
	errors="${errors:+$errors; }$*"
}

# ---------------------------------------------------------------------------- modules
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
	failover net_failover virtio_net virtio_blk uio uio_pci_generic fat vfat \
	nls_cp437 nls_ascii nls_utf8; do
	[ -e "/lib/modules/$m.ko" ] || continue
	insmod "/lib/modules/$m.ko" || note "insmod $m failed"
done
ip link set lo up

# ---------------------------------------------------------------------------- configuration
# Defaults; rampart.conf overrides them, the kernel command line overrides both.
failure=closed mgmt='' mgmt_address=dhcp mgmt_gateway='' metrics_port=9100 status_port=9101
main_core=0 worker_cores='' memory_mb=256 names=''

# set_key KEY VALUE WHERE: one setting, validated; a bad one is a configuration error.
set_key() {
	_k=$1 _v=$2 _w=$3
	case $_k in
	failure) case $_v in open | closed) failure=$_v ;; *) config_error "$_w: failure=$_v: expected open or closed" ;; esac ;;
	mgmt) is_mac "$_v" && mgmt=$(lower "$_v") || config_error "$_w: mgmt=$_v: expected a MAC address (52:54:00:12:34:56)" ;;
	mgmt_address) case $_v in dhcp | */*) mgmt_address=$_v ;; *) config_error "$_w: mgmt_address=$_v: expected dhcp or ADDRESS/PREFIX" ;; esac ;;
	mgmt_gateway) mgmt_gateway=$_v ;;
	metrics_port | status_port | main_core | memory_mb)
		case $_v in '' | *[!0-9]*) config_error "$_w: $_k=$_v: expected a number" ;; *) eval "$_k=\$_v" ;; esac ;;
	worker_cores)
		case $_v in '' | *[!0-9,]*) config_error "$_w: worker_cores=$_v: expected CPU numbers separated by commas" ;; *) worker_cores=$_v ;; esac ;;
	nic.*)
		_n=${_k#nic.}
		case $_n in '' | *[!A-Za-z0-9_-]*) config_error "$_w: $_k: a NIC name is letters, digits, _ and -" ; return ;; esac
		is_mac "$_v" && names="$names $_n=$(lower "$_v")" || config_error "$_w: $_k=$_v: expected a MAC address" ;;
	*) config_error "$_w: unknown setting '$_k' (known: failure mgmt mgmt_address mgmt_gateway metrics_port status_port main_core worker_cores memory_mb nic.NAME)" ;;
	esac
}
is_mac() { echo "$1" | grep -qE '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$'; }
lower() { echo "$1" | tr 'A-F' 'a-f'; }

# The config drive: the first virtio disk (whole or partition 1) with a FAT file system
# holding rampart.conf or policy.toml. Copied to /etc/rampart/firstboot/, then unmounted.
src=''
for dev in /dev/vd[a-z] /dev/vd[a-z]1; do
	[ -b "$dev" ] || continue
	mount -t vfat -o ro "$dev" /mnt/config 2>/dev/null || continue
	if [ -e /mnt/config/rampart.conf ] || [ -e /mnt/config/policy.toml ]; then
		mkdir -p /etc/rampart/firstboot
		cp /mnt/config/rampart.conf /mnt/config/policy.toml /etc/rampart/firstboot/ 2>/dev/null
		src=$dev
	fi
	umount /mnt/config
	[ -n "$src" ] && break
done
fb=/etc/rampart/firstboot
if [ -n "$src" ]; then
	note "config drive $src: $(ls $fb 2>/dev/null | tr '\n' ' ')"
else
	config_error "no config drive: attach a FAT disk with rampart.conf and policy.toml (vm-image/mkconfig.sh)"
fi
if [ -f $fb/rampart.conf ]; then
	n=0
	# Lines: KEY=VALUE, blanks and # comments; spaces around = allowed.
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=$(echo "$line" | sed 's/#.*//; s/^[[:space:]]*//; s/[[:space:]]*$//')
		[ -n "$line" ] || continue
		case $line in
		*=*) set_key "$(echo "${line%%=*}" | sed 's/[[:space:]]*$//')" "$(echo "${line#*=}" | sed 's/^[[:space:]]*//')" "rampart.conf line $n" ;;
		*) config_error "rampart.conf line $n: '$line' is not KEY=VALUE" ;;
		esac
	done <$fb/rampart.conf
elif [ -n "$src" ]; then
	note "no rampart.conf on the config drive: defaults (management NIC = first NIC, DHCP)"
fi
for w in $(cat /proc/cmdline); do
	case $w in rampart.*=*) w=${w#rampart.} && set_key "${w%%=*}" "${w#*=}" "kernel command line" ;; esac
done
[ -n "$worker_cores" ] || { [ "$(nproc)" -ge 2 ] && worker_cores=1 || worker_cores=0; }

# ---------------------------------------------------------------------------- NICs
# All virtio-net PCI functions (legacy 1af4:1000, modern 1af4:1041), in PCI order.
nics=''
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] || continue
	case $(cat "$d/device") in 0x1000 | 0x1041) nics="$nics ${d##*/}" ;; esac
done
# nic_if PCI / nic_mac PCI: the kernel interface and MAC of a NIC still on virtio_net.
nic_if() { ls "/sys/bus/pci/devices/$1"/virtio*/net 2>/dev/null | head -n1; }
nic_mac() { _i=$(nic_if "$1"); [ -n "$_i" ] && cat "/sys/class/net/$_i/address"; }
mgmt_pci='' data=''
for p in $nics; do
	if [ -z "$mgmt_pci" ] && { [ -z "$mgmt" ] || [ "$(nic_mac "$p")" = "$mgmt" ]; }; then
		mgmt_pci=$p
	else
		data="$data $p"
	fi
done
# Without a management NIC no NIC can be trusted to be a data NIC (not even for failure=open).
[ -n "$mgmt_pci" ] || data=''
[ -n "$mgmt_pci" ] || config_error "no management NIC${mgmt:+ with MAC $mgmt} among the virtio-net NICs:$(for p in $nics; do printf ' %s=%s' "$p" "$(nic_mac "$p")"; done)"
# nic_table: "NAME PCI MAC" lines: dataN for every data NIC, plus the rampart.conf names.
i=0
: >/run/rampart/nics
for p in $data; do
	echo "data$i $p $(nic_mac "$p")" >>/run/rampart/nics
	i=$((i + 1))
done
for nm in $names; do
	p=$(awk -v m="${nm#*=}" '$3 == m { print $2; exit }' /run/rampart/nics)
	if [ -n "$p" ]; then echo "${nm%%=*} $p ${nm#*=}" >>/run/rampart/nics; else config_error "nic.${nm%%=*}=${nm#*=}: no data NIC has this MAC (data NICs: $(awk '/^data/ { printf "%s=%s ", $1, $3 }' /run/rampart/nics))"; fi
done

# ---------------------------------------------------------------------------- management
mgmt_if='' mgmt_ip=''
if [ -n "$mgmt_pci" ]; then
	mgmt_if=$(nic_if "$mgmt_pci")
	ip link set "$mgmt_if" up
	if [ "$mgmt_address" = dhcp ]; then
		cat >/run/rampart/udhcpc.sh <<-'EOF'
			#!/bin/sh
			# busybox udhcpc hook: apply the lease to the management interface.
			case $1 in
			bound | renew)
				ip -4 addr flush dev "$interface"
				ip addr add "$ip/${mask:-24}" dev "$interface"
				for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
			deconfig) ip -4 addr flush dev "$interface" ;;
			esac
		EOF
		chmod +x /run/rampart/udhcpc.sh
		# Stays in the background for renewals once it has a lease (or after 10 tries).
		udhcpc -i "$mgmt_if" -t 10 -T 1 -b -S -s /run/rampart/udhcpc.sh >/dev/null 2>&1
	else
		ip addr add "$mgmt_address" dev "$mgmt_if" || config_error "mgmt_address=$mgmt_address: ip addr add failed"
		[ -z "$mgmt_gateway" ] || ip route add default via "$mgmt_gateway" || config_error "mgmt_gateway=$mgmt_gateway: ip route add failed"
	fi
	mgmt_ip=$(ip -4 -o addr show dev "$mgmt_if" | awk '{ sub("/.*", "", $4); print $4; exit }')
	[ -n "$mgmt_ip" ] || note "management NIC $mgmt_if has no IPv4 address yet; services listen on all addresses"
fi
listen=${mgmt_ip:-0.0.0.0}

# ---------------------------------------------------------------------------- status page
state=starting
# publish STATE: the status page and, when the control process does not serve the metrics
# port (fail-closed), Prometheus metrics that say so.
publish() {
	state=$1
	www=/run/rampart/www
	{
		echo "state=$state"
		echo "error=${errors:-none}"
		echo "failure=$failure"
		echo "uptime=$(uptime_s)"
		echo "management=${mgmt_if:-none} ${mgmt_ip:-}"
		sed 's/^/nic=/' /run/rampart/nics
	} >$www/status.new && mv $www/status.new $www/status
	esc=$(printf '%s' "${errors:-none}" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n' ' ')
	{
		echo "# HELP rampart_appliance_state The service VM's state (the current one is 1)."
		echo "# TYPE rampart_appliance_state gauge"
		for s in starting forwarding failed-closed failed-open; do
			echo "rampart_appliance_state{state=\"$s\"} $([ "$s" = "$state" ] && echo 1 || echo 0)"
		done
		echo "# HELP rampart_appliance_config_error 1 when the first-boot configuration is missing or bad; the label says why."
		echo "# TYPE rampart_appliance_config_error gauge"
		echo "rampart_appliance_config_error{error=\"$esc\"} $([ -n "$errors" ] && echo 1 || echo 0)"
	} >$www/metrics.new && mv $www/metrics.new $www/metrics
	cp $www/status $www/index.html
	echo "Rampart service VM: $state${errors:+ -- $errors}" >/run/rampart/motd
	marker "STATE $state uptime=$(uptime_s)"
}
httpd -p "$listen:$status_port" -h /run/rampart/www || note "status page: httpd on $listen:$status_port failed"

# ---------------------------------------------------------------------------- rendering
cfg=/etc/rampart/rampart.toml
# generated DEVICES: the [dataplane] and [control] sections. They go after the policy, so
# that line numbers in errors about the rendered file are those of policy.toml.
generated() {
	cat <<-EOF

		# ---- Written at boot by the service VM's /init from the config drive's policy.toml
		# (above; edit it here and run \`rampartctl reload\`) and rampart.conf (below: the
		# [dataplane] and [control] sections take effect at the next boot only).
		[dataplane]
		main_core = $main_core
		worker_cores = [$worker_cores]
		memory_mb = $memory_mb
		file_prefix = "rampart"
		hugepages = true
		shm = "/dev/shm/rampart"
		pci_devices = [$1]

		[control]
		socket = "/run/rampart/control.sock"
		metrics = "$listen:$metrics_port"
		event_log = "/var/log/rampart/eve.json"
	EOF
}
# quoted_pcis: the data NICs' PCI addresses as a TOML list body.
quoted_pcis() { awk '/^data/ { printf "%s\"%s\"", n++ ? ", " : "", $2 }' /run/rampart/nics; }
render() {
	pol=$fb/policy.toml
	[ -f $pol ] || { config_error "policy.toml missing on the config drive"; return 1; }
	if grep -qE '^[[:space:]]*\[(dataplane|control)\]' $pol; then
		config_error "policy.toml: has a [dataplane] or [control] section; the appliance writes those (set memory_mb, worker_cores, metrics_port in rampart.conf)"
		return 1
	fi
	cp $pol /run/rampart/policy.sub
	# (References in comments do not count; the sed below rewrites those too, harmlessly.)
	for ref in $(sed 's/#.*//' $pol | grep -oE '"nic:[A-Za-z0-9_-]*"' | sort -u); do
		n=${ref#\"nic:} && n=${n%\"}
		p=$(awk -v n="$n" '$1 == n { print $2; exit }' /run/rampart/nics)
		[ -n "$p" ] || { config_error "policy.toml: device $ref: no data NIC named $n (NICs: $(awk '{ printf "%s=%s ", $1, $3 }' /run/rampart/nics))"; return 1; }
		sed -i "s/$ref/\"$p\"/g" /run/rampart/policy.sub
	done
	{ cat /run/rampart/policy.sub && generated "$(quoted_pcis)"; } >$cfg
	if ! out=$(rampartctl check $cfg 2>&1); then
		config_error "$(echo "$out" | grep -v '^ *$' | head -n 6 | tr '\n' ' ' | sed "s#^rampartctl: ##; s#$cfg#policy.toml#g") (checked as $cfg)"
		return 1
	fi
}
# render_open: fail-open: the first two data NICs wired together, everything forwarded.
render_open() {
	[ "$(grep -c '^data' /run/rampart/nics)" -ge 2 ] || { note "failure=open needs two data NICs; staying closed"; return 1; }
	set -- $(awk '/^data[01] / { print $2 }' /run/rampart/nics)
	{
		cat <<-EOF
			# failure=open: the first-boot configuration was bad ($errors);
			# the two data NICs are wired together and everything is forwarded.
			[policy]
			default_action = "forward"

			[[ports]]
			name = "data0"
			kind = "device"
			device = "$1"
			wire = "data1"

			[[ports]]
			name = "data1"
			kind = "device"
			device = "$2"
			wire = "data0"
		EOF
		generated "\"$1\", \"$2\""
	} >$cfg
	rampartctl check $cfg >/dev/null 2>&1 || { note "fail-open config rejected: $(rampartctl check $cfg 2>&1 | head -n 3 | tr '\n' ' ')"; return 1; }
}

# bind_data: hand every data NIC to uio_pci_generic (DPDK's virtio PMD drives it).
bind_data() {
	for p in $(awk '/^data/ { print $2 }' /run/rampart/nics); do
		d=/sys/bus/pci/devices/$p
		[ -e "$d/driver" ] && echo "$p" >"$d/driver/unbind"
		echo uio_pci_generic >"$d/driver_override"
		echo "$p" >/sys/bus/pci/drivers_probe
		[ "$(basename "$(readlink "$d/driver")")" = uio_pci_generic ] || { note "$p: binding to uio_pci_generic failed"; return 1; }
	done
}

# supervise NAME CMD...: run CMD, restart it with back-off (2 s doubling to 30 s) when it
# exits. Pids in /run/rampart/NAME.sup (this loop) and NAME.pid (CMD).
supervise() {
	_name=$1 _delay=2
	shift
	while :; do
		"$@" >>"/var/log/rampart/$_name.log" 2>&1 &
		echo $! >"/run/rampart/$_name.pid"
		wait $!
		note "$_name exited (rc $?); restarting in ${_delay}s; last lines: $(tail -n 3 "/var/log/rampart/$_name.log" | tr '\n' ' ')"
		sleep $_delay
		_delay=$((_delay * 2 > 30 ? 30 : _delay * 2))
	done
}
# stop_rampart: stop the supervisors, then what they run (the dataplane last).
stop_rampart() {
	for n in control dataplane; do
		[ -f /run/rampart/$n.sup ] && kill "$(cat /run/rampart/$n.sup)" 2>/dev/null
		[ -f /run/rampart/$n.pid ] && kill "$(cat /run/rampart/$n.pid)" 2>/dev/null
		rm -f /run/rampart/$n.sup /run/rampart/$n.pid
	done
}

start_rampart() {
	pages=$((memory_mb / 2 + 32))
	echo $pages >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
	mount -t hugetlbfs nodev /dev/hugepages
	got=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)
	[ "$got" -ge "$pages" ] || note "only $got of $pages hugepages reserved (give the VM more RAM)"
	bind_data || { errors="${errors:+$errors; }cannot bind the data NICs to uio_pci_generic"; return 1; }
	supervise dataplane rampart-dataplane --config $cfg &
	echo $! >/run/rampart/dataplane.sup
	supervise control rampartctl --config $cfg run &
	echo $! >/run/rampart/control.sup
	# Ready when the dataplane runs the first policy generation (at most 90 s from now).
	deadline=$(awk -v u="$(uptime_s)" 'BEGIN { print int(u) + 90 }')
	until rampartctl --config $cfg status --json 2>/dev/null | grep -qE '"applied_generation": *[1-9]'; do
		if [ "$(awk -v u="$(uptime_s)" 'BEGIN { print int(u) }')" -ge "$deadline" ]; then
			errors="${errors:+$errors; }the dataplane did not apply the policy within 90 s: $(grep -m 3 -E 'EAL: |rror' /var/log/rampart/dataplane.log 2>/dev/null | tr '\n' ' ')"
			stop_rampart
			return 1
		fi
		sleep 0.2
	done
}

if [ -z "$errors" ] && render && start_rampart; then
	publish forwarding
elif [ -n "$errors" ] && [ "$failure" = open ] && render_open && start_rampart; then
	publish failed-open
else
	[ -n "$errors" ] || errors="the dataplane did not start"
	publish failed-closed
	# No dataplane: the data NICs (bound to uio_pci_generic, or down) forward nothing.
	for p in $(awk '/^data/ { print $2 }' /run/rampart/nics); do
		i=$(nic_if "$p") && [ -n "$i" ] && ip link set "$i" down
	done
	httpd -p "$listen:$metrics_port" -h /run/rampart/www || note "metrics port: httpd on $listen:$metrics_port failed"
fi

# ---------------------------------------------------------------------------- console
# A root shell on the serial console, forever (PID 1 never exits, so the VM never reboots).
while :; do
	setsid cttyhack sh -l
	sleep 1
done
