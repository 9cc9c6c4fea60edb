#!/bin/bash
# Proves the packet path builds and runs without DPDK: with pkg-config unable to find
# libdpdk (PKG_CONFIG_LIBDIR replaces pkg-config's default directories; PKG_CONFIG_PATH
# would only add to them) and a target directory of its own, so nothing built with DPDK
# is reused, it tests rampart-pipeline and builds the fuzz targets, and checks that
# neither depends on rampart-ffi. Part of the unit tier (tests/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PKG_CONFIG_LIBDIR=/nonexistent CARGO_TARGET_DIR=$PWD/target/nodpdk
if pkg-config --exists libdpdk; then
	echo "nodpdk: pkg-config still finds libdpdk with PKG_CONFIG_LIBDIR=$PKG_CONFIG_LIBDIR" >&2
	exit 1
fi
for tree in "cargo tree -p rampart-pipeline" "cargo tree --manifest-path fuzz/Cargo.toml"; do
	if $tree --prefix none | grep -q '^rampart-ffi '; then
		echo "nodpdk: \`$tree\` shows rampart-ffi: the DPDK-free crates must not depend on it" >&2
		exit 1
	fi
done
echo "nodpdk: rampart-pipeline and the fuzz crate do not depend on rampart-ffi"
cargo test -p rampart-pipeline
# The fuzz workspace builds with the versions the main workspace locks (as scripts/fuzz.sh).
cp Cargo.lock fuzz/Cargo.lock
cargo build --manifest-path fuzz/Cargo.toml --bins
echo "nodpdk: rampart-pipeline tested and the fuzz targets built without libdpdk"
