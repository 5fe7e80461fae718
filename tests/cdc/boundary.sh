#!/usr/bin/env bash
# cdc/ (the source) includes only its own headers, common/ and the queue's enqueue interface
# (queue/job.h, queue/enqueue.h): what it needs of the rest it declares in cdc/source.h
# (issue #13). Prints every include that crosses the boundary and fails on one.
set -euo pipefail
dir=${1:?usage: boundary.sh CDC_DIR}
[ -f "$dir/source.h" ] || { echo "no $dir/source.h: wrong directory?" >&2; exit 2; }
bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$dir" |
  grep -vE '#[[:space:]]*include[[:space:]]*"(cdc|common)/[^"]*"|#[[:space:]]*include[[:space:]]*"queue/(job|enqueue)\.h"' || true)
if [ -n "$bad" ]; then
  echo "cdc/ includes outside common/ and the queue's enqueue interface:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "cdc/ includes only cdc/, common/, queue/job.h and queue/enqueue.h"
