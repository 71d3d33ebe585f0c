#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 for
# development and CI, fetched from Maven Central with Maven: no Docker needed.
#
#   deploy/kafka.sh start|stop|status|fetch|reset|env
#
# Two client listeners: PLAINTEXT on KAFKA_PORT, and SASL_SSL (SCRAM-SHA-512,
# TLS with a CA made for this run folder) on KAFKA_SASL_PORT. `env` prints the
# SASL_SSL listener's address, user, password and CA file as shell variables
# (KAFKA_SASL_BOOTSTRAP, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE).
#
# Environment:
#   KAFKA_VERSION  Kafka release (default 4.4.0; see README "Local Kafka")
#   KAFKA_PORT     client port on 127.0.0.1 (default 9092; controller = port+1)
#   KAFKA_SASL_PORT  SASL_SSL client port on 127.0.0.1 (default port+2)
#   KAFKA_CACHE    where jars are cached across runs (default ~/.cache/persona-stream)
#   KAFKA_DATA     run folder: logs, data, pid (default $KAFKA_CACHE/run-$KAFKA_PORT)
#   KAFKA_HEAP     JVM heap (default 1g: a test run makes over 1,200 partitions, whose
#                  metadata holds ~250 MB of old generation; 512m ran out in CI)
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="2.24.3"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="$((KAFKA_PORT + 1))"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
SCRAM_USER="persona-stream"
KAFKA_CACHE="${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/persona-stream}"
LIB="$KAFKA_CACHE/kafka-$KAFKA_VERSION/lib"
RUN="${KAFKA_DATA:-$KAFKA_CACHE/run-$KAFKA_PORT}"
PIDFILE="$RUN/kafka.pid"
TLS="$RUN/tls"
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

# Kafka 4 brokers need Java 17 or later; an older JVM dies at once with a
# class-version error, so say it in one line instead.
check_java() {
  command -v java >/dev/null || { say "Java 17+ is needed to run Kafka"; exit 1; }
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  major="${major#1.}"
  [ "${major:-0}" -ge 17 ] 2>/dev/null || { say "Java 17+ is needed to run Kafka (found ${major:-none})"; exit 1; }
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$KAFKA_PORT}") 2>/dev/null; }

java_run() { # main class, args...
  java -cp "$LIB/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" "$@"
}

# A CA of this run folder and the broker's certificate (for 127.0.0.1 and localhost)
# signed by it, as a PKCS12 keystore; the SCRAM user's password. Made once.
make_tls() {
  [ -f "$TLS/broker.p12" ] && return 0
  command -v openssl >/dev/null || { say "openssl is needed for the SASL_SSL listener"; exit 1; }
  rm -rf "$TLS"; mkdir -p "$TLS"; chmod 700 "$TLS"
  local o="$TLS/openssl.log"
  openssl rand -hex 16 >"$TLS/store.password"
  openssl rand -hex 16 >"$TLS/scram.password"
  { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=persona-stream local CA" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" \
    && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$TLS/broker.key" -out "$TLS/broker.csr" \
    && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLS/san.ext" \
    && openssl x509 -req -in "$TLS/broker.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
      -CAcreateserial -days 3650 -extfile "$TLS/san.ext" -out "$TLS/broker.pem" \
    && openssl pkcs12 -export -in "$TLS/broker.pem" -inkey "$TLS/broker.key" \
      -certfile "$TLS/ca.pem" -name broker -passout "file:$TLS/store.password" \
      -out "$TLS/broker.p12.tmp"; } >"$o" 2>&1 \
    || { cat "$o" >&2; say "making the test CA and broker certificate failed"; exit 1; }
  mv "$TLS/broker.p12.tmp" "$TLS/broker.p12"
}

