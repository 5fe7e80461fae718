#!/usr/bin/env bash
# Install the built walfold .deb as an administrator would, check it, purge it, check what is left.
#
#   packaging/check-package.sh DEB        (e.g. build/deb/walfold_0.1.0_amd64.deb)
#
# Needs root (or sudo -n). It installs the package on this machine and purges it again, so it
# refuses to run when walfold is already installed, unless CI=true (a CI machine, where a
# previous run that died half-way may have left it): then that copy is purged first.
#
# 1. apt-get install ./walfold_*.deb
# 2. checks the installed files: binary, both units (systemd-analyze verify with the real
#    binary), conffile 0640 root:walfold, /etc/walfold 0750 root:walfold, /var/lib/walfold
#    walfold:walfold, the walfold system user, the unit not enabled;
# 3. runs `walfold --version` and checks the configuration from the installed paths as the
#    walfold user, and that another user cannot read the configuration;
# 4. apt-get purge -y walfold
# 5. checks that none of the package's files, /etc/walfold, /var/lib/walfold, the units'
#    enablement and the statoverrides are left; the walfold user is kept (packaging/README.md).
set -euo pipefail

deb=${1:?usage: check-package.sh DEB}
[ -f "$deb" ] || { echo "check-package: $deb not found" >&2; exit 1; }
deb=$(realpath -- "$deb")
say() { printf '\n-- %s\n' "$*"; }
fail() {
  printf 'check-package: FAIL: %s\n' "$*" >&2
  exit 1
}
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || fail "needs root (or sudo) to install and purge the package"
  sudo=(sudo -n)
fi
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600)

# True while dpkg has any trace of walfold (installed, half-installed, or removed with its
# conffiles still there).
installed() {
  local st
  st=$(dpkg-query -W -f='${db:Status-Status}' walfold 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != not-installed ]
}
if installed; then
  if [ "${CI:-}" = true ]; then
    say "walfold is installed (left by an earlier run?): purging it first"
    "${apt[@]}" purge walfold
  else
    fail "walfold is already installed here; this check installs and purges it (set CI=true to let it purge the installed copy)"
  fi
fi
# Purge it again if a check below fails, so a failed run leaves the machine as it was.
cleanup() {
  if [ "$?" -ne 0 ] && installed; then
    echo "check-package: purging walfold after the failure" >&2
    "${apt[@]}" purge walfold >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

version=$(dpkg-deb -f "$deb" Version)
say "apt-get install $deb (walfold $version)"
"${apt[@]}" install "$deb"

say "installed files"
# stat_is PATH OWNER:GROUP MODE
stat_is() {
  local got
  got=$(stat -c '%U:%G %a' -- "$1") || fail "$1 is missing"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
  echo "ok: $1 $got"
}
[ -x /usr/bin/walfold ] || fail "/usr/bin/walfold is not installed"
stat_is /etc/walfold root:walfold 750
stat_is /etc/walfold/walfold.yaml root:walfold 640
stat_is /var/lib/walfold walfold:walfold 750
grep -qx /etc/walfold/walfold.yaml <(dpkg-query --showformat='${Conffiles}\n' --show walfold | awk '{print $1}') ||
  fail "/etc/walfold/walfold.yaml is not a conffile"
echo "ok: /etc/walfold/walfold.yaml is a conffile"
getent passwd walfold >/dev/null || fail "no walfold system user"
shell=$(getent passwd walfold | cut -d: -f7)
case "$shell" in */nologin | */false) echo "ok: user walfold, shell $shell" ;; *) fail "user walfold has a login shell: $shell" ;; esac
unit_dir=
for d in /lib/systemd/system /usr/lib/systemd/system; do
  [ -f "$d/walfold.service" ] && [ -f "$d/walfold@.service" ] && { unit_dir=$d; break; }
done
[ -n "$unit_dir" ] || fail "walfold.service or walfold@.service is not installed"
# Not enabled at installation (packaging/README.md says why).
if [ -e /etc/systemd/system/multi-user.target.wants/walfold.service ]; then
  fail "walfold.service was enabled at installation"
fi
echo "ok: walfold.service is installed and not enabled"
verify_out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$unit_dir/walfold.service" walfold@ci.service 2>&1) ||
  fail "systemd-analyze verify: $verify_out"
if grep -qiE 'ignoring|unknown|not executable|failed' <<<"$verify_out"; then fail "systemd-analyze verify: $verify_out"; fi
echo "ok: systemd-analyze verify walfold.service walfold@ci.service${verify_out:+: $verify_out}"

say "walfold as user walfold, from the installed paths"
as_walfold() { "${sudo[@]}" runuser -u walfold -- "$@"; }
got=$(cd / && as_walfold /usr/bin/walfold --version)
[ "$got" = "walfold $version" ] || fail "walfold --version printed '$got', expected 'walfold $version'"
echo "ok: walfold --version: $got"
as_walfold test -r /etc/walfold/walfold.yaml || fail "user walfold cannot read /etc/walfold/walfold.yaml"
if "${sudo[@]}" runuser -u nobody -- test -r /etc/walfold/walfold.yaml; then
  fail "user nobody can read /etc/walfold/walfold.yaml"
fi
echo "ok: walfold can read /etc/walfold/walfold.yaml, nobody cannot"
out=$(cd / && as_walfold /usr/bin/walfold check-config --config /etc/walfold/walfold.yaml) ||
  fail "walfold check-config of the shipped configuration failed as user walfold: $out"
echo "ok: walfold check-config as user walfold: $out"

mapfile -t files < <(dpkg-query -L walfold | while IFS= read -r p; do [ -d "$p" ] || echo "$p"; done)
say "apt-get purge -y walfold"
"${apt[@]}" purge walfold

say "what is left after the purge"
left=()
for p in "${files[@]}"; do
  if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
done
for p in /etc/walfold /var/lib/walfold /usr/share/doc/walfold /usr/share/walfold \
  /etc/systemd/system/multi-user.target.wants/walfold.service /var/lib/systemd/deb-systemd-helper-enabled/walfold.service.dsh-also; do
  if [ -e "$p" ]; then left+=("$p"); fi
done
[ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
echo "ok: none of the package's ${#files[@]} files, /etc/walfold, /var/lib/walfold or the unit state is left"
if dpkg-statoverride --list | grep -q walfold; then fail "statoverrides left: $(dpkg-statoverride --list | grep walfold)"; fi
echo "ok: no dpkg-statoverride left"
if installed; then fail "dpkg still knows walfold: $(dpkg-query -W -f='${Status}' walfold)"; fi
# Kept on purpose, as Debian daemon packages do (packaging/README.md, "Removal and purge").
getent passwd walfold >/dev/null && echo "kept: the walfold system user and group (by policy)"
say "package check passed"
