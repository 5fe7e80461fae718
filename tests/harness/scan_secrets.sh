#!/usr/bin/env bash
# The suite-wide password scan (issue #10): no known test password may appear in anything a test
# run captured: the servers' logs (PostgreSQL's own included), the logs of every process the
# tests started, the files tests wrote next to their configurations, and ctest's record of every
# test's output. Runs as the last integration test, before the servers are stopped.
#
# Usage: scan_secrets.sh SERVERS_DIR BUILD_DIR
# The passwords: the `walfold` role's (SERVERS_DIR/env) and those tests made up
# (SERVERS_DIR/test-secrets, one a line). Only file names are printed, never what matched.
set -euo pipefail
dir=${1:?usage: scan_secrets.sh SERVERS_DIR BUILD_DIR}
build=${2:?usage: scan_secrets.sh SERVERS_DIR BUILD_DIR}
[[ -f "$dir/env" ]] || { echo "scan_secrets: $dir/env is missing: the servers were never started" >&2; exit 1; }

secrets=$(mktemp)
trap 'rm -f "$secrets"' EXIT
(
  # shellcheck disable=SC1091
  . "$dir/env"
  printf '%s\n' "${WALFOLD_TEST_PG_REPL_PASSWORD:?no WALFOLD_TEST_PG_REPL_PASSWORD in $dir/env}"
) >"$secrets"
if [[ -f "$dir/test-secrets" ]]; then grep -v '^$' "$dir/test-secrets" >>"$secrets" || true; fi

# A scan that cannot see what it looks for would pass forever: the role's password is in
# SERVERS_DIR/env (which is not scanned), so grep must find it there.
grep -qF -f "$secrets" "$dir/env" || { echo "scan_secrets: the scan cannot find the password in $dir/env" >&2; exit 1; }

tmp=${TMPDIR:-/tmp}
files=()
while IFS= read -r -d '' f; do files+=("$f"); done < <(
  find "$dir" -maxdepth 1 -type f -name '*.log' -print0
  # Process logs and the tests' own directories (BankEnv's /tmp/wf-env-*), from this run only;
  # *.secret are the password files tests hand to walfold.
  find "$tmp" -maxdepth 1 -type f -name 'walfold-proc-*.log' -newer "$dir/env" -print0
  find "$tmp" -maxdepth 3 -path "$tmp/wf-*" -type f -newer "$dir/env" ! -name '*.secret' -print0
  find "$build/Testing/Temporary" -maxdepth 1 -type f -name 'LastTest*.log' -print0 2>/dev/null
)
[[ -f "$dir/pg.log" ]] || { echo "scan_secrets: $dir/pg.log is missing" >&2; exit 1; }

leaks=$(grep -lF -f "$secrets" "${files[@]}" 2>/dev/null || true)
if [[ -n "$leaks" ]]; then
  echo "scan_secrets: a test password appears in:" >&2
  printf '  %s\n' $leaks >&2
  exit 1
fi
echo "scan_secrets: $(wc -l <"$secrets") passwords, ${#files[@]} files: none found"
