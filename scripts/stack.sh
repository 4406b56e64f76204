#!/usr/bin/env bash
# The whole iotjobs stack on this machine, without Docker.
#
#   scripts/stack.sh up [--detach]   install what is missing, start Kafka, PostgreSQL, Mosquitto,
#                                    apply migrations, create topics, start projector, control and
#                                    dataplane; then wait (Ctrl-C stops everything) unless --detach
#   scripts/stack.sh down            stop the services, then the servers
#   scripts/stack.sh status          what is running
#
# Ports: control IOTJOBS_CONTROL_PORT (8080), dataplane IOTJOBS_DATAPLANE_PORT (8081), projector's /health and
# /metrics IOTJOBS_PROJECTOR_PORT (8082), Kafka 9092, PostgreSQL 5432, MQTT 1883 (see docs/servers.md). Service
# logs go to $IOTJOBS_RUN_DIR/services/, as readable console lines (IOTJOBS_LOG_FORMAT=json for JSON lines).
#
# IOTJOBS_SECURITY_MODE=production: everything authenticates (docs/security.md). Credentials are made once in
# IOTJOBS_CREDENTIALS_DIR ($IOTJOBS_RUN_DIR/credentials): devices connect with a password on 1883 or a
# certificate on IOTJOBS_MQTT_TLS_PORT (8883), the HTTP planes serve HTTPS and accept only the SigV4 keys in
# access-keys. Without it: development mode, anonymous and unsigned, said loudly.
LOG_TAG=stack
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PYTHON:-python3}
SERVICES=(projector control dataplane)
SDIR=$RUN_DIR/services
export IOTJOBS_CONTROL_PORT=${IOTJOBS_CONTROL_PORT:-8080}
export IOTJOBS_DATAPLANE_PORT=${IOTJOBS_DATAPLANE_PORT:-8081}
export IOTJOBS_PROJECTOR_PORT=${IOTJOBS_PROJECTOR_PORT:-8082}
# The native stack's logs are read by a person at a terminal; collectors want IOTJOBS_LOG_FORMAT=json.
export IOTJOBS_LOG_FORMAT=${IOTJOBS_LOG_FORMAT:-console}
export IOTJOBS_KAFKA_BOOTSTRAP=${IOTJOBS_KAFKA_BOOTSTRAP:-127.0.0.1:${IOTJOBS_KAFKA_PORT:-9092}}
export IOTJOBS_PG_DSN=${IOTJOBS_PG_DSN:-postgresql://postgres@127.0.0.1:${IOTJOBS_PG_PORT:-5432}/${IOTJOBS_PG_DB:-iotjobs}}
export IOTJOBS_MQTT_PORT=${IOTJOBS_MQTT_PORT:-1883}
export IOTJOBS_SECURITY_MODE=${IOTJOBS_SECURITY_MODE:-development}
CRED_DIR=${IOTJOBS_CREDENTIALS_DIR:-$RUN_DIR/credentials}
SCHEME=http

service_pid() { cat "$SDIR/$1.pid" 2>/dev/null || true; }

service_running() {
    local pid
    pid=$(service_pid "$1")
    [ -n "$pid" ] && pid_alive "$pid" && pid_matches "$pid" "services.$1"
}

start_service() {
    if service_running "$1"; then
        log "$1 already running (pid $(service_pid "$1"))"
        return
    fi
    (cd "$REPO_DIR" && exec "$PYTHON" -m "services.$1" >>"$SDIR/$1.log" 2>&1) &
    echo $! >"$SDIR/$1.pid"
    log "$1 started (pid $!, log $SDIR/$1.log)"
}

wait_healthy() {  # wait_healthy NAME URL
    local deadline=$((SECONDS + 90))
    until curl -fs --cacert "$CRED_DIR/ca.crt" "$2/health" >/dev/null 2>&1 || curl -fs "$2/health" >/dev/null 2>&1; do
        service_running "$1" || { tail -n 30 "$SDIR/$1.log" >&2; die "$1 exited; log above"; }
        [ $SECONDS -lt $deadline ] || { tail -n 30 "$SDIR/$1.log" >&2; die "$1 not ready after 90s"; }
        sleep 0.5
    done
}

stop_service() {
    local pid
    pid=$(service_pid "$1")
    if [ -n "$pid" ] && service_running "$1"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
        pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
        log "$1 stopped"
    fi
    rm -f "$SDIR/$1.pid"
}

admin() { (cd "$REPO_DIR" && "$PYTHON" -m services.admin "$@"); }

# Production: credentials made once, then the broker, the services and the HTTP planes all use them.
secure() {
    export IOTJOBS_CREDENTIALS_DIR=$CRED_DIR
    [ -r "$CRED_DIR/ca.crt" ] || admin credentials init --dir "$CRED_DIR" >/dev/null || die "credentials init failed"
    if [ ! -s "$CRED_DIR/access-keys" ]; then
        admin credentials access-key operator --dir "$CRED_DIR" >"$CRED_DIR/operator.env" || die "access-key failed"
        chmod 600 "$CRED_DIR/operator.env"
    fi
    export IOTJOBS_MQTT_AUTH=on
    export IOTJOBS_MQTT_TLS_PORT=${IOTJOBS_MQTT_TLS_PORT:-8883}
    export IOTJOBS_MQTT_USERNAME=iotjobs-service
    export IOTJOBS_MQTT_PASSWORD_FILE=$CRED_DIR/service.password
    export IOTJOBS_TLS_CERT_FILE=$CRED_DIR/server.crt IOTJOBS_TLS_KEY_FILE=$CRED_DIR/server.key
    export IOTJOBS_SIGV4_CREDENTIALS_FILE=$CRED_DIR/access-keys
    SCHEME=https
}

up() {
    "$SCRIPTS_DIR/python-deps.sh"
    case $IOTJOBS_SECURITY_MODE in
        production) secure ;;
        development) warn "DEVELOPMENT MODE: anonymous MQTT and unsigned HTTP; IOTJOBS_SECURITY_MODE=production" \
            "requires credentials (docs/security.md)" ;;
        *) die "IOTJOBS_SECURITY_MODE must be development or production, got '$IOTJOBS_SECURITY_MODE'" ;;
    esac
    "$SCRIPTS_DIR/servers.sh" up
    mkdir -p "$SDIR"
    (cd "$REPO_DIR" && "$PYTHON" -m services.admin migrate && "$PYTHON" -m services.admin topics) \
        || die "migrations or topic creation failed"
    for s in "${SERVICES[@]}"; do start_service "$s"; done
    wait_healthy control "$SCHEME://127.0.0.1:$IOTJOBS_CONTROL_PORT"
    wait_healthy dataplane "$SCHEME://127.0.0.1:$IOTJOBS_DATAPLANE_PORT"
    wait_healthy projector "http://127.0.0.1:$IOTJOBS_PROJECTOR_PORT"
    if [ "$IOTJOBS_SECURITY_MODE" = production ]; then
        cat <<MSG

