#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Side-by-side speed of the software CPU and QEMU's TCG on the same guest loops, on this machine, in one run.
#   usage: perf/side-by-side.sh [iterations]   (default 20000000 loop iterations for ActorVmm and 20 times as many
#                                               for QEMU; needs nasm, qemu-system-x86_64 and a Release build)
# Each loop (perf/guests/loop.asm: integer ALU, memory, branchy; 32-bit protected mode and 64-bit mode) is
# built with 1/10 and with all of the iterations, and each build runs under its VMM; the time difference between
# the two runs divided by the instruction difference cancels start-up (the .NET host, QEMU's SeaBIOS) and gives
# the instruction rate. Prints MIPS for each and the ratio ActorVmm / QEMU.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
iter=${1:-20000000}
out="$root/artifacts/perf"
mkdir -p "$out"
actorvmm="$root/src/Host/bin/Release/net10.0/actorvmm.dll"
[ -f "$actorvmm" ] || { echo "side-by-side: build first (scripts/setup.sh)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "side-by-side: qemu-system-x86_64 not found" >&2; exit 1; }

now() { date +%s.%N; }

# Prints the wall time of one run; checks the guest left through isa-debug-exit (status 1).
run_time() { # vmm kernel
    t0=$(now)
    set +e
    if [ "$1" = qemu ]; then
        qemu-system-x86_64 -accel tcg -cpu qemu64,vendor=GenuineIntel -m 64 -kernel "$2" -display none -monitor none \
            -serial none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 >/dev/null 2>&1
    else
        dotnet "$actorvmm" -accel soft -m 64 -kernel "$2" -nographic -no-reboot \
            -device isa-debug-exit,iobase=0xf4,iosize=4 >/dev/null 2>&1
    fi
    status=$?
    set -e
    t1=$(now)
    [ "$status" = 1 ] || { echo "side-by-side: $1 on $2 ended with status $status" >&2; exit 1; }
    echo "$t0 $t1" | awk '{ printf "%.4f", $2 - $1 }'
}

printf '%-16s %12s %12s %10s\n' loop "ActorVmm MIPS" "QEMU MIPS" ratio
for mode in 32 64; do
    for kind in 1 2 3; do
        name=$(echo "alu memory branchy" | cut -d' ' -f$kind)
        flags=""
        [ "$mode" = 64 ] && flags="-DLONG"
        # Instructions per iteration: 8, 8, and 7.5 for the branchy loop (its ADD runs every other time).
        per=$(echo "8 8 7.5" | cut -d' ' -f$kind)
        line="$name/$mode-bit"
        rates=""
        for vmm in actorvmm qemu; do
            big=$iter
            [ "$vmm" = qemu ] && big=$((iter * 20))
            small=$((big / 10))
            for n in "$small" "$big"; do
                nasm -f bin -I "$root/tests/Guests/" -DITER=$n -DKIND=$kind $flags -o "$out/loop-$mode-$kind-$n.bin" "$root/perf/guests/loop.asm"
            done
            ts=$(run_time $vmm "$out/loop-$mode-$kind-$small.bin")
            tb=$(run_time $vmm "$out/loop-$mode-$kind-$big.bin")
            rates="$rates $(echo "$ts $tb $big $small $per" | awk '{ d = $2 - $1; if (d <= 0) d = 0.001; printf "%.1f", ($3 - $4) * $5 / d / 1e6 }')"
        done
        echo "$line $rates" | awk '{ printf "%-16s %12s %12s %10.3f\n", $1, $2, $3, $2 / $3 }'
    done
done
