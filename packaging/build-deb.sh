#!/usr/bin/env bash
# Build the walfold .deb from this source tree without touching the tree.
#
#   packaging/build-deb.sh [OUTPUT_DIR]        (default: ./build-deb)
#
# 1. copies the tree (git ls-files: tracked + untracked-but-not-ignored files,
#    when it is a git work tree; else everything but .git and build dirs) to a
#    temporary directory and moves packaging/debian to debian/ there;
# 2. runs dpkg-buildpackage -us -uc -b with one job per CPU;
# 3. copies the resulting .deb(s) to OUTPUT_DIR;
# 4. runs lintian on them: prints everything, fails on errors and warnings;
# 5. if systemd-analyze exists: extracts the .deb into a temporary root, runs
#    `systemd-analyze verify` on both units there (walfold.service and the
#    walfold@.service template, as instance walfold@ci.service) and prints the
#    `systemd-analyze security --offline=yes` exposure of each.
#
# Environment:
#   WALFOLD_DEB_INSTALL=1     if verify cannot resolve the unit's binaries in
#                             the extracted root, install the .deb (dpkg -i)
#                             and verify the installed unit instead.
#   WALFOLD_MAX_EXPOSURE=N    fail when the exposure score is above N
#                             (default 2.0; "none" to only print it).
#   WALFOLD_KEEP_WORKDIR=1    keep the temporary directory (path printed).
#   DEB_BUILD_OPTIONS, DEB_BUILD_PROFILES are passed through as usual.
set -euo pipefail

die() { printf 'build-deb: error: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
out_arg=${1:-./build-deb}
mkdir -p -- "$out_arg"
out=$(cd -- "$out_arg" && pwd -P)

for tool in dpkg-buildpackage dpkg-deb dpkg-parsechangelog tar; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev build-essential)"
done
[ -d "$src/packaging/debian" ] || die "$src/packaging/debian does not exist"
[ -e "$src/debian" ] && die "$src/debian exists; this script expects the packaging in packaging/debian only"

work=$(mktemp -d "${TMPDIR:-/tmp}/walfold-deb.XXXXXXXX")
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ "${WALFOLD_KEEP_WORKDIR:-0}" = 1 ]; then
    echo "build-deb: kept work directory $work"
  else
    rm -rf -- "$work"
  fi
}
trap cleanup EXIT

version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
tree="$work/walfold-$version"
mkdir -p "$tree"

