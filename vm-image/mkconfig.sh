#!/bin/bash
# Make a config drive for the Rampart service VM: a small FAT image (no partition table)
# holding the given files at its root, normally rampart.conf and policy.toml.
# Usage: vm-image/mkconfig.sh OUT.img FILE...
#   e.g. vm-image/mkconfig.sh cfg.img vm-image/config/rampart.conf vm-image/config/policy.toml
# Attach it as a second virtio disk: -drive file=cfg.img,format=raw,if=virtio,readonly=on
# Needs mtools and dosfstools (vm-image/build.sh installs them); no mount, no root.
set -euo pipefail
(($# >= 2)) || { sed -n '2,7p' "$0" >&2; exit 2; }
out=$1
shift
for f in "$@"; do [[ -f $f ]] || { echo "mkconfig.sh: $f: no such file" >&2; exit 1; }; done
command -v mkfs.fat >/dev/null && command -v mcopy >/dev/null ||
	{ echo "mkconfig.sh: needs mkfs.fat and mcopy: apt-get install dosfstools mtools" >&2; exit 1; }
rm -f "$out"
mkfs.fat -C -n RAMPARTCFG "$out" 1440 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$out" "$@" ::/
