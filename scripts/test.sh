#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the test suites, then prints one closing line "N passed, N failed, N skipped".
#   scripts/test.sh          all suites
#   scripts/test.sh --fast   skips tests marked [Trait("Category", "Slow")]: the QEMU comparisons, the silicon
#                            differential run and the 80286 vectors (about a minute of the total)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

filter=()
if [ "${1:-}" = "--fast" ]; then
    filter=(--filter "Category!=Slow")
    export ACTORVMM_NO_LINUX=1 # the Linux guest is for the slow suites only
fi

scripts/setup.sh
log=$(mktemp)
status=0
dotnet test ActorVmm.sln -c Release --no-build --nologo "${filter[@]}" 2>&1 | tee "$log" || status=$?

# dotnet test prints one "Passed!/Failed!  - Failed: a, Passed: b, Skipped: c, Total: d" line per test project.
awk '/ - Failed: *[0-9]+, Passed: *[0-9]+, Skipped: *[0-9]+/ {
        gsub(/,/, ""); for (i = 1; i <= NF; i++) {
            if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s; if (p == 0) exit 1 }' "$log" || status=1
rm -f "$log"
exit $status
