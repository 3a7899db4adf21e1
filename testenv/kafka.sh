#!/usr/bin/env bash
# testenv/kafka.sh: a real Apache Kafka 4 broker on loopback, without Docker: one KRaft node that
# is both broker and controller.
#
#   testenv/kafka.sh install   fetch kafka_2.13 and its runtime jars from Maven Central
#   testenv/kafka.sh start     install if needed, format the storage once, start, wait until the
#                              broker answers a metadata request (idempotent)
#   testenv/kafka.sh stop      stop the broker this script started (pid file)
#   testenv/kafka.sh status    say whether it runs, where, and its memory
#   testenv/kafka.sh logs [N]  last N lines of the broker's server.log (default 100)
#   testenv/kafka.sh reset     stop and delete the broker's data (next start formats a fresh node)
#
# Environment: IDEM_KAFKA_PORT (PLAINTEXT listener, 9092), IDEM_KAFKA_CONTROLLER_PORT (9093),
# IDEM_KAFKA_HEAP (256m, for -Xms and -Xmx), IDEM_KAFKA_START_TIMEOUT (seconds, 90),
# IDEM_JAVA (Java 17 binary).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONF_DIR=$TESTENV_DIR/kafka
LIB_DIR=$CACHE_DIR/kafka-$KAFKA_VERSION/lib
NODE_DIR=$RUN_DIR/kafka
NAME=kafka
LOCK=$NODE_DIR.lock
PID_FILE=$NODE_DIR/kafka.pid
OUT_LOG=$NODE_DIR/logs/stdout.log
SRV_LOG=$NODE_DIR/logs/server.log
CONFIG=$NODE_DIR/server.properties
# The main class and this node's config: the command line of no other process has both.
MARKER="kafka.Kafka $CONFIG"
START_TIMEOUT=${IDEM_KAFKA_START_TIMEOUT:-90}

install() {
	maven_jars kafka "kafka_2.13 $KAFKA_VERSION" "$CONF_DIR/pom.xml" "$LIB_DIR" "$CACHE_DIR/m2-kafka" "kafka_2.13-$KAFKA_VERSION.jar"
}

write_config() {
	sed -e "s|@ADDRESS@|$KAFKA_ADDRESS|g" \
		-e "s|@PORT@|$KAFKA_PORT|g" \
		-e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
		-e "s|@RUN_DIR@|$NODE_DIR|g" \
		"$CONF_DIR/server.properties" >"$CONFIG"
}

java_opts=(
	-Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP"
	-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
	-XX:MaxDirectMemorySize=128m -XX:ReservedCodeCacheSize=64m
	-Djava.awt.headless=true
	-Djava.io.tmpdir="$NODE_DIR/tmp"
	-Dkafka.logs.dir="$NODE_DIR/logs"
	-Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties"
)

# format_once: KRaft needs its log directories formatted with a cluster id before the first
# start; a node that has its meta.properties is left as it is.
format_once() {
	[[ -f $NODE_DIR/metadata/meta.properties ]] && return 0
	local id
	# A Kafka Uuid: 16 random bytes, base64url without padding.
	id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	say "kafka: formatting $NODE_DIR (cluster id $id)"
	"$JAVA" -Xmx128m "${java_opts[@]:2}" -cp "$LIB_DIR/*" kafka.tools.StorageTool \
		format --standalone -t "$id" -c "$CONFIG" >>"$OUT_LOG" 2>&1 || {
		tail_log "kafka format" "$OUT_LOG" 30
		die "kafka: formatting the storage failed; log above"
	}
}

