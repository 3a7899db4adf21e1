#!/usr/bin/env bash
# testenv/cassandra.sh: a real Apache Cassandra 5.0 node on loopback, without Docker.
#
#   testenv/cassandra.sh install   fetch cassandra-all and its runtime jars from Maven Central
#   testenv/cassandra.sh start     install if needed, start, wait until CQL answers (idempotent)
#   testenv/cassandra.sh stop      stop the node this script started (pid file)
#   testenv/cassandra.sh status    say whether it runs, where, with which Paxos variant
#   testenv/cassandra.sh logs [N]  last N lines of the node's system.log (default 100)
#   testenv/cassandra.sh reset     stop and delete the node's data (next start is a fresh node)
#   testenv/cassandra.sh kill      SIGKILL the node (no shutdown runs; data stays for the next start)
#
# Environment: IDEM_CASSANDRA_PORT (native CQL port, 9042), IDEM_CASSANDRA_STORAGE_PORT (7000),
# IDEM_CASSANDRA_ADDRESS (127.0.0.1), IDEM_CASSANDRA_HEAP (1G), IDEM_PAXOS_VARIANT (v1|v2, v1),
# IDEM_CASSANDRA_START_TIMEOUT (seconds, 180), IDEM_JAVA (Java 17 binary).
# testenv/cluster.sh runs this script once per node of its cluster with three more:
# IDEM_CASSANDRA_NODE_DIR (testenv/.run/cassandra), IDEM_CASSANDRA_SEEDS (this node),
# IDEM_CASSANDRA_TOKEN (0), IDEM_CASSANDRA_JMX_PORT (unset: no JMX).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONF_DIR=$TESTENV_DIR/cassandra
LIB_DIR=$CACHE_DIR/cassandra-$CASSANDRA_VERSION/lib
NODE_DIR=${IDEM_CASSANDRA_NODE_DIR:-$RUN_DIR/cassandra}
NAME=cassandra${IDEM_CASSANDRA_NODE_DIR:+ $(basename "$NODE_DIR")}
SEEDS=${IDEM_CASSANDRA_SEEDS:-$CASSANDRA_ADDRESS:$CASSANDRA_STORAGE_PORT}
TOKEN=${IDEM_CASSANDRA_TOKEN:-0}
JMX_PORT=${IDEM_CASSANDRA_JMX_PORT:-}
# unsafesystem skips the commit log of the system keyspaces: a fast start, but a SIGKILLed node
# then forgets recent schema changes and drops the replayed rows of tables it no longer knows.
# The cluster, whose nodes tests SIGKILL, turns it off.
UNSAFE_SYSTEM=${IDEM_CASSANDRA_UNSAFE_SYSTEM:-true}
LOCK=$NODE_DIR.lock
PID_FILE=$NODE_DIR/cassandra.pid
OUT_LOG=$NODE_DIR/logs/stdout.log
SYS_LOG=$NODE_DIR/logs/system.log
MARKER=org.apache.cassandra.service.CassandraDaemon
START_TIMEOUT=${IDEM_CASSANDRA_START_TIMEOUT:-180}

[[ $PAXOS_VARIANT == v1 || $PAXOS_VARIANT == v2 ]] ||
	die "IDEM_PAXOS_VARIANT must be v1 or v2, not '$PAXOS_VARIANT'"

# cql_ready: the node answers a CQL OPTIONS request with SUPPORTED (protocol v4 frame header
# 84 00 0000 06), which Cassandra only does once the native transport serves clients.
cql_ready() {
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
		head -c 5 <&3 | od -An -tx1 | tr -d " \n"
	' "$CASSANDRA_ADDRESS" "$CASSANDRA_PORT" 2>/dev/null | grep -q '^8400000006'
}

install() {
	maven_jars cassandra "cassandra-all $CASSANDRA_VERSION" "$CONF_DIR/pom.xml" "$LIB_DIR" "$CACHE_DIR/m2" "cassandra-all-$CASSANDRA_VERSION.jar"
}

write_yaml() {
	sed -e "s|@ADDRESS@|$CASSANDRA_ADDRESS|g" \
		-e "s|@NATIVE_PORT@|$CASSANDRA_PORT|g" \
		-e "s|@STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
		-e "s|@PAXOS_VARIANT@|$PAXOS_VARIANT|g" \
		-e "s|@RUN_DIR@|$NODE_DIR|g" \
		-e "s|@SEEDS@|$SEEDS|g" \
		-e "s|@TOKEN@|$TOKEN|g" \
		"$CONF_DIR/cassandra.yaml" >"$NODE_DIR/cassandra.yaml"
}

# running_variant: the paxos_variant the running node was started with.
running_variant() { sed -n 's/^paxos_variant: *//p' "$NODE_DIR/cassandra.yaml" 2>/dev/null; }

