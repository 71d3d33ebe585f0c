#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 for
# development and CI, fetched from Maven Central with Maven: no Docker needed.
#
#   deploy/kafka.sh start|stop|status|fetch
#
# Environment:
#   KAFKA_VERSION  Kafka release (default 4.4.0; see README "Local Kafka")
#   KAFKA_PORT     client port on 127.0.0.1 (default 9092; controller = port+1)
#   KAFKA_CACHE    where jars are cached across runs (default ~/.cache/persona-stream)
#   KAFKA_DATA     run folder: logs, data, pid (default $KAFKA_CACHE/run-$KAFKA_PORT)
#   KAFKA_HEAP     JVM heap (default 512m: plenty for tests on a 2-core machine)
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="2.24.3"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="$((KAFKA_PORT + 1))"
KAFKA_CACHE="${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/persona-stream}"
LIB="$KAFKA_CACHE/kafka-$KAFKA_VERSION/lib"
RUN="${KAFKA_DATA:-$KAFKA_CACHE/run-$KAFKA_PORT}"
PIDFILE="$RUN/kafka.pid"
LOG="$RUN/kafka.out"
# The broker must answer within this many seconds; a cold JVM on a busy
# 2-core machine takes 5-15 s, so 90 s only trips on a real failure.
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

say() { printf 'kafka.sh: %s\n' "$*" >&2; }

fetch() {
  [ -f "$LIB/.complete" ] && return 0
  command -v mvn >/dev/null || { say "Maven (mvn) is needed to fetch Kafka"; exit 1; }
  command -v java >/dev/null || { say "Java 17+ is needed to run Kafka"; exit 1; }
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIB"
  local tmp; tmp="$(mktemp -d)"
  cat > "$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>persona-stream</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$LIB"; mkdir -p "$LIB"
  if ! mvn -q -B -f "$tmp/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIB" >"$tmp/mvn.log" 2>&1; then
    tail -20 "$tmp/mvn.log" >&2; say "Maven could not fetch Kafka $KAFKA_VERSION"; exit 1
  fi
  rm -rf "$tmp"
  touch "$LIB/.complete"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }

java_run() { # main class, args...
  java -cp "$LIB/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" "$@"
}

configure() {
  mkdir -p "$RUN/data"
  cat > "$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/data
# one node: internal topics cannot have more than one replica
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
auto.create.topics.enable=true
# tests create many short-lived groups: do not make each wait 3 s to rebalance
group.initial.rebalance.delay.ms=0
# 2 cores: a handful of threads is enough and leaves CPU to the workers
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.hours=24
log.segment.bytes=67108864
PROPS
  cat > "$RUN/log4j2.properties" <<L4J
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=$RUN/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=FILE
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
L4J
  if [ ! -f "$RUN/data/meta.properties" ]; then
    java_run kafka.tools.StorageTool format \
      -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$RUN/server.properties" >"$RUN/format.log" 2>&1 \
      || { cat "$RUN/format.log" >&2; say "formatting KRaft storage failed"; exit 1; }
  fi
}

start() {
  if running; then say "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  if answers; then say "port $KAFKA_PORT is taken by another process"; exit 1; fi
  fetch
  configure
  KAFKA_HEAP="${KAFKA_HEAP:-512m}"
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:ActiveProcessorCount=2 -Djava.awt.headless=true \
    -cp "$LIB/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    kafka.Kafka "$RUN/server.properties" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  local waited=0
  until answers; do
    if ! running || [ "$waited" -ge "$START_TIMEOUT" ]; then
      say "broker did not start; last lines of its logs:"
      tail -n 30 "$LOG" "$RUN/server.log" 2>/dev/null >&2 || true
      stop_quiet; exit 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  say "Kafka $KAFKA_VERSION running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$PIDFILE"), data $RUN)"
}

stop_quiet() {
  running || { rm -f "$PIDFILE"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  # a controlled shutdown takes a few seconds; after 30 s we stop waiting
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) if running; then stop_quiet; say "stopped"; else say "not running"; fi ;;
  status) if running && answers; then say "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; else say "not running"; exit 3; fi ;;
  fetch) fetch ;;
  reset) stop_quiet; rm -rf "$RUN"; say "stopped and removed $RUN" ;;
  *) echo "usage: $0 start|stop|status|fetch|reset" >&2; exit 2 ;;
esac
