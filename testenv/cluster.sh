#!/usr/bin/env bash
# testenv/cluster.sh: a 3-node Apache Cassandra 5.0 cluster on loopback, without Docker, for the
# tests that kill nodes. Each node is testenv/cassandra.sh with an address, a data folder, a token
# and a JMX port of its own; the jars are the single node's.
#
#   testenv/cluster.sh start [N]   start every node (or node N) and wait until CQL answers on it;
#                                  running nodes are left alone; a killed node restarts on its data
#   testenv/cluster.sh stop [N]    stop every node (or node N)
#   testenv/cluster.sh kill N      SIGKILL node N: nothing runs its shutdown
#   testenv/cluster.sh status      each node: running or not, where, RSS
#   testenv/cluster.sh logs N [L]  last L lines of node N's system.log (default 100)
#   testenv/cluster.sh reset       stop every node and delete the cluster's data
#   testenv/cluster.sh hosts       print the nodes' CQL host:port, comma-separated, if any node
#                                  runs (testenv/env.sh exports it); exit 3 if none does
#
# Node N (1, 2, 3) listens on 127.0.0.1N: CQL 9042, storage 7000, JMX 720N on 127.0.0.1 (local
# only); node 1 is the seed; one token each, evenly spaced; heap IDEM_CLUSTER_HEAP (640M).
# IDEM_CLUSTER_ADDRESSES moves the nodes (three addresses, space-separated).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Close every inherited descriptor but stdin, stdout and stderr, so that no node's JVM keeps one
# open: `flock testenv/.run/cluster/tests.lock testenv/cluster.sh start` would otherwise leave
# the tests' lock held by the nodes for as long as they run.
for fd in /proc/$$/fd/*; do
	fd=${fd##*/}
	((fd > 2 && fd != 255)) && eval "exec $fd>&-" 2>/dev/null
done
unset fd

