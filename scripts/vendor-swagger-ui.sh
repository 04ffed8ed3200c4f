#!/usr/bin/env bash
# Vendors Swagger UI for the admin API's /docs page (served by the app itself, no CDN) from the
# pinned npm package: downloads it with `npm pack`, checks the registry's integrity hash, copies the
# few files the page needs into shared/api/static/swagger-ui/ and records their hashes in
# MANIFEST.json (the page's Subresource Integrity values; tests/unit/test_api_docs.py checks them).
# Run it to move to another version: change VERSION and INTEGRITY (`npm view swagger-ui-dist@X dist.integrity`).
set -euo pipefail
VERSION="5.35.0"
INTEGRITY="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)

here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/shared/api/static/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$work/swagger-ui-dist-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
  echo "swagger-ui-dist@$VERSION: integrity $got is not the pinned $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
rm -rf "$dest"
mkdir -p "$dest"
for f in "${FILES[@]}"; do cp "$work/package/$f" "$dest/$f"; done
python3 - "$dest" "$VERSION" "$INTEGRITY" "${FILES[@]}" <<'PY'
import base64, hashlib, json, sys
from pathlib import Path
dest, version, integrity, files = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
manifest = {
    "package": "swagger-ui-dist", "version": version, "npmIntegrity": integrity,
    "files": {f: "sha384-" + base64.b64encode(hashlib.sha384((dest / f).read_bytes()).digest()).decode() for f in files},
}
(dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
echo "vendored swagger-ui-dist@$VERSION into $dest"
