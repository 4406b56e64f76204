# shellcheck shell=bash
# Shared helpers for scripts/{kafka,postgres,mosquitto,servers}.sh. Source it, do not execute it.
#
#   IOTJOBS_RUN_DIR    pid files, server data and logs   (default: <repo>/.run)
#   IOTJOBS_CACHE_DIR  downloaded artifacts (Kafka jars)  (default: $HOME/.cache/iotjobs)
#   IOTJOBS_FIX_PERMS  1 = chmod o+x parent directories the postgres/mosquitto users cannot enter
#                      (default: fail with a message that names them)

set -euo pipefail

SCRIPTS_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(cd -- "$SCRIPTS_DIR/.." && pwd -P)
RUN_DIR=${IOTJOBS_RUN_DIR:-$REPO_DIR/.run}
CACHE_DIR=${IOTJOBS_CACHE_DIR:-${HOME:-/root}/.cache/iotjobs}
# Relative paths from the environment are taken relative to the caller's cwd.
case $RUN_DIR in /*) ;; *) RUN_DIR=$PWD/$RUN_DIR ;; esac
case $CACHE_DIR in /*) ;; *) CACHE_DIR=$PWD/$CACHE_DIR ;; esac

LOG_TAG=${LOG_TAG:-$(basename -- "$0" .sh)}

log()  { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$LOG_TAG" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# Exit status of `status` when the server is not running.
# shellcheck disable=SC2034  # used by the scripts that source this file
readonly STATUS_STOPPED=3

is_root() { [ "$(id -u)" = 0 ]; }

require_cmd() {  # require_cmd CMD [HINT]
    command -v "$1" >/dev/null 2>&1 || die "required command '$1' not found${2:+ ($2)}"
}

# Validate a TCP port number coming from the environment.
check_port_number() {  # check_port_number NAME VALUE
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
        die "$1 must be a TCP port number, got '$2'"
    fi
}

# ---------------------------------------------------------------------------------------------
# apt
# ---------------------------------------------------------------------------------------------
_APT_UPDATED=0
# apt_install PKG...: `apt-get update` once per process, then a quiet non-interactive install.
apt_install() {
    is_root || die "packages missing ($*) and not running as root: install them with apt-get first"
    require_cmd apt-get "this helper only supports Debian/Ubuntu"
    local out
    out=$(mktemp)
    if [ "$_APT_UPDATED" = 0 ]; then
        log "apt-get update"
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -q >"$out" 2>&1; then
            cat "$out" >&2; rm -f "$out"; die "apt-get update failed"
        fi
        _APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    # DPkg::Lock::Timeout: wait for a concurrent apt/dpkg instead of failing at once.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o DPkg::Lock::Timeout=300 "$@" >"$out" 2>&1; then
        tail -n 30 "$out" >&2; rm -f "$out"; die "apt-get install $* failed"
    fi
    rm -f "$out"
}

# ---------------------------------------------------------------------------------------------
# pid files and processes
# ---------------------------------------------------------------------------------------------
# pid_alive PID: true if PID exists and is not a zombie.
pid_alive() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
    [ "$state" != Z ]
}

# pid_matches PID PATTERN: the process command line contains PATTERN (guards against pid reuse).
pid_matches() {
    local pid=$1 pattern=$2 cmdline
    [ -n "$pattern" ] || return 0
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    [[ $cmdline == *"$pattern"* ]]
}

# pidfile_pid FILE [PATTERN]: print the pid from FILE if that process is alive (and matches
# PATTERN); return 1 otherwise. Only the first line of FILE is read (postmaster.pid format).
pidfile_pid() {
    local file=$1 pattern=${2:-} pid
    [ -f "$file" ] || return 1
    pid=$(head -n 1 "$file" 2>/dev/null | tr -d '[:space:]')
    pid_alive "$pid" || return 1
    pid_matches "$pid" "$pattern" || return 1
    printf '%s\n' "$pid"
}

# write_pidfile FILE PID
write_pidfile() { printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"; }

# stop_pid NAME PID [SIGNAL=TERM] [TIMEOUT_S=30]: signal, wait (bounded), then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 sig=${3:-TERM} timeout=${4:-30} i
    pid_alive "$pid" || { log "$name (pid $pid) already gone"; return 0; }
    log "stopping $name (pid $pid, SIG$sig, up to ${timeout}s)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pid" || { log "$name stopped"; return 0; }
        sleep 0.1
    done
    warn "$name (pid $pid) still running after ${timeout}s: sending SIGKILL"
    kill -s KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || { log "$name killed"; return 0; }
        sleep 0.1
    done
    die "$name (pid $pid) did not exit even after SIGKILL"
}

# ---------------------------------------------------------------------------------------------
# TCP ports
# ---------------------------------------------------------------------------------------------
# port_open PORT [HOST=127.0.0.1]: true if something accepts TCP connections there.
port_open() {
    local port=$1 host=${2:-127.0.0.1}
    # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# require_port_free NAME PORT: fail if another process already listens on PORT.
require_port_free() {
    local name=$1 port=$2
    if port_open "$port"; then
        local who=""
        command -v ss >/dev/null 2>&1 && who=$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 3 || true)
        die "$name: port $port on 127.0.0.1 is already in use by another process${who:+:
$who}"
    fi
}

# wait_for_port NAME PORT TIMEOUT_S [PID] [LOGFILE...]: wait until PORT accepts connections.
# Fails loudly (log tails, exit 1) on timeout or if PID dies first.
wait_for_port() {
    local name=$1 port=$2 timeout=$3 pid=${4:-} deadline f
    shift 3; shift || true
    deadline=$((SECONDS + timeout))
    while ! port_open "$port"; do
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            for f in "$@"; do show_log_tail "$f"; done
            die "$name exited before opening port $port"
        fi
        if ((SECONDS >= deadline)); then
            for f in "$@"; do show_log_tail "$f"; done
            die "$name did not open port $port within ${timeout}s"
        fi
        sleep 0.1
    done
}

# show_log_tail FILE [LINES=40]: print the end of a log to stderr (no-op if FILE is empty/absent).
show_log_tail() {
    local file=${1:-} lines=${2:-40}
    [ -n "$file" ] && [ -s "$file" ] || return 0
    printf '[%s] ---- last %s lines of %s ----\n' "$LOG_TAG" "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2 || true
    printf '[%s] ---- end of %s ----\n' "$LOG_TAG" "$file" >&2
}

# ---------------------------------------------------------------------------------------------
# Directories shared with unprivileged server users (postgres, mosquitto)
# ---------------------------------------------------------------------------------------------
# ensure_traversable USER DIR: make sure USER can reach DIR (search permission on every
# ancestor). With IOTJOBS_FIX_PERMS=1 the missing o+x bits are added; otherwise fail and say how.
ensure_traversable() {
    local user=$1 dir=$2 d blocked=()
    is_root || return 0   # not root: servers run as the current user, nothing to do
    if runuser -u "$user" -- test -x "$dir" 2>/dev/null; then return 0; fi
    d=$dir
    while [ "$d" != / ]; do
        d=$(dirname -- "$d")
        if ! runuser -u "$user" -- test -x "$d" 2>/dev/null; then blocked=("$d" "${blocked[@]}"); fi
    done
    [ ${#blocked[@]} -gt 0 ] || return 0  # DIR itself is the problem; caller chowns it
    # Only the outermost blocked directory matters for the message; fix all of them if asked.
    if [ "${IOTJOBS_FIX_PERMS:-0}" = 1 ]; then
        for d in "${blocked[@]}"; do
            log "chmod o+x $d (so that user $user can reach $dir)"
            chmod o+x "$d"
        done
        runuser -u "$user" -- test -x "$(dirname -- "$dir")" \
            || die "user $user still cannot reach $dir after chmod o+x"
        return 0
    fi
    die "user '$user' cannot traverse ${blocked[*]} (needed to reach $dir).
    Fix: chmod o+x ${blocked[*]}
      or rerun with IOTJOBS_FIX_PERMS=1 (does that chmod for you)
      or set IOTJOBS_RUN_DIR to a path under a world-traversable directory, e.g. /tmp/iotjobs-run"
}

# ---------------------------------------------------------------------------------------------
# Subcommand dispatch
# ---------------------------------------------------------------------------------------------
# dispatch "$@": call cmd_<subcommand>; the script defines cmd_install/start/stop/status.
dispatch() {
    local sub=${1:-}
    case $sub in
        install | start | stop | status | restart)
            shift
            if [ "$sub" = restart ]; then cmd_stop "$@"; cmd_start "$@"; return; fi
            "cmd_$sub" "$@"
            ;;
        reload)
            declare -F cmd_reload >/dev/null || die "$(basename -- "$0") has no reload"
            shift
            cmd_reload "$@"
            ;;
        *)
            echo "usage: $(basename -- "$0") {install|start|stop|status|restart$(declare -F cmd_reload >/dev/null && echo '|reload')}" >&2
            exit 2
            ;;
    esac
}
