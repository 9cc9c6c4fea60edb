#!/bin/bash
# Installs what Rampart needs on Debian 12, idempotently: DPDK 22.11, clang for
# bindgen, g++ for libFuzzer (fuzz tier), QEMU + busybox for the guest tests, Python for
# the bench rig, and idstools 0.6.5 from PyPI (used in tests only: the signatures crate's
# cross-check of its rule parser against idstools', tests/inspection/).
#   scripts/deps.sh         the base list (`make build`, `make test`, `make demo`)
#   scripts/deps.sh bench   the base list plus OVS-DPDK for the bench rig's ovs-ct DUT (`make bench`)
set -euo pipefail
pkgs=(dpdk dpdk-dev libdpdk-dev clang libclang-dev g++ pkg-config qemu-system-x86 busybox-static cpio xz-utils iproute2 python3 procps)
case "${1:-}" in
"") ;;
# OVS 3.1.0 built with DPDK 22.11: bench/rig.py runs its ovs-vswitchd-dpdk binary
# directly, whatever `update-alternatives` says ovs-vswitchd is, so the
# alternative is left as it is; openvswitch-switch has ovsdb-server and the tools.
bench) pkgs+=(openvswitch-switch openvswitch-switch-dpdk) ;;
*)
	echo "deps: unknown argument \"$1\"; usage: scripts/deps.sh [bench]" >&2
	exit 2
	;;
esac
# idstools is installed with pip: Debian's python3 has no pip without python3-pip (a
# python3 that already has idstools, or a pip of its own, e.g. pyenv's, needs nothing).
if ! python3 -c 'import idstools' 2>/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
	pkgs+=(python3-pip)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	# The system OVS service, if the package is already there: running before the install or not.
	ovs_was_running=no
	if [[ -x /etc/init.d/openvswitch-switch ]] && service openvswitch-switch status >/dev/null 2>&1; then
		ovs_was_running=yes
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# openvswitch-switch's postinst starts the system ovsdb-server and ovs-vswitchd
	# (systemd units, or the init script where there is no systemd; not under a
	# policy-rc.d that forbids it, as in containers). The rig starts its own pair with
	# its own run directory, database and DPDK file prefix, but a system ovs-vswitchd
	# would still take CPU and, with DPDK enabled in its database, hugepages and
	# spinning PMD cores: stop what the install started, with the package's own service
	# (it stops both daemons), and leave a system OVS that was already running alone.
	if [[ $ovs_was_running == no && -x /etc/init.d/openvswitch-switch ]] && service openvswitch-switch status >/dev/null 2>&1; then
		echo "deps: stopping the system Open vSwitch the package install started (the bench rig runs its own)"
		service openvswitch-switch stop >/dev/null
	fi
fi
if ! python3 -c 'import idstools' 2>/dev/null; then
	echo "deps: installing idstools 0.6.5 from PyPI (used in tests only)"
	export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
	if ! pip_out=$(python3 -m pip install --quiet idstools==0.6.5 2>&1); then
		if ! grep -q externally-managed-environment <<<"$pip_out"; then
			echo "$pip_out" >&2
			echo "deps: pip could not install idstools==0.6.5 (see above)" >&2
			exit 1
		fi
		# Debian's python3 (PEP 668): idstools is pure Python with no dependencies of
		# its own, and Debian packages no idstools to conflict with.
		echo "deps: $(command -v python3) is externally managed (Debian's python3): retrying with --break-system-packages"
		python3 -m pip install --quiet --break-system-packages idstools==0.6.5
	fi
	python3 -c 'import idstools' || { echo "deps: idstools still cannot be imported by $(command -v python3) after the install" >&2; exit 1; }
fi
command -v cargo >/dev/null || { echo "deps: cargo not found; install a Rust toolchain (rustup) first" >&2; exit 1; }
