#!/usr/bin/env bash
# Install (if missing) and run all local servers: PostgreSQL, Mosquitto, Kafka.
#
#   scripts/servers.sh {up|down|status}
#
#   up      install + start each server (idempotent: running servers are left alone)
#   down    stop each server (harmless when already stopped)
#   status  print each server's state; exit 0 if all run, 3 if any is stopped, 1 on error
#
# Environment variables are those of scripts/{postgres,mosquitto,kafka}.sh and lib.sh.
LOG_TAG=servers
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

SERVERS=(postgres mosquitto kafka)

run() {  # run SERVER SUBCOMMAND
    "$SCRIPTS_DIR/$1.sh" "$2"
}

case ${1:-} in
    up)
        t0=$SECONDS
        for s in "${SERVERS[@]}"; do
            run "$s" install || die "$s install failed"
            run "$s" start || die "$s start failed"
        done
        log "all servers up in $((SECONDS - t0))s (run dir $RUN_DIR)"
        ;;
    down)
        rc=0
        # Reverse order; keep going if one fails so the others are still stopped.
        for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
            run "${SERVERS[i]}" stop || { warn "${SERVERS[i]} stop failed"; rc=1; }
        done
        exit "$rc"
        ;;
    status)
        rc=0
        # 0 = all running, 3 = some stopped, 1 = a status check itself failed
        for s in "${SERVERS[@]}"; do
            r=0
            run "$s" status || r=$?
            if [ "$r" = "$STATUS_STOPPED" ] && [ "$rc" = 0 ]; then
                rc=$STATUS_STOPPED
            elif [ "$r" != 0 ] && [ "$r" != "$STATUS_STOPPED" ]; then
                rc=1
            fi
        done
        exit "$rc"
        ;;
    *)
        echo "usage: $(basename -- "$0") {up|down|status}" >&2
        exit 2
        ;;
esac