start_locked() {
	local pid
	if pid=$(pid_of "$PID_FILE" "$MARKER"); then
		local have
		have=$(running_variant)
		[[ $have == "$PAXOS_VARIANT" ]] ||
			die "$NAME: running (pid $pid) with paxos_variant $have, but IDEM_PAXOS_VARIANT=$PAXOS_VARIANT: run 'testenv/cassandra.sh stop' first"
		wait_ready "$pid" "$EPOCHREALTIME"
		say "$NAME: already running (pid $pid) on $CASSANDRA_ADDRESS:$CASSANDRA_PORT, paxos $have"
		return 0
	fi
	if port_open "$CASSANDRA_ADDRESS" "$CASSANDRA_PORT"; then
		die "$NAME: $CASSANDRA_ADDRESS:$CASSANDRA_PORT is taken by a process testenv did not start; stop it or set IDEM_CASSANDRA_PORT"
	fi
	if port_open "$CASSANDRA_ADDRESS" "$CASSANDRA_STORAGE_PORT"; then
		die "$NAME: storage port $CASSANDRA_ADDRESS:$CASSANDRA_STORAGE_PORT is taken; stop that process or set IDEM_CASSANDRA_STORAGE_PORT"
	fi
	with_lock "$RUN_DIR/cassandra-install.lock" install
	mkdir -p "$NODE_DIR/logs" "$NODE_DIR/tmp" "$NODE_DIR/triggers"
	write_yaml

	local -a opts
	mapfile -t opts < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$CONF_DIR/jvm17-server.options")
	local t0=$EPOCHREALTIME
	rotate "$OUT_LOG" "$SYS_LOG"
	printf '===== start %s (paxos %s) =====\n' "$(date -Is)" "$PAXOS_VARIANT" >"$OUT_LOG"
	spawn "$PID_FILE" "$OUT_LOG" "$JAVA" \
		-Xms256M -Xmx"$CASSANDRA_HEAP" \
		"${opts[@]}" \
		-javaagent:"$(find "$LIB_DIR" -name 'jamm-*.jar' | head -1)" \
		-Djava.io.tmpdir="$NODE_DIR/tmp" \
		-Dcassandra.triggers_dir="$NODE_DIR/triggers" \
		-Dcassandra.config="file://$NODE_DIR/cassandra.yaml" \
		-Dcassandra.storagedir="$NODE_DIR" \
		-Dcassandra.logdir="$NODE_DIR/logs" \
		-Dlogback.configurationFile="$CONF_DIR/logback.xml" \
		-Dcassandra-foreground=yes \
		-Dcassandra.skip_wait_for_gossip_to_settle=0 \
		-Dcassandra.load_ring_state=false \
		-Dcassandra.unsafesystem="$UNSAFE_SYSTEM" \
		-Dcassandra.superuser_setup_delay_ms=0 \
		${JMX_PORT:+-Dcassandra.jmx.local.port=$JMX_PORT} \
		-cp "$LIB_DIR/*" \
		"$MARKER"
	pid=$(<"$PID_FILE")
	say "$NAME: starting $CASSANDRA_VERSION (pid $pid, paxos $PAXOS_VARIANT, heap $CASSANDRA_HEAP) on $CASSANDRA_ADDRESS:$CASSANDRA_PORT"
	wait_ready "$pid" "$t0"
	say "$NAME: CQL answers on $CASSANDRA_ADDRESS:$CASSANDRA_PORT after $(elapsed "$t0"), RSS $(rss_of "$pid")"
}

# wait_ready PID T0: until CQL answers, the process dies, or the timeout passes.
wait_ready() {
	local pid=$1 t0=$2 deadline=$((SECONDS + START_TIMEOUT))
	until cql_ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PID_FILE"
			tail_log "cassandra stdout" "$OUT_LOG" 30
			tail_log cassandra "$SYS_LOG" 60
			die "$NAME: the JVM (pid $pid) exited during startup after $(elapsed "$t0"); logs above"
		fi
		if ((SECONDS >= deadline)); then
			tail_log "cassandra stdout" "$OUT_LOG" 30
			tail_log cassandra "$SYS_LOG" 60
			stop_pid "$NAME" "$PID_FILE" "$MARKER" 30 || true
			die "$NAME: no CQL answer on $CASSANDRA_ADDRESS:$CASSANDRA_PORT within ${START_TIMEOUT}s (IDEM_CASSANDRA_START_TIMEOUT); stopped it; logs above"
		fi
		sleep 0.5
	done
}

status() {
	local pid
	if pid=$(pid_of "$PID_FILE" "$MARKER"); then
		if cql_ready; then
			echo "$NAME: running, pid $pid, CQL on $CASSANDRA_ADDRESS:$CASSANDRA_PORT, paxos_variant $(running_variant), RSS $(rss_of "$pid"), version $CASSANDRA_VERSION"
		else
			echo "$NAME: starting (pid $pid), CQL on $CASSANDRA_ADDRESS:$CASSANDRA_PORT not answering yet"
		fi
		return 0
	fi
	if port_open "$CASSANDRA_ADDRESS" "$CASSANDRA_PORT"; then
		echo "$NAME: not started by testenv, but something listens on $CASSANDRA_ADDRESS:$CASSANDRA_PORT"
	else
		echo "$NAME: stopped"
	fi
	return 3
}

cmd=${1:-}
case $cmd in
install) with_lock "$RUN_DIR/cassandra-install.lock" install ;;
start) with_lock "$LOCK" start_locked ;;
stop) with_lock "$LOCK" stop_pid "$NAME" "$PID_FILE" "$MARKER" 60 ;;
status) status ;;
logs) tail -n "${2:-100}" "$SYS_LOG" ;;
kill)
	if pid=$(pid_of "$PID_FILE" "$MARKER"); then
		kill -KILL "$pid"
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
		rm -f "$PID_FILE"
		say "$NAME: killed (SIGKILL, pid $pid)"
	else
		say "$NAME: not running"
	fi
	;;
reset)
	with_lock "$LOCK" stop_pid "$NAME" "$PID_FILE" "$MARKER" 60
	rm -rf "$NODE_DIR"
	say "$NAME: data and logs deleted"
	;;
*)
	sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
