#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install dependencies from apt, build with
# -Werror, run unit tests, then build, lint, install and purge the Debian package, then
# integration tests against real PostgreSQL 15 and Redis and the MongoDB stand-in (or
# WALFOLD_TEST_MONGODB_URI), then the same under ASan+UBSan, then the format check. Servers are
# private: loopback, free ports, temporary directories.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)
start=$(date +%s)
phase() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

phase "dependencies"
bash tests/harness/servers.sh install-deps

if [ -n "${WALFOLD_TEST_MONGODB_URI:-}" ]; then
  echo "MongoDB for this run: real server at ${WALFOLD_TEST_MONGODB_URI%%@*}..." | sed 's#//[^@]*@#//***@#'
else
  echo "MongoDB for this run: the stand-in (tests/harness/mongo_standin.py); set WALFOLD_TEST_MONGODB_URI for a real one"
fi

phase "build (-Werror)"
cmake -S . -B build/ci -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWALFOLD_WERROR=ON >/dev/null
cmake --build build/ci -j "$jobs"

phase "unit tests"
ctest --test-dir build/ci -L unit --output-on-failure -j "$jobs" --no-tests=error

phase "Debian package: dpkg-buildpackage, lintian, install, run as walfold, purge"
# packaging/README.md: build-deb.sh builds the .deb in a copy of the tree (lintian --fail-on
# error,warning; systemd-analyze verify/security on both units); check-package.sh installs it with
# apt-get, runs walfold from the installed paths as user walfold, purges it, checks what is left.
rm -rf build/deb
bash packaging/build-deb.sh build/deb
bash packaging/check-package.sh build/deb/walfold_*_"$(dpkg --print-architecture)".deb

phase "integration tests (PostgreSQL, Redis, MongoDB)"
ctest --test-dir build/ci -L integration --output-on-failure --no-tests=error --timeout 900

phase "build with AddressSanitizer + UndefinedBehaviorSanitizer"
# Also instrumented for line coverage: the sanitizer run is the complete one (unit and
# integration), so its counts are the suite's coverage, reported after it.
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWALFOLD_WERROR=ON -DWALFOLD_SANITIZE=ON -DWALFOLD_COVERAGE=ON -DWALFOLD_BUILD_BENCH=OFF >/dev/null
find build/asan -name '*.gcda' -delete
cmake --build build/asan -j "$jobs"

phase "unit and integration tests under ASan+UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build/asan -L 'unit|integration' -E mongo_standin_selftest --output-on-failure --no-tests=error --timeout 900

phase "line coverage (gcovr, the ASan run's unit and integration tests)"
# Sources of walfold only (not the tests, the harness or the benchmarks); every process the
# tests start (the daemon under SIGTERM included) writes its counts when it exits.
if gcovr --root . --object-directory build/asan --exclude 'tests/' --exclude 'bench/' --exclude 'build/' \
  --gcov-ignore-parse-errors --txt build/asan/coverage.txt --html-details build/asan/coverage.html \
  --print-summary build/asan; then
  cat build/asan/coverage.txt
else
  echo "gcovr failed: line coverage not reported"
fi

phase "clang-format"
files=$(git ls-files '*.cpp' '*.h' 2>/dev/null || find . -name '*.cpp' -o -name '*.h' | grep -v build/)
clang-format --dry-run --Werror $files

phase "functions over 80 lines (a report, not a gate)"
bash scripts/long-functions.sh || true

phase "done"
# The status page as the browser test saw it (tests/observe/observe_it.cpp): a CI artifact.
for shot in build/ci/artifacts/status-page.png build/asan/artifacts/status-page.png; do
  [ -f "$shot" ] && echo "status page screenshot: $root/$shot"
done
true