# The output directory may live inside the tree: never copy it.
out_rel=
case "$out/" in "$src"/*) out_rel=${out#"$src"/} ;; esac

say "copying $src to $tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files; skip tracked files deleted
  # from the work tree and the output directory.
  (
    cd "$src"
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do
        if [ -n "$out_rel" ]; then
          case "$f" in "$out_rel"/*) continue ;; esac
        fi
        if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
      done |
      tar --null --no-recursion -T - -cf -
  ) | tar -xf - -C "$tree"
else
  excludes=(--exclude=./.git --exclude='./build*' --exclude=./.wf)
  [ -n "$out_rel" ] && excludes+=(--exclude="./$out_rel")
  (cd "$src" && tar "${excludes[@]}" -cf - .) | tar -xf - -C "$tree"
fi
[ -d "$tree/packaging/debian" ] || die "packaging/debian was not copied (is it ignored by git?)"
mv "$tree/packaging/debian" "$tree/debian"

say "dpkg-buildpackage -us -uc -b -j$(nproc)"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b -j"$(nproc)"); then
  echo "build-deb: dpkg-buildpackage failed. Missing build dependencies? Install them with" >&2
  echo "  apt-get build-dep $tree   (or: mk-build-deps -i -r debian/control from devscripts)" >&2
  WALFOLD_KEEP_WORKDIR=1
  exit 1
fi

shopt -s nullglob
debs=("$work"/*.deb)
shopt -u nullglob
[ ${#debs[@]} -gt 0 ] || die "dpkg-buildpackage produced no .deb"
cp -f -- "${debs[@]}" "$out"/
main_deb=
for d in "${debs[@]}"; do
  case "$(basename "$d")" in walfold_*.deb) main_deb="$out/$(basename "$d")" ;; esac
done
[ -n "$main_deb" ] || die "no walfold_*.deb among: ${debs[*]}"
say "packages in $out"
for d in "${debs[@]}"; do ls -l "$out/$(basename "$d")"; done

status=0

# ---------------------------------------------------------------- lintian
if command -v lintian >/dev/null; then
  say "lintian --fail-on error,warning"
  # Every tag is printed (pedantic and info included); errors and warnings fail the build.
  lint_args=(--info --display-info --pedantic --tag-display-limit 0 --fail-on "error,warning")
  set +e
  lint_out=$(cd "$out" && lintian "${lint_args[@]}" "${debs[@]/#$work/$out}" 2>&1)
  lint_rc=$?
  set -e
  printf '%s\n' "${lint_out:-(no tags)}"
  if [ "$lint_rc" -ne 0 ]; then
    echo "build-deb: lintian reported errors or warnings, or failed (exit $lint_rc)" >&2
    status=1
  else
    echo "lintian: no errors or warnings (info and pedantic tags above do not fail the build)"
  fi
else
  echo "build-deb: lintian not installed (apt-get install lintian)" >&2
  status=1
fi

# -------------------------------------------------------- systemd-analyze
if command -v systemd-analyze >/dev/null; then
  root="$work/root"
  mkdir -p "$root"
  dpkg-deb -x "$main_deb" "$root"
  unit_dir=
  for p in lib/systemd/system usr/lib/systemd/system; do
    [ -f "$root/$p/walfold.service" ] && { unit_dir=$p; break; }
  done
  if [ -z "$unit_dir" ] || [ ! -f "$root/$unit_dir/walfold@.service" ]; then
    echo "build-deb: walfold.service or walfold@.service not found in $main_deb" >&2
    status=1
  else
    # verify --root resolves ExecStart=/usr/bin/walfold inside the extracted
    # package.  Seed that root with what the units need from the host without
    # overwriting the package's files: the host's unit files (sysinit.target,
    # network-online.target, ...) and the other Exec*= binaries (/bin/kill).
    # MANPATH lets the man:walfold(1) Documentation= link resolve.
    for d in /lib/systemd/system /usr/lib/systemd/system; do
      [ -d "$d" ] || continue
      mkdir -p "$root$d"
      tar -C "$d" --exclude='./walfold*' -cf - . | tar -C "$root$d" --skip-old-files -xf -
    done
    sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^[:space:]]*\).*/\1/p' "$root/$unit_dir/walfold.service" | sort -u |
      while IFS= read -r bin; do
        case "$bin" in /*) ;; *) continue ;; esac
        if [ ! -e "$root$bin" ] && [ -x "$bin" ]; then
          mkdir -p "$root$(dirname "$bin")" && cp -L "$bin" "$root$bin"
        fi
      done
    # The template is checked as an instance (verify and security need a full unit name).
    cp "$root/$unit_dir/walfold@.service" "$work/walfold@ci.service"
    verify() { # verify [--root=DIR] UNIT: fails on errors and on ignored lines
      local rc=0 out
      out=$(MANPATH="$root/usr/share/man:" SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$@" 2>&1) || rc=$?
      printf '%s\n' "${out:-(no output: the unit verifies cleanly)}"
      if [ "$rc" -eq 0 ] && grep -qiE 'ignoring|unknown|not executable|failed' <<<"$out"; then rc=1; fi
      return "$rc"
    }
    for unit in "$root/$unit_dir/walfold.service" "$work/walfold@ci.service"; do
      name=$(basename "$unit")
      say "systemd-analyze verify $name (extracted root)"
      verify_rc=0
      verify --root="$root" "$unit" || verify_rc=$?
      if [ "$verify_rc" -ne 0 ]; then
        if [ "${WALFOLD_DEB_INSTALL:-0}" = 1 ]; then
          say "verify failed in the extracted root; WALFOLD_DEB_INSTALL=1: dpkg -i $main_deb"
          dpkg -i "$main_deb"
          verify_rc=0
          verify "$unit" || verify_rc=$?
        else
          echo "build-deb: verify failed in the extracted root; rerun with WALFOLD_DEB_INSTALL=1 to verify after dpkg -i" >&2
        fi
        [ "$verify_rc" -eq 0 ] || status=1
      fi
      [ "$verify_rc" -eq 0 ] && echo "systemd-analyze verify $name: OK"

      say "systemd-analyze security --offline=yes $name"
      set +e
      sec_out=$(systemd-analyze security --offline=yes --root="$root" "$unit" 2>&1)
      sec_rc=$?
      set -e
      printf '%s\n' "$sec_out" | grep -E '^(✗|→|Overall)|exposure' || printf '%s\n' "$sec_out"
      score=$(printf '%s\n' "$sec_out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -n1)
      if [ -z "$score" ]; then
        echo "build-deb: could not read the exposure score of $name (exit $sec_rc)" >&2
        status=1
      else
        echo "exposure score of $name: $score"
        max=${WALFOLD_MAX_EXPOSURE:-2.0}
        if [ "$max" != none ] && awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
          echo "build-deb: exposure $score of $name is above WALFOLD_MAX_EXPOSURE=$max" >&2
          status=1
        fi
      fi
    done
  fi
else
  echo "build-deb: systemd-analyze not found (apt-get install systemd): the units were not checked" >&2
  status=1
fi

say "done: $(basename "$main_deb") in $out (status $status)"
exit "$status"
