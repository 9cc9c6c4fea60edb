#!/bin/bash
# Build the Rampart service-VM image (DESIGN.md §1 "Service-VM mode"): a bootable qcow2 disk
# that QEMU (or libvirt, OpenStack, ...) boots without -kernel.
#
# Usage: vm-image/build.sh [OUT_DIR]      (default: <repo>/target/vm-image; `make vm-image`)
# Output: OUT_DIR/rampart.qcow2 plus, next to it, packages.lock (the Debian package set,
# name=version, that went into the image) and build-info.txt (sizes, input hash).
#
# The recipe, reproducible from Debian packages only (no other network access):
#   1. resolve the package set from apt: the Debian cloud kernel (linux-image-cloud-amd64's
#      current version), busybox-static, and the DPDK runtime the dataplane needs
#      (librte-net-virtio23 + librte-mempool-ring23 and their dependencies, recursively);
#      write it, pinned to versions, to packages.lock;
#   2. `apt-get download` exactly those versions into OUT_DIR/debs (cached) and unpack them
#      with `dpkg-deb -x` (nothing runs maintainer scripts, nothing needs a chroot);
#   3. assemble a small root: busybox, glibc, the DPDK libraries, the DPDK drivers the
#      dataplane loads (in EAL's default driver directory, so EAL loads them without `-d`),
#      the kernel modules the appliance needs, target/release/rampart-dataplane and
#      rampartctl (stripped), vm-image/init.sh as /init; check that every ELF file's
#      shared libraries are in the root; pack it as a gzip'd cpio (sorted, fixed mtimes);
#   4. a FAT partition (mtools, no mount) with the kernel, that initramfs and syslinux
#      (installed with `syslinux --install`, which works on an image file), behind an MBR
#      with syslinux's boot code; `qemu-img convert -O qcow2 -c`.
# Reproducible: two builds from the same inputs give the same image, bit for bit (fixed
# mtimes, sorted cpio, gzip -n, fixed FAT volume id, SOURCE_DATE_EPOCH for mtools).
# Idempotent: when the package set, the vm-image/ files and the two binaries are unchanged
# (one hash over all of them), the existing image is kept. Installs the host tools it needs
# from Debian (syslinux, syslinux-common, mtools, dosfstools, fdisk, qemu-utils, cpio).
# Ends by printing the image size.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$(realpath -m "${1:-$repo/target/vm-image}")
bin=$repo/target/release
image=$out/rampart.qcow2
# Fixed timestamps in the initramfs and on the FAT partition (reproducible-builds.org).
epoch=${SOURCE_DATE_EPOCH:-1700000000}
# The DPDK drivers the dataplane needs inside the VM: the virtio PMD, the PCI bus it sits on
# (and the vdev bus, which the virtio PMD links against), and the ring mempool handler
# (without it EAL cannot create the mbuf pool).
pmds=(librte_net_virtio librte_bus_pci librte_bus_vdev librte_mempool_ring)
seeds=(busybox-static libgcc-s1 librte-net-virtio23 librte-mempool-ring23 librte-bus-pci23)
# Kernel modules, in load order (busybox insmod does not resolve dependencies); init.sh
# loads the same list. virtio for the NICs and the config drive, uio_pci_generic to hand
# the data NICs to DPDK (the cloud kernel has no vfio no-IOMMU), FAT for the config drive.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
	failover net_failover virtio_net virtio_blk uio uio_pci_generic fat vfat
	nls_cp437 nls_ascii nls_utf8)

