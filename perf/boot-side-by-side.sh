#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Side-by-side Linux boot time: the same kernel and initramfs under ActorVmm (-accel soft) and under QEMU TCG, on
# this machine, runs interleaved (ActorVmm, QEMU, ActorVmm, ...) so that load from other processes hits both alike.
#   usage: perf/boot-side-by-side.sh [runs]     (default 3 runs of each; needs a Release build of src/Host,
#                                                qemu-system-x86_64 and scripts/build-linux-guest.sh's artifacts)
#   LINUX_BOOT=auto|pvh|bzimage picks how ActorVmm enters the bzImage (default auto: PVH after the host unpacks
#   the vmlinux; bzimage runs the kernel's own decompressor, as QEMU does after SeaBIOS and linuxboot).
# Each run is timed from process start to the marker line the initramfs prints (ACTORVMM-GUEST-OK) and to the
# process's exit after the guest powers off (poweroff -f, ACPI S5; both VMMs exit 0). Prints every run, then the
# medians and the ratio ActorVmm / QEMU (below 1: ActorVmm is faster).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
linux_boot=${LINUX_BOOT:-auto}
kernel="$root/artifacts/linux/vmlinuz"
initrd="$root/artifacts/linux/initramfs-poweroff.cpio.gz"
append="console=ttyS0 quiet"
actorvmm="$root/src/Host/bin/Release/net10.0/actorvmm.dll"
marker=ACTORVMM-GUEST-OK
[ -f "$actorvmm" ] || { echo "boot-side-by-side: build first (dotnet build src/Host -c Release)" >&2; exit 1; }
[ -f "$kernel" ] && [ -f "$initrd" ] || { echo "boot-side-by-side: run scripts/build-linux-guest.sh first" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "boot-side-by-side: qemu-system-x86_64 not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }

# One boot; prints "seconds-to-marker seconds-to-exit". The serial console is read line by line as it arrives and
# the time of the marker line is taken then; the exit time is taken when the VMM process has ended.
boot_once() { # vmm
    rm -f "$work/marker" "$work/status"
    t0=$(now)
    {
        set +e
        if [ "$1" = qemu ]; then
            qemu-system-x86_64 -accel tcg -cpu qemu64,vendor=GenuineIntel -m 256 -kernel "$kernel" -initrd "$initrd" \
                -append "$append" -nographic -no-reboot </dev/null 2>"$work/stderr"
        else
            dotnet "$actorvmm" -accel soft -m 256 -kernel "$kernel" -initrd "$initrd" -append "$append" \
                -nographic -no-reboot --linux-boot "$linux_boot" </dev/null 2>"$work/stderr"
        fi
        echo $? >"$work/status"
    } | while IFS= read -r line; do
        case "$line" in
            *"$marker"*) [ -f "$work/marker" ] || now >"$work/marker" ;;
        esac
    done
    t2=$(now)
    status=$(cat "$work/status")
    [ "$status" = 0 ] || { echo "boot-side-by-side: $1 ended with status $status: $(tail -3 "$work/stderr")" >&2; exit 1; }
    [ -f "$work/marker" ] || { echo "boot-side-by-side: $1 never printed $marker" >&2; exit 1; }
    echo "$t0 $(cat "$work/marker") $t2" | awk '{ printf "%.3f %.3f", $2 - $1, $3 - $1 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "Linux boot, $runs runs each, interleaved; kernel $(basename "$kernel"), initrd $(basename "$initrd"), ActorVmm --linux-boot $linux_boot"
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
printf '%-4s %-9s %10s %10s\n' run vmm marker_s exit_s
: >"$work/actorvmm"
: >"$work/qemu"
i=1
while [ "$i" -le "$runs" ]; do
    for vmm in actorvmm qemu; do
        r=$(boot_once $vmm) || exit 1
        echo "$r" >>"$work/$vmm"
        printf '%-4s %-9s %10s %10s\n' "$i" "$vmm" $r
    done
    i=$((i + 1))
done
am=$(cut -d' ' -f1 "$work/actorvmm" | median); ae=$(cut -d' ' -f2 "$work/actorvmm" | median)
qm=$(cut -d' ' -f1 "$work/qemu" | median); qe=$(cut -d' ' -f2 "$work/qemu" | median)
echo "host load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
printf '%-22s %10s %10s\n' median marker_s exit_s
printf '%-22s %10s %10s\n' ActorVmm "$am" "$ae"
printf '%-22s %10s %10s\n' "QEMU TCG" "$qm" "$qe"
echo "$am $qm $ae $qe" | awk '{ printf "%-22s %10.2f %10.2f\n", "ratio ActorVmm/QEMU", $1 / $2, $3 / $4 }'