iotjobs is up, in production mode (docs/security.md).
  control plane (aws iot)     https://127.0.0.1:$IOTJOBS_CONTROL_PORT
  device HTTP (iot-jobs-data) https://127.0.0.1:$IOTJOBS_DATAPLANE_PORT
  device MQTT                 mqtt://127.0.0.1:$IOTJOBS_MQTT_PORT (password), mqtts://127.0.0.1:$IOTJOBS_MQTT_TLS_PORT (certificate)
  credentials                 $CRED_DIR (CA: ca.crt)

Try it:
  set -a; . $CRED_DIR/operator.env; set +a; export AWS_DEFAULT_REGION=us-east-1 AWS_CA_BUNDLE=$CRED_DIR/ca.crt
  aws iot create-thing --thing-name t1 --endpoint-url https://127.0.0.1:$IOTJOBS_CONTROL_PORT
  iotjobs-admin credentials certificate t1 --dir $CRED_DIR   # or: credentials password t1, then
  scripts/mosquitto.sh reload
MSG
        return
    fi
    cat <<MSG

iotjobs is up.
  control plane (aws iot)     http://127.0.0.1:$IOTJOBS_CONTROL_PORT
  device HTTP (iot-jobs-data) http://127.0.0.1:$IOTJOBS_DATAPLANE_PORT
  device MQTT                 mqtt://127.0.0.1:$IOTJOBS_MQTT_PORT   (\$aws/things/<thing>/jobs/...)
  rollout dashboard           http://127.0.0.1:$IOTJOBS_CONTROL_PORT/dashboard
  metrics                     /metrics on all three; projector http://127.0.0.1:$IOTJOBS_PROJECTOR_PORT
  Kafka                       $IOTJOBS_KAFKA_BOOTSTRAP
  PostgreSQL (read models)    $IOTJOBS_PG_DSN

DEVELOPMENT MODE: anonymous MQTT and unsigned HTTP; see docs/security.md before exposing it.
Try it (any credentials do):
  export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y AWS_DEFAULT_REGION=us-east-1
  aws iot create-thing --thing-name t1 --endpoint-url http://127.0.0.1:$IOTJOBS_CONTROL_PORT
  aws iot create-job --job-id j1 --targets arn:aws:iot:us-east-1:123456789012:thing/t1 \\
      --document '{"action":"reboot"}' --endpoint-url http://127.0.0.1:$IOTJOBS_CONTROL_PORT
  aws iot describe-job --job-id j1 --endpoint-url http://127.0.0.1:$IOTJOBS_CONTROL_PORT
MSG
}

down() {
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[i]}"; done
    "$SCRIPTS_DIR/servers.sh" down
}

case ${1:-} in
    up)
        up
        if [ "${2:-}" != "--detach" ]; then
            trap 'echo; down; exit 0' INT TERM
            log "running; Ctrl-C (or scripts/stack.sh down) stops the stack"
            while true; do
                for s in "${SERVICES[@]}"; do
                    service_running "$s" || warn "$s is not running (log: $SDIR/$s.log)"
                done
                sleep 5 & wait $!
            done
        fi
        ;;
    down) down ;;
    status)
        for s in "${SERVICES[@]}"; do
            if service_running "$s"; then echo "$s: running (pid $(service_pid "$s"))"; else echo "$s: stopped"; fi
        done
        "$SCRIPTS_DIR/servers.sh" status
        ;;
    *) echo "usage: $(basename -- "$0") {up [--detach]|down|status}" >&2; exit 2 ;;
esac
