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
	# The seed first: the others' gossip needs it to answer before they can join.
	node 1 start
	node 2 start &
	local p2=$!
	node 3 start
	wait "$p2" || die "cluster: node 2 did not start"
	say "cluster: 3 nodes answering after $(elapsed "$t0"), RSS $(rss_total)"
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
	local n rc=0
	for n in 1 2 3; do
		node "$n" status || rc=3
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
		say "cluster: node $2 answering after $(elapsed "$t0")"
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
