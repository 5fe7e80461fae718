#!/usr/bin/env bash
# Lists the C/C++ functions longer than a limit (issue #13: "no function over ~80 lines"), the
# longest first, with their line span (first line of the definition to its closing brace,
# comments and blank lines included) and their place. It only reports: the exit status is 0
# whatever it finds, and when universal-ctags (apt-get install universal-ctags) is missing it
# says so and stops.
#
#   scripts/long-functions.sh [--limit N] [PATH...]     (default: 80 lines, every tracked file)
#
# Lambdas count as part of the function they are written in.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 0
limit=80
if [ "${1:-}" = "--limit" ]; then
  limit=${2:?--limit needs a number}
  shift 2
fi
if ! ctags --version 2>/dev/null | grep -q 'Universal Ctags'; then
  echo "long-functions: universal-ctags is not installed (apt-get install universal-ctags): not measured"
  exit 0
fi
mapfile -t files < <(git ls-files -- "${@:-.}" | grep -E '\.(c|cc|cpp|h|hpp)$')
if [ "${#files[@]}" -eq 0 ]; then
  echo "long-functions: no C/C++ files under ${*:-.}"
  exit 0
fi
# Function definitions (kind f) with their end line; anonymous lambdas are left to their parent.
# The rows, longest first, then one summary line.
rows=$(ctags --languages=C,C++ --kinds-C=f --kinds-C++=f --fields=+ne --extras=-F -o - "${files[@]}" \
  2>/dev/null |
  awk -F'\t' -v limit="$limit" '
    $1 !~ /^__anon/ {
      start = end = 0; scope = ""
      for (i = 4; i <= NF; i++) {
        if ($i ~ /^line:/) start = substr($i, 6)
        else if ($i ~ /^end:/) end = substr($i, 5)
        else if ($i ~ /^(class|struct|namespace):/) { scope = $i; sub(/^[a-z]+:/, "", scope) }
      }
      if (start == 0 || end == 0) next
      n = end - start + 1
      total++
      if (n <= limit) next
      name = $1
      gsub(/(^|::)__anon[0-9a-f]+/, "", scope)  # anonymous namespaces
      sub(/^::/, "", scope)
      if (scope != "") name = scope "::" $1
      printf "%5d  %s:%d  %s\n", n, $2, start, name
      over++
    }
    END { printf "~summary %d %d\n", over, total }')
summary=$(grep '^~summary' <<<"$rows")
grep -v '^~summary' <<<"$rows" | grep . | sort -rn
read -r _ over total <<<"$summary"
echo "long-functions: ${over:-0} of ${total:-0} functions are over $limit lines"
exit 0
