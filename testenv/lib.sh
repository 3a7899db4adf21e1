# shellcheck shell=bash
# Shared helpers for the testenv scripts. Sourced, never run.
#
# Layout (both folders are git-ignored):
#   testenv/.cache/  downloads: Maven repositories, Cassandra and Kafka jars, the Python venv
#   testenv/.run/    one folder per server: pid file, logs, data
# IDEM_TESTENV_CACHE and IDEM_TESTENV_RUN move them elsewhere.

TESTENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${IDEM_TESTENV_CACHE:-$TESTENV_DIR/.cache}
RUN_DIR=${IDEM_TESTENV_RUN:-$TESTENV_DIR/.run}

# Ports and versions: every script and env.sh read them here, so one override moves them all.
CASSANDRA_VERSION=5.0.9
CASSANDRA_ADDRESS=${IDEM_CASSANDRA_ADDRESS:-127.0.0.1}
CASSANDRA_PORT=${IDEM_CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${IDEM_CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_HEAP=${IDEM_CASSANDRA_HEAP:-1G}
PAXOS_VARIANT=${IDEM_PAXOS_VARIANT:-v1}
MOTO_PORT=${IDEM_MOTO_PORT:-5000}
MINISTACK_PORT=${IDEM_MINISTACK_PORT:-4566}
DYNAMO_ADDRESS=127.0.0.1
KAFKA_VERSION=4.4.0
KAFKA_ADDRESS=127.0.0.1
KAFKA_PORT=${IDEM_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${IDEM_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${IDEM_KAFKA_HEAP:-256m}

# The single servers, in start order: up.sh starts them, down.sh stops them (and the cluster),
# status.sh shows them (make services-status, .ci/run's failure dump). Each NAME has its
# script testenv/NAME.sh start|stop|status|logs [N]. A new server is added here, and to env.sh
# for the variable its tests read.
TESTENV_SERVERS=(cassandra moto ministack kafka)

# is_server NAME: NAME is one of TESTENV_SERVERS.
is_server() {
	local s
	for s in "${TESTENV_SERVERS[@]}"; do
		[[ $s == "$1" ]] && return 0
	done
	return 1
}

say() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid_of PIDFILE MARKER: prints the pid recorded in PIDFILE if that process is alive and its
# command line contains MARKER (so a recycled pid is never mistaken for our server).
pid_of() {
	local pidfile=$1 marker=$2 pid
	[[ -s $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
	printf '%s\n' "$pid"
}

# rss_of PID: resident memory in MiB.
rss_of() { awk '/^VmRSS:/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null; }

# spawn PIDFILE LOGFILE CMD...: starts CMD detached (own session, stdin closed, output to
# LOGFILE) and records its pid in PIDFILE. The pid is the server process itself.
spawn() {
	local pidfile=$1 logfile=$2
	shift 2
	rm -f "$pidfile"
	# The inner shell writes its own pid, then execs the server in place: the pid file holds
	# exactly the server's pid, not a wrapper's.
	# fd 9 (the with_lock lock) is closed so the server never holds the lock.
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
	local i
	for i in $(seq 50); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	die "could not start $1"
}

# stop_pid NAME PIDFILE MARKER [GRACE_SECONDS]: SIGTERM the recorded process, SIGKILL after
# the grace period. Only ever signals the pid in PIDFILE, and only if MARKER matches.
stop_pid() {
	local name=$1 pidfile=$2 marker=$3 grace=${4:-20} pid i
	if ! pid=$(pid_of "$pidfile" "$marker"); then
		if [[ -s $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null; then
			# Alive but not what we started (a recycled pid, or a server from an older script).
			say "$name: pid $(<"$pidfile") in $pidfile is not a $marker process; not touching it"
			return 1
		fi
		rm -f "$pidfile"
		say "$name: not running"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq $((grace * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$name: pid $pid ignored SIGTERM for ${grace}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pidfile"
	say "$name: stopped (pid $pid)"
}

# with_lock LOCKFILE CMD...: runs CMD holding an exclusive lock, so two concurrent
# `start`s (two make targets, two engineers) do not both install or spawn.
with_lock() {
	local lock=$1
	shift
	mkdir -p "$(dirname "$lock")"
	(
		flock -w 600 9 || die "timed out waiting for lock $lock"
		"$@"
	) 9>"$lock"
}

# rotate FILE...: keeps the previous run's log as FILE.1, so each run's log starts empty and a
# failure shows only what this run wrote.
rotate() {
	local f
	for f; do
		[[ -e $f ]] && mv -f "$f" "$f.1"
	done
	return 0
}

# tail_log NAME FILE [LINES]: prints the last lines of a log, framed, to stderr.
tail_log() {
	local name=$1 file=$2 n=${3:-40}
	if [[ -s $file ]]; then
		printf -- '----- %s: last %d lines of %s -----\n' "$name" "$n" "$file" >&2
		tail -n "$n" "$file" >&2
		printf -- '----- end of %s log -----\n' "$name" >&2
	else
		printf -- '----- %s: no log at %s -----\n' "$name" "$file" >&2
	fi
}

# elapsed SECONDS_SINCE_EPOCH_START: "12.3s" since the start mark (EPOCHREALTIME based).
elapsed() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.1fs", e - s}'; }

# JAVA is the Java 17 the Maven-installed servers run on.
JAVA=${IDEM_JAVA:-/usr/lib/jvm/java-17-openjdk-amd64/bin/java}

# need_java_tools installs Java 17 and Maven from Debian if either is missing (as root; otherwise
# it says what to install).
need_java_tools() {
	if [[ ! -x $JAVA ]] || ! command -v mvn >/dev/null; then
		[[ $(id -u) == 0 ]] || die "need Java 17 at $JAVA and Maven: apt-get install openjdk-17-jre-headless maven"
		say "installing Java 17 and Maven from Debian"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
	fi
	[[ -x $JAVA ]] || die "no Java 17 at $JAVA (set IDEM_JAVA)"
}

# maven_jars NAME WHAT POM LIB_DIR REPO JAR fetches the runtime jars of POM into LIB_DIR from Maven
# Central, through the local repository REPO (in the cache, so a fresh clone needs no ~/.m2; one
# per server, since up.sh and .ci/run install them in parallel and two Mavens writing one
# repository can trip over each other's downloads), unless LIB_DIR already holds them for this
# POM. JAR is the jar that must be there afterwards; WHAT says what is fetched.
maven_jars() {
	local name=$1 what=$2 pom=$3 lib=$4 repo=$5 jar=$6
	local stamp=$lib/.complete want
	want=$(sha256sum "$pom" | cut -d' ' -f1)
	[[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
	need_java_tools
	local t0=$EPOCHREALTIME
	say "$name: fetching $what and its runtime jars from Maven Central"
	rm -rf "$lib"
	mkdir -p "$lib"
	# (sed drops the colour resets Maven 3.8 prints even in batch mode.)
	mvn -B -q -Dstyle.color=never -f "$pom" \
		-Dmaven.repo.local="$repo" \
		dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$lib" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 ||
		die "$name: Maven could not fetch the jars (see above)"
	[[ -f $lib/$jar ]] || die "$name: $jar missing after Maven; is $pom's version right?"
	printf '%s\n' "$want" >"$stamp"
	say "$name: $(find "$lib" -name '*.jar' | wc -l) jars ($(du -sh "$lib" | cut -f1)) in $(elapsed "$t0")"
}
