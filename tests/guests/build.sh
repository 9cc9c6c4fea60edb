#!/bin/bash
# Build the tiny Linux test guest: OUT/vmlinuz and OUT/initramfs.cpio.gz.
# Usage: tests/guests/build.sh [OUT]   (default: <repo>/target/guest)
# Idempotent: does nothing when both outputs are newer than this script and init.sh.
# Installs what it needs from Debian (busybox-static, qemu-system-x86, cpio, xz-utils), because
# fresh machines and CI start without them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(realpath -m "${1:-$here/../../target/guest}")
# Order matters (busybox insmod has no dependency resolution); init.sh uses the same list.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
	failover net_failover virtio_net qemu_fw_cfg)

fresh() { [[ $1 -nt $here/build.sh && $1 -nt $here/init.sh ]]; }
if fresh "$out/vmlinuz" && fresh "$out/initramfs.cpio.gz"; then
	echo "build.sh: $out is up to date"
	exit 0
fi

apt_install() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || { echo "build.sh: need root to install: ${missing[*]}" >&2; exit 1; }
	# A fresh machine may have no package lists yet: update once, then retry.
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
}
apt_install busybox-static qemu-system-x86 cpio xz-utils

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The meta package follows Debian's kernel updates; the versioned package holds the files.
kpkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
pkg=$(kpkg)
[[ -n $pkg ]] || { apt-get update >/dev/null && pkg=$(kpkg); }
[[ -n $pkg ]] || { echo "build.sh: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
(cd "$tmp" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
deb=$(echo "$tmp"/linux-image-*.deb)
[[ -f $deb ]] || { echo "build.sh: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/k"
kver=${pkg#linux-image-}
kmod=$tmp/k/lib/modules/$kver

root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
	[[ $a == busybox ]] || ln -s busybox "$root/bin/$a"
done
install -m 755 "$here/init.sh" "$root/init"

for m in "${modules[@]}"; do
	if grep -q "/$m\.ko" "$kmod/modules.builtin"; then continue; fi
	f=$(find "$kmod/kernel" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
	[[ -n $f ]] || { echo "build.sh: module $m not found in $pkg" >&2; exit 1; }
	case $f in
	*.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;; # busybox insmod cannot read xz
	*) cp "$f" "$root/lib/modules/$m.ko" ;;
	esac
done

mkdir -p "$out"
cp "$tmp/k/boot/vmlinuz-$kver" "$out/vmlinuz.new"
(cd "$root" && find . | sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -9 >"$out/initramfs.cpio.gz.new"
# Rename last so an interrupted build never looks up to date.
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
mv "$out/vmlinuz.new" "$out/vmlinuz"
echo "$kver" >"$out/kernel-version"
echo "build.sh: built $out (kernel $kver)"
