#!/usr/bin/env bash
# Rebuild the served tracker from its source after editing tracker.js:
#   bash scripts/build-tracker.sh
# Needs Node.js (npx fetches terser from the npm registry). The header names the
# source's SHA-256, so a test notices a source edited without a rebuild.
# passes=2: the second pass inlines the constants the source names (EVENT_TYPES,
# STORAGE_KEYS): 47 bytes less gzipped, of the 2,048 the tests allow.
set -euo pipefail
cd "$(dirname "$0")/../src/nilemetrics/server/static"
sha=$(sha256sum tracker.js | cut -c1-16)
{
    printf '/*! nilemetrics tracker | source sha256 %s */\n' "$sha"
    npx --yes terser@5.51.4 tracker.js --compress passes=2 --mangle --ecma 2020 --comments false
} > tracker.min.js.tmp
mv tracker.min.js.tmp tracker.min.js
printf 'tracker.min.js: %s bytes, %s gzipped\n' "$(wc -c < tracker.min.js)" "$(gzip -9c tracker.min.js | wc -c)"
