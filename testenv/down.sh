#!/usr/bin/env bash
# testenv/down.sh [cassandra] [moto] [ministack] [kafka] [cluster]: stop the named servers that testenv
# started (by default lib.sh's TESTENV_SERVERS and the cluster). Never signals a process testenv
# did not start. Data under testenv/.run stays;
# `testenv/cassandra.sh reset` deletes Cassandra's.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
if ((${#services[@]} == 0)); then
	# In the reverse of the start order, then the cluster.
	for ((i = ${#TESTENV_SERVERS[@]} - 1; i >= 0; i--)); do
		services+=("${TESTENV_SERVERS[$i]}")
	done
	services+=(cluster)
fi
for s in "${services[@]}"; do
	[[ $s == cluster ]] || is_server "$s" || die "unknown service '$s' (${TESTENV_SERVERS[*]}, cluster)"
	"$TESTENV_DIR/$s.sh" stop
done
