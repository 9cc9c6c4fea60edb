#!/bin/bash
# Installs what Rampart needs on Debian 12, idempotently: DPDK 22.11, clang for
# bindgen, QEMU + busybox for the guest tests, Python for the bench rig.
set -euo pipefail
pkgs=(dpdk dpdk-dev libdpdk-dev clang libclang-dev pkg-config qemu-system-x86 busybox-static cpio xz-utils iproute2 python3 procps)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: cargo not found; install a Rust toolchain (rustup) first" >&2; exit 1; }
