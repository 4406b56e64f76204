#!/usr/bin/env bash
# The dashboard's front-end libraries, reproducibly: `npm ci` installs exactly what
# services/control/dashboard/package-lock.json pins (npm checks each tarball against its integrity), then
# the files package.json names under "vendor" are copied into services/control/dashboard/static/vendor,
# with vendored.json recording each file's package, version, lock integrity and sha256.
#
#   scripts/vendor-dashboard.sh          refresh static/vendor (commit the result)
#   scripts/vendor-dashboard.sh --check  fail unless static/vendor is exactly what `npm ci` gives
#
# To move to another version: edit package.json's pinned version, run
# `npm install --package-lock-only --ignore-scripts` in services/control/dashboard, then this script.
LOG_TAG=vendor-dashboard
# shellcheck source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

require_cmd npm "install Node.js and npm (Debian: apt-get install npm)"
PYTHON=${PYTHON:-python3}
DASHBOARD=$REPO_DIR/services/control/dashboard
check=0
case ${1:-} in
    --check) check=1 ;;
    "") ;;
    *) die "usage: $(basename -- "$0") [--check]" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$DASHBOARD/package.json" "$DASHBOARD/package-lock.json" "$work/"
log "npm ci (versions and integrity from package-lock.json)"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"

out=$work/vendor
"$PYTHON" - "$work" "$out" <<'PY'
import hashlib, json, pathlib, shutil, sys

work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
lock = json.loads((work / "package-lock.json").read_text())["packages"]
manifest = {}
out.mkdir()
for name, source in json.loads((work / "package.json").read_text())["vendor"].items():
    # The package is the path's first segment, or its first two for a scoped package (@scope/name/...).
    parts = source.split("/")
    package = "/".join(parts[:2] if parts[0].startswith("@") else parts[:1])
    entry = lock[f"node_modules/{package}"]
    shutil.copyfile(work / "node_modules" / source, out / name)
    manifest[name] = {
        "package": package,
        "version": entry["version"],
        "integrity": entry["integrity"],
        "source": source,
        "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest(),
    }
(out / "vendored.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
PY

if [ "$check" = 1 ]; then
    if ! diff -r "$out" "$DASHBOARD/static/vendor" >"$work/diff" 2>&1; then
        head -n 20 "$work/diff" >&2
        die "services/control/dashboard/static/vendor differs from what npm ci gives: run scripts/vendor-dashboard.sh"
    fi
    log "static/vendor is exactly what npm ci gives"
else
    rm -rf "$DASHBOARD/static/vendor"
    cp -r "$out" "$DASHBOARD/static/vendor"
    log "vendored into services/control/dashboard/static/vendor"
fi
