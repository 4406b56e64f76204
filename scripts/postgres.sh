#!/usr/bin/env bash
# Private PostgreSQL cluster (Debian packages) for development and tests.
#
#   scripts/postgres.sh {install|start|stop|status|restart}
#
#   IOTJOBS_PG_VERSION   pinned major version (Debian 12: 15)            (default 15)
#   IOTJOBS_PG_PORT      TCP port on 127.0.0.1                           (default 5432)
#   IOTJOBS_PG_DB        database created if missing                     (default iotjobs)
#   IOTJOBS_PG_DURABLE   1 = keep fsync/synchronous_commit/full_page_writes on
#                        (default 0: off, this is a throwaway dev/test cluster)
#   IOTJOBS_RUN_DIR, IOTJOBS_FIX_PERMS, see lib.sh
#
# Layout: cluster in $RUN_DIR/postgres/data, unix socket and postgres.log in $RUN_DIR/postgres.
# User postgres, trust auth, listens on 127.0.0.1 only. The Debian system cluster (15/main) is
# never used or started.
LOG_TAG=postgres
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PG_VERSION=${IOTJOBS_PG_VERSION:-15}
PG_PORT=${IOTJOBS_PG_PORT:-5432}
PG_DB=${IOTJOBS_PG_DB:-iotjobs}
PG_DURABLE=${IOTJOBS_PG_DURABLE:-0}
check_port_number IOTJOBS_PG_PORT "$PG_PORT"
[[ $PG_DB =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "IOTJOBS_PG_DB must be a plain identifier, got '$PG_DB'"

PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
PGDIR=$RUN_DIR/postgres
PGDATA=$PGDIR/data
PGLOG=$PGDIR/postgres.log
PG_START_TIMEOUT=30

as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

is_installed() { [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] && [ -x "$PGBIN/postgres" ]; }

cmd_install() {
    if is_installed; then
        log "PostgreSQL $PG_VERSION already installed ($("$PGBIN/postgres" --version))"
        return 0
    fi
    apt_install "postgresql-$PG_VERSION"
    is_installed || die "postgresql-$PG_VERSION installed but $PGBIN/initdb not found"
    log "installed $("$PGBIN/postgres" --version)"
}

# Pid of the postmaster of *our* cluster (from its postmaster.pid), if running.
running_pid() { pidfile_pid "$PGDATA/postmaster.pid" "$PGDATA"; }

prepare_dirs() {
    mkdir -p "$PGDIR"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (is postgresql-$PG_VERSION installed?)"
        chown postgres:postgres "$PGDIR"
        chmod 700 "$PGDIR"
        ensure_traversable postgres "$PGDIR"
        runuser -u postgres -- test -w "$PGDIR" || die "user postgres cannot write to $PGDIR"
    fi
    # Unix socket paths are limited to 107 bytes.
    local sock="$PGDIR/.s.PGSQL.$PG_PORT"
    ((${#sock} <= 107)) || die "unix socket path too long (${#sock} > 107): $sock; set IOTJOBS_RUN_DIR to a shorter path"
}

init_cluster() {
    if [ -f "$PGDATA/PG_VERSION" ]; then
        local have
        have=$(cat "$PGDATA/PG_VERSION")
        [ "$have" = "$PG_VERSION" ] || die "$PGDATA was created by PostgreSQL $have, not $PG_VERSION: remove it or set IOTJOBS_PG_VERSION=$have"
        return 0
    fi
    log "initdb $PGDATA"
    rm -rf "$PGDATA"
    if ! as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
            >"$PGDIR/initdb.log" 2>&1; then
        cat "$PGDIR/initdb.log" >&2
        die "initdb failed"
    fi
}

ensure_db() {
    local exists
    exists=$("$PGBIN/psql" -h "$PGDIR" -p "$PG_PORT" -U postgres -d postgres -XtAq \
        -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") || die "cannot query the cluster on port $PG_PORT"
    if [ "$exists" != 1 ]; then
        log "creating database $PG_DB"
        "$PGBIN/createdb" -h "$PGDIR" -p "$PG_PORT" -U postgres "$PG_DB" || die "createdb $PG_DB failed"
    fi
}

cmd_start() {
    local pid
    is_installed || cmd_install
    if pid=$(running_pid); then
        local port
        port=$(sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null || true)
        [ "${port:-$PG_PORT}" = "$PG_PORT" ] || die "already running on port $port, not $PG_PORT: stop it first"
        log "already running (pid $pid, 127.0.0.1:$PG_PORT)"
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
            || die "postmaster pid $pid is alive but does not accept connections on 127.0.0.1:$PG_PORT"
        ensure_db
        log "DSN postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
        return 0
    fi
    require_port_free "PostgreSQL" "$PG_PORT"
    prepare_dirs
    init_cluster
    # pg_ctl runs the postmaster through /bin/sh, hence the inner quotes.
    local opts="-p $PG_PORT -k '$PGDIR' -c listen_addresses=127.0.0.1 -c max_connections=200"
    if [ "$PG_DURABLE" != 1 ]; then
        opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    log "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT, data $PGDATA, log $PGLOG"
    if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t "$PG_START_TIMEOUT" -o "$opts" start \
            >"$PGDIR/pg_ctl.out" 2>&1; then
        cat "$PGDIR/pg_ctl.out" >&2
        show_log_tail "$PGLOG"
        die "pg_ctl start failed"
    fi
    pid=$(running_pid) || { show_log_tail "$PGLOG"; die "postmaster not running after pg_ctl start"; }
    wait_for_port "PostgreSQL" "$PG_PORT" 10 "$pid" "$PGLOG"
    ensure_db
    log "ready (pid $pid), DSN postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

cmd_stop() {
    local pid
    if pid=$(running_pid); then
        # SIGINT = "fast" shutdown (SIGTERM would be "smart" and wait for every client to leave).
        stop_pid "PostgreSQL" "$pid" INT 30
    else
        log "not running"
    fi
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        local port
        port=$(sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null || true)
        echo "postgres: running (pid $pid, 127.0.0.1:${port:-?}, $PGDATA)"
        return 0
    fi
    echo "postgres: stopped"
    return "$STATUS_STOPPED"
}

dispatch "$@"
