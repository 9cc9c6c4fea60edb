#!/bin/bash
# Runs Rampart's test tiers (DESIGN.md §7): all of them, or those named.
#   unit    clippy (warnings and unsafe blocks without a SAFETY comment are errors), cargo test
#           of every library and binary crate (no EAL), and the DPDK-free crates tested and
#           the fuzz targets built with libdpdk out of pkg-config's reach (scripts/nodpdk.sh)
#   dpdk    the real dataplane with --no-huge and net_pcap ports; bad-input handling
#   vhost   dataplane + control process + simulated guests on vhost-user sockets (switching, hot-plug, reconnect, stateful firewall)
#   guests  real Linux guests in QEMU on Rampart's vhost-user ports: switching and admin
#           state (rampart.sh), the stateful firewall with TCP/ICMP (firewall.sh), the
#           service VM (vm-image/) chained between two guests (appliance.sh)
#   fuzz    libFuzzer on every fuzz target (fuzz/) for FUZZ_SECONDS each (default 24), from
#           the committed and generated seeds with a fixed libFuzzer seed
# Ends with `tiers: N passed, M failed`; exits non-zero if any tier failed.
set -uo pipefail
cd "$(dirname "$0")/.."
tiers=("$@")
((${#tiers[@]})) || tiers=(unit dpdk vhost guests fuzz)
passed=() failed=()
for tier in "${tiers[@]}"; do
	echo "=== tier: $tier ==="
	start=$SECONDS
	case $tier in
	unit) cargo clippy --workspace --all-targets -- -D warnings -D clippy::undocumented_unsafe_blocks &&
		cargo test --workspace --exclude rampart-tests && scripts/nodpdk.sh ;;
	dpdk) cargo test -p rampart-tests --test dpdk --test badinput -- --test-threads=1 ;;
	vhost) cargo test -p rampart-tests --test vhost --test firewall -- --test-threads=1 ;;
	fuzz) FUZZ_SEED=1 FUZZ_FRESH=1 scripts/fuzz.sh ;;
	guests) RAMPART_SKIP_BUILD=1 tests/guests/rampart.sh && RAMPART_SKIP_BUILD=1 tests/guests/firewall.sh && RAMPART_SKIP_BUILD=1 tests/guests/appliance.sh ;;
	*) echo "unknown tier $tier (expected unit, dpdk, vhost, guests, fuzz)"; false ;;
	esac
	rc=$?
	echo "=== tier $tier: $([[ $rc == 0 ]] && echo passed || echo FAILED) in $((SECONDS - start)) s ==="
	if [[ $rc == 0 ]]; then passed+=("$tier"); else failed+=("$tier"); fi
done
echo "tier results: passed: ${passed[*]:-none}; failed: ${failed[*]:-none}"
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
