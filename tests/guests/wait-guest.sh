#!/bin/bash
# Wait until a guest's console log has a line containing MARKER (fixed string).
# Usage: wait-guest.sh LOG MARKER TIMEOUT_SECONDS
# Fails early when the guest's QEMU (pid in LOG.pid, if present) has exited, and on failure
# shows the last 30 lines of the log. Exit: 0 found, 1 timeout or guest gone, 2 usage.
set -euo pipefail

(($# == 3)) || { echo "usage: wait-guest.sh LOG MARKER TIMEOUT_SECONDS" >&2; exit 2; }
log=$1 marker=$2 timeout=$3

# The serial console writes CRLF; strip CR so callers can match line ends.
found() { [[ -f $log ]] && tr -d '\r' <"$log" | grep -qF -- "$marker"; }
fail() {
	echo "wait-guest.sh: $1 waiting for '$marker' in $log; last 30 lines:" >&2
	{ tr -d '\r' <"$log" 2>/dev/null || true; } | tail -n 30 | sed 's/^/  | /' >&2
	exit 1
}

end=$((SECONDS + timeout))
while ! found; do
	if [[ -f $log.pid ]] && ! kill -0 "$(cat "$log.pid")" 2>/dev/null; then
		found && exit 0 # it printed the marker just before exiting
		fail "guest exited (pid $(cat "$log.pid"))"
	fi
	((SECONDS < end)) || fail "timeout after ${timeout}s"
	sleep 0.2
done