configure() {
  if [ -f "$RUN/data/meta.properties" ] && [ ! -f "$RUN/scram-formatted" ]; then
    # SCRAM users are written when the storage is formatted: a folder formatted
    # before the SASL_SSL listener existed has none, and the test broker's data
    # is throw-away
    say "recreating $RUN: it was formatted without the SASL_SSL listener's user"
    rm -rf "$RUN/data"
  fi
  mkdir -p "$RUN/data"
  make_tls
  cat > "$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
# the authenticated listener: SCRAM-SHA-512 over TLS with this folder's CA
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$(cat "$TLS/store.password")
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
      -c "$RUN/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(cat "$TLS/scram.password")]" \
      >"$RUN/format.log" 2>&1 \
      || { cat "$RUN/format.log" >&2; say "formatting KRaft storage failed"; exit 1; }
    touch "$RUN/scram-formatted"
  fi
}

# the SASL_SSL listener, as shell variables for tests and clients
print_env() {
  [ -f "$TLS/scram.password" ] || { say "no SASL_SSL listener set up in $RUN (start first)"; exit 3; }
  printf 'KAFKA_SASL_BOOTSTRAP=127.0.0.1:%s\n' "$KAFKA_SASL_PORT"
  printf 'KAFKA_SASL_USERNAME=%s\n' "$SCRAM_USER"
  printf 'KAFKA_SASL_PASSWORD=%s\n' "$(cat "$TLS/scram.password")"
  printf 'KAFKA_SSL_CAFILE=%s\n' "$TLS/ca.pem"
}

# One attempt to launch the broker and see it answer on both listeners.
launch() {
  KAFKA_HEAP="${KAFKA_HEAP:-1g}"
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -XX:ActiveProcessorCount=2 -Djava.awt.headless=true \
    -cp "$LIB/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    kafka.Kafka "$RUN/server.properties" >"$LOG" 2>&1 &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local waited=0
  until answers && answers "$KAFKA_SASL_PORT"; do
    if ! running; then
      local rc=0; wait "$pid" || rc=$?
      say "the broker's JVM exited with status $rc after ${waited} s"
      return 1
    fi
    if [ "$waited" -ge "$START_TIMEOUT" ]; then
      say "the broker did not answer within ${START_TIMEOUT} s"
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
}

start() {
  if running; then say "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  if answers; then say "port $KAFKA_PORT is taken by another process"; exit 1; fi
  if answers "$KAFKA_SASL_PORT"; then say "port $KAFKA_SASL_PORT (SASL_SSL) is taken by another process"; exit 1; fi
  fetch
  check_java
  configure
  # A JVM killed at birth (a busy CI machine's memory, a slow disk) leaves no
  # log at all; the test broker's data is throw-away, so a second attempt on a
  # freshly formatted folder costs seconds and tells a fluke from a real fault.
  if ! launch; then
    say "last lines of its logs:"
    tail -n 30 "$LOG" "$RUN/server.log" >&2 2>/dev/null || true
    stop_quiet
    say "retrying once on a freshly formatted data folder"
    rm -rf "$RUN/data" "$RUN/scram-formatted"
    configure
    if ! launch; then
      say "broker did not start; last lines of its logs:"
      tail -n 30 "$LOG" "$RUN/server.log" >&2 2>/dev/null || true
      java -version 2>&1 | head -n 1 >&2 || true
      free -m 2>/dev/null | head -n 2 >&2 || true
      stop_quiet; exit 1
    fi
  fi
  say "Kafka $KAFKA_VERSION running on 127.0.0.1:$KAFKA_PORT, SASL_SSL on 127.0.0.1:$KAFKA_SASL_PORT (pid $(cat "$PIDFILE"), data $RUN)"
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
  stop)
    if running; then stop_quiet; say "stopped"
    elif [ -f "$PIDFILE" ]; then
      # started, never stopped: the broker died under its clients (a CI log's only clue)
      say "the broker had already exited; last lines of its logs:"
      tail -n 20 "$LOG" "$RUN/server.log" >&2 2>/dev/null || true
      rm -f "$PIDFILE"
    else say "not running"; fi ;;
  status) if running && answers; then say "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; else say "not running"; exit 3; fi ;;
  fetch) fetch ;;
  reset) stop_quiet; rm -rf "$RUN"; say "stopped and removed $RUN" ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|fetch|reset|env" >&2; exit 2 ;;
esac