say() { echo "vm-image: $*"; }
die() { echo "vm-image: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (installs host tools with apt-get)"
for b in rampart-dataplane rampartctl; do
	[[ -x $bin/$b ]] || die "$bin/$b missing: run \`make build\` (cargo build --release) first"
done

apt_install() {
	local missing=() p
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	((${#missing[@]})) || return 0
	say "installing host tools: ${missing[*]}"
	# A fresh machine may have no package lists yet: update once, then retry.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "apt-get install ${missing[*]} failed"
}
apt_install syslinux syslinux-common mtools dosfstools fdisk qemu-utils cpio binutils

# ---------------------------------------------------------------------------- 1. package set
kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
kpkg=$(kernel_pkg)
[[ -n $kpkg ]] || { apt-get update -qq && kpkg=$(kernel_pkg); }
[[ -n $kpkg ]] || die "cannot resolve linux-image-cloud-amd64 (apt-get update failed?)"
kver=${kpkg#linux-image-}
# Dependencies only (no recommends): apt's answer for the seeds, one name per line.
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances "${seeds[@]}" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u)
((${#pkgs[@]} >= ${#seeds[@]})) || die "apt-cache depends ${seeds[*]} resolved nothing"
pkgs+=("$kpkg")
mkdir -p "$out/debs"
lock=$out/packages.lock.new
# One apt-cache call for all candidate versions (each call takes a second or two).
apt-cache show --no-all-versions "${pkgs[@]}" 2>/dev/null |
	awk '$1 == "Package:" { p = $2 } $1 == "Version:" { print p "=" $2 }' | sort -u >"$lock"
for p in "${pkgs[@]}"; do
	grep -q "^$p=" "$lock" || die "no candidate version for $p (apt-cache show $p)"
done

# ---------------------------------------------------------------------------- cache check
inputs=$( {
	cat "$lock"
	(cd "$here" && find . -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum)
	sha256sum "$bin/rampart-dataplane" "$bin/rampartctl" | awk '{ print $1 }'
	echo "epoch=$epoch"
} | sha256sum | cut -c1-16)
report() {
	local q v
	q=$(stat -c %s "$image")
	v=$(qemu-img info --output=json "$image" | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])')
	say "sha256 $(sha256sum "$image" | cut -c1-64)"
	say "image $image: $((q / 1024)) KiB ($(awk -v b="$q" 'BEGIN { printf "%.1f", b / 1048576 }') MiB qcow2, compressed; virtual disk $((v / 1048576)) MiB)"
	say "$(grep -E '^(kernel|initramfs|packages)' "$out/build-info.txt" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
}
if [[ -f $image && -f $out/build-info.txt ]] && grep -qx "inputs=$inputs" "$out/build-info.txt"; then
	rm -f "$lock"
	say "up to date (inputs $inputs unchanged)"
	report
	exit 0
fi
mv "$lock" "$out/packages.lock"
say "building $image (kernel $kver, ${#pkgs[@]} packages, inputs $inputs)"

# ---------------------------------------------------------------------------- 2. download
want=()
while IFS='=' read -r p v; do
	# apt-get download names files NAME_VERSION_ARCH.deb with ':' in versions as %3a.
	compgen -G "$out/debs/${p}_${v//:/%3a}_*.deb" >/dev/null || want+=("$p=$v")
done <"$out/packages.lock"
if ((${#want[@]})); then
	say "downloading ${#want[@]} packages from the Debian archive"
	(cd "$out/debs" && apt-get download "${want[@]}" 2>&1 | grep -v 'unsandboxed' || true)
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rampart-vm-image.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/pkg" "$tmp/k"
while IFS='=' read -r p v; do
	deb=$(compgen -G "$out/debs/${p}_${v//:/%3a}_*.deb" | head -n1) || die "apt-get download $p=$v failed"
	if [[ $p == "$kpkg" ]]; then dpkg-deb -x "$deb" "$tmp/k"; else dpkg-deb -x "$deb" "$tmp/pkg"; fi
done <"$out/packages.lock"
# Old versions of packages no longer in the lock are not needed again.
for deb in "$out"/debs/*.deb; do
	n=$(basename "$deb") && n=${n%%_*}
	grep -q "^$n=" "$out/packages.lock" || rm -f "$deb"
done

# ---------------------------------------------------------------------------- 3. the root
root=$tmp/root
mkdir -p "$root"/usr/{bin,lib/modules,lib64} "$root"/{dev,proc,sys,tmp,run,mnt,var/log,etc/rampart,root}
# Debian 12's merged /usr, so that paths from packages and binaries all resolve.
ln -s usr/bin "$root/bin" && ln -s usr/bin "$root/sbin" && ln -s bin "$root/usr/sbin"
ln -s usr/lib "$root/lib" && ln -s usr/lib64 "$root/lib64" && ln -s ../run "$root/var/run"
for d in lib usr/lib lib64 usr/lib64; do
	[[ -d $tmp/pkg/$d ]] && cp -a "$tmp/pkg/$d/." "$root/usr/${d#usr/}/"
done
# What the appliance never uses: charset converters, debug and profiling helpers, docs.
rm -rf "$root"/usr/lib/x86_64-linux-gnu/{gconv,audit} "$root"/usr/lib/x86_64-linux-gnu/lib{memusage,pcprofile,c_malloc_debug}.so*
# DPDK drivers: at start EAL loads every regular file named *.so or *.so.23.0 in its default
# driver directory (Debian's RTE_EAL_PMD_PATH), so that directory holds exactly the drivers
# listed above (no *.so links: a driver would load twice) and the config needs no `-d`.
pmd_dir=usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
[[ -d $root/$pmd_dir ]] || die "$pmd_dir missing from the DPDK packages (is this DPDK 22.11?)"
for f in "$root/$pmd_dir"/*; do
	n=$(basename "$f") && n=${n%%.so*}
	printf '%s\n' "${pmds[@]}" | grep -qx "$n" || rm -f "$f"
done
for n in "${pmds[@]}"; do
	[[ -f $root/$pmd_dir/$n.so.23.0 ]] || die "driver $n.so.23.0 not in the DPDK packages"
done
cp "$tmp/pkg/bin/busybox" "$root/usr/bin/busybox"
for a in $("$root/usr/bin/busybox" --list); do
	[[ -e $root/usr/bin/$a ]] || ln -s busybox "$root/usr/bin/$a"
done
for b in rampart-dataplane rampartctl; do
	objcopy --strip-all "$bin/$b" "$root/usr/bin/$b"
done
kmod=$tmp/k/lib/modules/$kver
for m in "${modules[@]}"; do
	grep -q "/$m\.ko" "$kmod/modules.builtin" && continue
	f=$(find "$kmod/kernel" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
	[[ -n $f ]] || die "module $m not found in $kpkg"
	case $f in
	*.xz) xz -dc "$f" >"$root/usr/lib/modules/$m.ko" ;; # busybox insmod cannot read xz
	*) cp "$f" "$root/usr/lib/modules/$m.ko" ;;
	esac
done
install -m 755 "$here/init.sh" "$root/init"
install -m 644 "$here/config/policy.toml" "$root/etc/rampart/policy.example.toml"
install -m 644 "$here/config/rampart.conf" "$root/etc/rampart/rampart.conf.example"
cp "$out/packages.lock" "$root/etc/rampart/packages.lock"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
echo "rampart" >"$root/etc/hostname"
cat >"$root/etc/profile" <<-'EOF'
	export PATH=/usr/bin PS1='rampart# '
	cat /run/rampart/motd 2>/dev/null
EOF

# Every ELF file must find its shared libraries inside the root (the VM has nothing else).
libdirs=("$root/usr/lib/x86_64-linux-gnu" "$root/usr/lib64" "$root/$pmd_dir")
while IFS= read -r f; do
	while read -r need; do
		found=0
		for d in "${libdirs[@]}"; do [[ -e $d/$need ]] && found=1 && break; done
		((found)) || die "${f#"$root"/} needs $need, which no package in the root provides (add its package to seeds)"
	done < <(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done < <(find "$root/usr/bin" "$root/usr/lib" -type f \( -name 'rampart*' -o -name '*.so*' \) ! -name '*.ko')

find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --reproducible --quiet) |
	gzip -9 -n >"$tmp/initrd.gz"
cp "$tmp/k/boot/vmlinuz-$kver" "$tmp/vmlinuz"

# ---------------------------------------------------------------------------- 4. the disk
cat >"$tmp/syslinux.cfg" <<-EOF
	# Rampart service VM. Kernel command line options (see vm-image/README.md):
	#   rampart.failure=open|closed  rampart.mgmt=MAC  rampart.mgmt_address=dhcp|ADDR/LEN ...
	# Edit without mounting: mtype -i rampart.img@@1M ::/syslinux/syslinux.cfg
	SERIAL 0 115200
	DEFAULT rampart
	PROMPT 0
	TIMEOUT 0
	LABEL rampart
	  LINUX /vmlinuz
	  INITRD /initrd.gz
	  APPEND console=tty0 console=ttyS0,115200 quiet panic=0 ipv6.disable=1
EOF
touch -d "@$epoch" "$tmp/vmlinuz" "$tmp/initrd.gz" "$tmp/syslinux.cfg"
ksz=$(stat -c %s "$tmp/vmlinuz") isz=$(stat -c %s "$tmp/initrd.gz")
# Partition: the files plus 25 % and 4 MiB of room (FAT, syslinux, edits), in whole MiB.
part_mib=$(((ksz + isz) * 5 / 4 / 1048576 + 5))
((part_mib >= 32)) || part_mib=32
part=$tmp/part.img
mkfs.fat -C -F 16 -n RAMPART -i 52414d50 --invariant "$part" $((part_mib * 1024)) >/dev/null 2>&1 ||
	mkfs.fat -C -F 16 -n RAMPART -i 52414d50 "$part" $((part_mib * 1024)) >/dev/null
# mtools (and syslinux through it) date the directory entries SOURCE_DATE_EPOCH.
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=$epoch
mmd -i "$part" ::/syslinux
mcopy -m -i "$part" "$tmp/vmlinuz" "$tmp/initrd.gz" ::/
mcopy -m -i "$part" "$tmp/syslinux.cfg" ::/syslinux/
syslinux --install --directory /syslinux "$part"
disk=$tmp/disk.raw
truncate -s $(((part_mib + 1) * 1048576)) "$disk"
printf 'label: dos\nlabel-id: 0x52414d50\nstart=2048, type=6, bootable\n' | sfdisk -q "$disk"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$disk" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 "$disk" "$image.new"
mv "$image.new" "$image"
{
	echo "inputs=$inputs"
	echo "kernel=$kver ($((ksz / 1024)) KiB)"
	echo "initramfs=$((isz / 1024)) KiB (root: $(du -sk "$root" | cut -f1) KiB unpacked)"
	echo "packages=$(wc -l <"$out/packages.lock") (packages.lock)"
	echo "partition=${part_mib} MiB FAT16"
} >"$out/build-info.txt"
say "built $image"
report