read -r -a ADDRESSES <<<"${IDEM_CLUSTER_ADDRESSES:-127.0.0.11 127.0.0.12 127.0.0.13}"
((${#ADDRESSES[@]} == 3)) || die "IDEM_CLUSTER_ADDRESSES must name three addresses, not '${ADDRESSES[*]}'"
TOKENS=(-9223372036854775808 -3074457345618258603 3074457345618258602)
CLUSTER_DIR=$RUN_DIR/cluster
HEAP=${IDEM_CLUSTER_HEAP:-640M}

# node N CMD...: runs testenv/cassandra.sh CMD for node N.
node() {
	local n=$1
	shift
	[[ $n =~ ^[123]$ ]] || die "cluster: no node '$n' (1, 2 or 3)"
	IDEM_CASSANDRA_NODE_DIR=$CLUSTER_DIR/node$n \
		IDEM_CASSANDRA_ADDRESS=${ADDRESSES[n - 1]} \
		IDEM_CASSANDRA_PORT=9042 \
		IDEM_CASSANDRA_STORAGE_PORT=7000 \
		IDEM_CASSANDRA_SEEDS=${ADDRESSES[0]}:7000 \
		IDEM_CASSANDRA_TOKEN=${TOKENS[n - 1]} \
		IDEM_CASSANDRA_JMX_PORT=$((7200 + n)) \
		IDEM_CASSANDRA_HEAP=$HEAP \
		IDEM_CASSANDRA_UNSAFE_SYSTEM=false \
		"$TESTENV_DIR/cassandra.sh" "$@"
}

# each CMD...: runs CMD on the three nodes at once; fails if any fails.
each() {
	local pids=() n failed=()
	for n in 1 2 3; do
		node "$n" "$@" &
		pids+=($!)
	done
	for n in 1 2 3; do
		wait "${pids[n - 1]}" || failed+=("$n")
	done
	((${#failed[@]} == 0)) || die "cluster: '$*' failed on node ${failed[*]}"
}

start_all() {
	local t0=$EPOCHREALTIME
	"$TESTENV_DIR/cassandra.sh" install
	if [[ ${IDEM_CLUSTER_PARALLEL:-1} == 1 ]]; then
		# All three at once (auto_bootstrap is off: no node waits for another to start).
		each start
	else
		# The seed first, then the other two.
		node 1 start
		node 2 start &
		local p2=$!
		node 3 start
		wait "$p2" || die "cluster: node 2 did not start"
	fi
	say "cluster: 3 nodes answering CQL after $(elapsed "$t0")"
	wait_all_up
	say "cluster: every node sees all 3 up after $(elapsed "$t0"), RSS $(rss_total)"
}

# nodetool N ARGS...: Cassandra's nodetool (from the same jars) against node N's JMX port.
nodetool() {
	local n=$1 lib=$CACHE_DIR/cassandra-$CASSANDRA_VERSION/lib
	shift
	local -a opts
	mapfile -t opts < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -e '^-XX' "$TESTENV_DIR/cassandra/jvm17-server.options")
	mkdir -p "$CLUSTER_DIR/nodetool"
	timeout 60 "${IDEM_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}" \
		-Xmx128M -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "${opts[@]}" \
		-Duser.home="$CLUSTER_DIR/nodetool" -Dcassandra.logdir="$CLUSTER_DIR/nodetool" \
		-Dlogback.configurationFile="$TESTENV_DIR/cassandra/logback.xml" \
		-cp "$lib/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p $((7200 + n)) "$@"
}

# view N: how node N's gossip sees the three nodes, "127.0.0.11=UN 127.0.0.12=DN ..." (U up,
# D down; N normal, J joining); fails if node N does not answer.
view() {
	local out a st line
	out=$(nodetool "$1" status 2>/dev/null) || return 1
	for a in "${ADDRESSES[@]}"; do
		st=??
		while read -r line; do
			[[ $line =~ ^([UD][NLJM])\ +$a\  ]] && st=${BASH_REMATCH[1]}
		done <<<"$out"
		printf '%s=%s ' "$a" "$st"
	done
}

# wait_all_up: until every node's gossip sees all three up and normal (UN), at most
# IDEM_CASSANDRA_START_TIMEOUT seconds (180).
wait_all_up() {
	local deadline=$((SECONDS + ${IDEM_CASSANDRA_START_TIMEOUT:-180})) n v
	for n in 1 2 3; do
		until v=$(view "$n") && [[ $v != *=[^U]* && $v != *=U[^N]* ]]; do
			((SECONDS < deadline)) || die "cluster: node $n sees ${v:-nothing (no JMX answer)} after ${IDEM_CASSANDRA_START_TIMEOUT:-180}s"
			sleep 1
		done
	done
}

rss_total() {
	local n pid kib=0
	for n in 1 2 3; do
		pid=$(pid_of "$CLUSTER_DIR/node$n/cassandra.pid" org.apache.cassandra.service.CassandraDaemon) || continue
		kib=$((kib + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
	done
	awk -v k="$kib" 'BEGIN {printf "%.1f GiB", k / 1048576}'
}

status() {
	local n rc=0 v
	for n in 1 2 3; do
		if node "$n" status; then
			v=$(view "$n") || v="no JMX answer on 127.0.0.1:$((7200 + n))"
			echo "  node$n sees: $v"
		else
			rc=3
		fi
	done
	echo "cluster: RSS $(rss_total) in all"
	return "$rc"
}

cmd=${1:-}
case $cmd in
start)
	if [[ -n ${2:-} ]]; then
		t0=$EPOCHREALTIME
		node "$2" start
		say "cluster: node $2 answering CQL after $(elapsed "$t0")"
		wait_all_up
		say "cluster: every node sees node $2 up after $(elapsed "$t0")"
	else
		start_all
	fi
	;;
stop)
	if [[ -n ${2:-} ]]; then node "$2" stop; else each stop; fi
	;;
kill)
	[[ -n ${2:-} ]] || die "usage: testenv/cluster.sh kill N"
	node "$2" kill
	;;
status) status ;;
hosts)
	up=0
	for n in 1 2 3; do
		pid_of "$CLUSTER_DIR/node$n/cassandra.pid" org.apache.cassandra.service.CassandraDaemon >/dev/null && up=1
	done
	((up)) || exit 3
	printf '%s:9042\n' "${ADDRESSES[@]}" | paste -sd,
	;;
logs)
	[[ -n ${2:-} ]] || die "usage: testenv/cluster.sh logs N [LINES]"
	node "$2" logs "${3:-100}"
	;;
reset)
	each stop
	rm -rf "$CLUSTER_DIR"
	say "cluster: data and logs deleted"
	;;
*)
	sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
