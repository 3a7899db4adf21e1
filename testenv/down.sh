#!/usr/bin/env bash
# testenv/down.sh [cassandra] [moto] [ministack] [cluster]: stop the named servers (all by default) that
# testenv started. Never signals a process testenv did not start. Data under testenv/.run stays;
# `testenv/cassandra.sh reset` deletes Cassandra's.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(ministack moto cassandra cluster)
for s in "${services[@]}"; do
	case $s in
	cassandra) "$TESTENV_DIR/cassandra.sh" stop ;;
	moto | ministack) "$TESTENV_DIR/dynamo.sh" "$s" stop ;;
	cluster) "$TESTENV_DIR/cluster.sh" stop ;;
	*) die "unknown service '$s' (cassandra, moto, ministack, cluster)" ;;
	esac
done