# metadata_ready: the broker answers a Metadata request (v4, all topics) listing at least one
# broker; a KRaft broker lists only the unfenced brokers, so this holds once it serves clients.
# Request: size 16, api_key 3, version 4, correlation id 7, client id "t", topics null,
# allow_auto_topic_creation false. Response: size, correlation id, throttle_time_ms, broker count.
metadata_ready() {
	local hex
	hex=$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "\x00\x00\x00\x10\x00\x03\x00\x04\x00\x00\x00\x07\x00\x01t\xff\xff\xff\xff\x00" >&3
		head -c 16 <&3 | od -An -tx1 | tr -d " \n"
	' "$KAFKA_ADDRESS" "$KAFKA_PORT" 2>/dev/null) || return 1
	[[ ${#hex} == 32 && ${hex:8:8} == 00000007 ]] || return 1
	((16#${hex:24:8} >= 1))
}

# answers: the listener accepts connections (cheap; status, and the first phase of start).
answers() { port_open "$KAFKA_ADDRESS" "$KAFKA_PORT"; }

start_locked() {
	local pid
	if pid=$(pid_of "$PID_FILE" "$MARKER"); then
		wait_ready "$pid" "$EPOCHREALTIME"
		say "$NAME: already running (pid $pid) on $KAFKA_ADDRESS:$KAFKA_PORT"
		return 0
	fi
	local p
	for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
		if port_open "$KAFKA_ADDRESS" "$p"; then
			die "$NAME: $KAFKA_ADDRESS:$p is taken by a process testenv did not start; stop it or set IDEM_KAFKA_PORT / IDEM_KAFKA_CONTROLLER_PORT"
		fi
	done
	with_lock "$RUN_DIR/kafka-install.lock" install
	mkdir -p "$NODE_DIR/logs" "$NODE_DIR/tmp"
	write_config
	local t0=$EPOCHREALTIME
	rotate "$OUT_LOG" "$SRV_LOG"
	printf '===== start %s =====\n' "$(date -Is)" >"$OUT_LOG"
	format_once
	spawn "$PID_FILE" "$OUT_LOG" "$JAVA" "${java_opts[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$CONFIG"
	pid=$(<"$PID_FILE")
	say "$NAME: starting $KAFKA_VERSION (pid $pid, heap $KAFKA_HEAP) on $KAFKA_ADDRESS:$KAFKA_PORT"
	wait_ready "$pid" "$t0"
	say "$NAME: broker answers on $KAFKA_ADDRESS:$KAFKA_PORT after $(elapsed "$t0"), RSS $(rss_of "$pid")"
}

# wait_ready PID T0: until the broker answers a Metadata request listing itself, the process
# dies, or the timeout passes.
wait_ready() {
	local pid=$1 t0=$2 deadline=$((SECONDS + START_TIMEOUT))
	until metadata_ready; do
		check_alive "$pid" "$t0" "$deadline"
		sleep 0.3
	done
}

check_alive() {
	local pid=$1 t0=$2 deadline=$3
	if ! kill -0 "$pid" 2>/dev/null; then
		rm -f "$PID_FILE"
		tail_log "kafka stdout" "$OUT_LOG" 30
		tail_log kafka "$SRV_LOG" 60
		die "$NAME: the JVM (pid $pid) exited during startup after $(elapsed "$t0"); logs above"
	fi
	((SECONDS < deadline)) || fail_start "$pid" "$KAFKA_ADDRESS:$KAFKA_PORT not accepting connections within ${START_TIMEOUT}s (IDEM_KAFKA_START_TIMEOUT)"
}

fail_start() {
	tail_log "kafka stdout" "$OUT_LOG" 30
	tail_log kafka "$SRV_LOG" 60
	stop_pid "$NAME" "$PID_FILE" "$MARKER" 30 || true
	die "$NAME: $2; stopped it; logs above"
}

status() {
	local pid
	if pid=$(pid_of "$PID_FILE" "$MARKER"); then
		if metadata_ready; then
			echo "$NAME: running, pid $pid, broker on $KAFKA_ADDRESS:$KAFKA_PORT (controller $KAFKA_ADDRESS:$KAFKA_CONTROLLER_PORT), RSS $(rss_of "$pid"), version $KAFKA_VERSION"
		else
			echo "$NAME: starting (pid $pid), $KAFKA_ADDRESS:$KAFKA_PORT not answering a metadata request yet"
		fi
		return 0
	fi
	if answers; then
		echo "$NAME: not started by testenv, but something listens on $KAFKA_ADDRESS:$KAFKA_PORT"
	else
		echo "$NAME: stopped"
	fi
	return 3
}

cmd=${1:-}
case $cmd in
install) with_lock "$RUN_DIR/kafka-install.lock" install ;;
start) with_lock "$LOCK" start_locked ;;
stop) with_lock "$LOCK" stop_pid "$NAME" "$PID_FILE" "$MARKER" 30 ;;
status) status ;;
logs) tail -n "${2:-100}" "$SRV_LOG" ;;
reset)
	with_lock "$LOCK" stop_pid "$NAME" "$PID_FILE" "$MARKER" 30
	rm -rf "$NODE_DIR"
	say "$NAME: data and logs deleted"
	;;
*)
	sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
