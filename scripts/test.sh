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
# The dashboard's browser test drives Debian's chromium through its chromedriver; its vendoring check runs npm.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi
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
