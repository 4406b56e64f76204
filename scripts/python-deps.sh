#!/usr/bin/env bash
# Install iotjobs and its test tools into the current Python (3.11+), quietly, when anything is missing.
LOG_TAG=python
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PYTHON:-python3}
require_cmd "$PYTHON" "Python 3.11 or newer is needed"
"$PYTHON" - <<'PY' || die "Python 3.11 or newer is needed"
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
stamp=$RUN_DIR/python-deps.sha256
mkdir -p "$RUN_DIR"
want=$(sha256sum "$REPO_DIR/pyproject.toml" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PYTHON" -c "import iotjobs, aiokafka, boto3, awsiot, selenium" 2>/dev/null; then
    exit 0
fi
log "pip install -e '.[test]' (first run takes about a minute)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e "$REPO_DIR[test]" \
    || die "pip install failed"
echo "$want" >"$stamp"
