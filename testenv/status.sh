#!/usr/bin/env bash
# testenv/status.sh [--logs N]: the status of every single server (lib.sh's TESTENV_SERVERS):
# which runs, where, and its memory; with --logs N, the last N lines of each one's log too
# (.ci/run's failure dump). Always exits 0: a server that is down is a line, not an error.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

logs=
if [[ ${1:-} == --logs ]]; then
	logs=${2:-60}
fi
for s in "${TESTENV_SERVERS[@]}"; do
	"$TESTENV_DIR/$s.sh" status
done
if [[ -n $logs ]]; then
	for s in "${TESTENV_SERVERS[@]}"; do
		echo "----- $s log (last $logs lines) -----"
		"$TESTENV_DIR/$s.sh" logs "$logs" 2>&1
	done
fi
exit 0
