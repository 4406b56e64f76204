#!/usr/bin/env bash
# Every test: installs what is missing (apt, pip, Maven), then runs unit, integration and end-to-end
# tests against real Kafka, PostgreSQL and Mosquitto that the tests start on free ports.
#
#   scripts/test.sh [pytest args...]
LOG_TAG=test
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PYTHON:-python3}
for server in postgres mosquitto kafka; do
    "$SCRIPTS_DIR/$server.sh" install
done
"$SCRIPTS_DIR/python-deps.sh"
cd "$REPO_DIR"
set +e
"$PYTHON" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    die "pytest collected no tests"
fi
exit "$rc"
