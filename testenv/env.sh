#!/usr/bin/env bash
# testenv/env.sh: print the environment that points the Go tests at the testenv servers, as
# export lines for `eval "$(testenv/env.sh)"`. Only servers that run and answer are exported;
# a missing one is named in a comment (and on stderr), so its tests skip, or fail under
# IDEM_REQUIRE_SERVERS=1.
#
# The contract (read by internal/testenv):
#   IDEM_DYNAMODB_ENDPOINTS  comma-separated name=url, e.g. moto=http://127.0.0.1:5000,ministack=http://127.0.0.1:4566
#   IDEM_CASSANDRA_HOSTS     comma-separated host:port, e.g. 127.0.0.1:9042
#   IDEM_CASSANDRA_CLUSTER   host:port of the 3 nodes of testenv/cluster.sh, when any of them runs
#                            (the tests restart a node that is down), e.g. 127.0.0.11:9042,127.0.0.12:9042,127.0.0.13:9042
#   IDEM_CASSANDRA_CLUSTER_CTL  the absolute path of testenv/cluster.sh, which the tests run to kill and start nodes
#   IDEM_KAFKA_BROKERS       comma-separated host:port bootstrap brokers, e.g. 127.0.0.1:9092
#   AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  static test values for the emulators
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

endpoints=()
for s in moto ministack; do
	if "$TESTENV_DIR/dynamo.sh" "$s" status >/dev/null 2>&1; then
		port=MOTO_PORT
		[[ $s == ministack ]] && port=MINISTACK_PORT
		endpoints+=("$s=http://$DYNAMO_ADDRESS:${!port}")
	else
		echo "# $s: not running (testenv/up.sh $s)"
		say "env: $s is not running"
	fi
done
if ((${#endpoints[@]})); then
	echo "export IDEM_DYNAMODB_ENDPOINTS=$(
		IFS=,
		echo "${endpoints[*]}"
	)"
fi
if "$TESTENV_DIR/cassandra.sh" status >/dev/null 2>&1; then
	echo "export IDEM_CASSANDRA_HOSTS=$CASSANDRA_ADDRESS:$CASSANDRA_PORT"
else
	echo "# cassandra: not running (testenv/up.sh cassandra)"
	say "env: cassandra is not running"
fi
if "$TESTENV_DIR/kafka.sh" status >/dev/null 2>&1; then
	echo "export IDEM_KAFKA_BROKERS=$KAFKA_ADDRESS:$KAFKA_PORT"
else
	echo "# kafka: not running (testenv/up.sh kafka)"
	say "env: kafka is not running"
fi
if hosts=$("$TESTENV_DIR/cluster.sh" hosts 2>/dev/null); then
	echo "export IDEM_CASSANDRA_CLUSTER=$hosts"
	echo "export IDEM_CASSANDRA_CLUSTER_CTL=$TESTENV_DIR/cluster.sh"
else
	echo "# cassandra cluster: not running (testenv/cluster.sh start; optional, CI starts it)"
fi
echo "export AWS_REGION=us-east-1"
echo "export AWS_ACCESS_KEY_ID=test"
echo "export AWS_SECRET_ACCESS_KEY=test"
