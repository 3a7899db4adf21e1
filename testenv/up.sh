#!/usr/bin/env bash
# testenv/up.sh [cassandra] [moto] [ministack] [kafka]: install what is missing and start the named
# servers (all of lib.sh's TESTENV_SERVERS by default), then wait until each answers. Idempotent: servers already
# running are left as they are. Exits non-zero if any server fails to start.
# Then `eval "$(testenv/env.sh)"` points the tests at them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

services=("$@")
((${#services[@]})) || services=("${TESTENV_SERVERS[@]}")

t0=$EPOCHREALTIME
pids=() names=()
for s in "${services[@]}"; do
	is_server "$s" || die "unknown service '$s' (${TESTENV_SERVERS[*]})"
	"$TESTENV_DIR/$s.sh" start &
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
