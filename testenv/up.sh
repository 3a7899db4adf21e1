#!/usr/bin/env bash
# testenv/up.sh [cassandra] [moto] [ministack]: install what is missing and start the named
# servers (all three by default), then wait until each answers. Idempotent: servers already
# running are left as they are. Exits non-zero if any server fails to start.
# Then `eval "$(testenv/env.sh)"` points the tests at them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=(cassandra moto ministack)

t0=$EPOCHREALTIME
pids=() names=()
for s in "${services[@]}"; do
	case $s in
	cassandra) "$TESTENV_DIR/cassandra.sh" start & ;;
	moto | ministack) "$TESTENV_DIR/dynamo.sh" "$s" start & ;;
	*) die "unknown service '$s' (cassandra, moto, ministack)" ;;
	esac
	pids+=($!) names+=("$s")
done

failed=()
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || failed+=("${names[$i]}")
done
if ((${#failed[@]})); then
	die "not started: ${failed[*]} (up.sh took $(elapsed "$t0"))"
fi
say "up: ${services[*]} answering after $(elapsed "$t0")"
