#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Builds the Linux test guest from Debian packages, without touching the host's /boot or installing a kernel:
#   usage: scripts/build-linux-guest.sh [outdir]     (default: artifacts/linux under the repository root)
# Steps:
#   1. apt-get download linux-image-amd64 (the metapackage), the linux-image-* package it depends on and
#      busybox-static into OUTDIR/debs, and unpack each with dpkg-deb -x into OUTDIR/pkgs (nothing is installed;
#      only the package archive is used);
#   2. copies the kernel to OUTDIR/vmlinuz (a bzImage) and busybox to the staging trees;
#   3. writes two initramfs archives (cpio newc, gzip), each with busybox, a link for every applet, /dev/console,
#      /dev/null and /dev/ttyS0 (created by busybox cpio from a list, so no mknod and no root are needed), and
#      its own /init:
#        initramfs.cpio.gz           mounts /proc and /sys, prints "ACTORVMM-GUEST-OK ..." and starts a shell
#                                    on the console;
#        initramfs-poweroff.cpio.gz  prints the marker, runs a small workload (sha256sum of a generated
#                                    sequence, a shell arithmetic loop), prints "ACTORVMM-GUEST-POWEROFF" and
#                                    runs poweroff -f;
#        initramfs-panic.cpio.gz     prints the marker, loads the pvpanic driver, says how many pvpanic devices it
#                                    bound, and panics the kernel (sysrq c).
# Safe to run again: packages already downloaded are kept. Needs apt-get (Debian/Ubuntu) and gzip.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/artifacts/linux"}
mkdir -p "$out/debs" "$out/pkgs"
out=$(cd "$out" && pwd)

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd=sudo

fetch() { # fetch PACKAGE: download its .deb into $out/debs unless one is there
    if ! ls "$out/debs/$1"_*.deb >/dev/null 2>&1; then
        (cd "$out/debs" && apt-get download "$1" >/dev/null) || {
            echo "build-linux-guest: apt-get download $1 failed; running apt-get update once and retrying" >&2
            $sudo_cmd apt-get update -qq
            (cd "$out/debs" && apt-get download "$1" >/dev/null)
        }
    fi
    ls "$out/debs/$1"_*.deb | tail -n 1
}

meta=$(fetch linux-image-amd64)
# The metapackage depends on exactly one versioned image package: linux-image-6.1.0-NN-amd64 (= version).
image_pkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
if [ -z "$image_pkg" ]; then
    echo "build-linux-guest: $meta names no linux-image-* dependency" >&2
    exit 1
fi
image_deb=$(fetch "$image_pkg")
busybox_deb=$(fetch busybox-static)

for deb in "$image_deb" "$busybox_deb"; do
    name=$(dpkg-deb -f "$deb" Package)
    [ -d "$out/pkgs/$name" ] || dpkg-deb -x "$deb" "$out/pkgs/$name"
done

kernel=$(ls "$out/pkgs/$image_pkg"/boot/vmlinuz-* | head -n 1)
cp "$kernel" "$out/vmlinuz"
busybox="$out/pkgs/busybox-static/bin/busybox"
[ -x "$busybox" ] || { echo "build-linux-guest: $busybox missing from busybox-static" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# stage NAME: a root tree with busybox and its applet links (the /init is written by the caller).
stage() {
    d="$tmp/$1"
    mkdir -p "$d/bin" "$d/sbin" "$d/usr/bin" "$d/usr/sbin" "$d/proc" "$d/sys" "$d/dev" "$d/tmp" "$d/root" "$d/etc"
    cp "$busybox" "$d/bin/busybox"
    "$busybox" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        ln -sf /bin/busybox "$d/$applet"
    done
}

# node NAME MODE MAJOR MINOR: one cpio newc record for a device node (110-byte header, name padded to 4).
node() {
    n=$((${#1} + 1))
    printf '070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s' \
        0 "$2" 0 0 1 0 0 0 0 "$3" "$4" "$n" 0 "$1"
    head -c $((1 + (4 - (110 + n) % 4) % 4)) /dev/zero
}

# pack NAME ARCHIVE: the tree as cpio newc (busybox cpio), then a second archive with the device nodes (the
# kernel unpacks concatenated archives in order; busybox cpio -o cannot make nodes without mknod and root),
# gzip -9.
pack() {
    d="$tmp/$1"
    (cd "$d" && find . | sort | "$busybox" cpio -o -H newc 2>/dev/null) > "$tmp/$1.cpio"
    {
        node dev/console $((0020600)) 5 1
        node dev/null $((0020666)) 1 3
        node dev/ttyS0 $((0020660)) 4 64
        node TRAILER!!! 0 0 0
        head -c 512 /dev/zero
    } >> "$tmp/$1.cpio"
    gzip -9 -n -c "$tmp/$1.cpio" > "$2.tmp"
    mv "$2.tmp" "$2"
    echo "built $2 ($(wc -c < "$2") bytes)"
}

stage shell
cat > "$tmp/shell/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "ACTORVMM-GUEST-OK kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) uptime=$(cut -d' ' -f1 /proc/uptime)s"
exec setsid cttyhack sh
EOF
chmod 755 "$tmp/shell/init"
pack shell "$out/initramfs.cpio.gz"

stage poweroff
cat > "$tmp/poweroff/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "ACTORVMM-GUEST-OK kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) uptime=$(cut -d' ' -f1 /proc/uptime)s"
sum=$(seq 1 20000 | sha256sum | cut -d' ' -f1)
i=0; acc=0
while [ $i -lt 5000 ]; do acc=$(( (acc * 31 + i) % 1000003 )); i=$((i + 1)); done
echo "ACTORVMM-WORKLOAD sha256=$sum acc=$acc"
echo "ACTORVMM-GUEST-POWEROFF uptime=$(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF
chmod 755 "$tmp/poweroff/init"
pack poweroff "$out/initramfs-poweroff.cpio.gz"

# The panic image: loads Debian's pvpanic driver (pvpanic.ko, then pvpanic-mmio.ko, which binds to the ACPI device
# QEMU0001 that -device pvpanic describes) and crashes the kernel with sysrq 'c'; the panic notifier reports it on
# the pvpanic port, and the VMM's -action panic= decides what follows.
stage panic
moddir=$(ls -d "$out/pkgs/$image_pkg"/lib/modules/*/kernel/drivers/misc/pvpanic)
mkdir -p "$tmp/panic/lib/modules"
cp "$moddir/pvpanic.ko" "$moddir/pvpanic-mmio.ko" "$tmp/panic/lib/modules/"
cat > "$tmp/panic/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "ACTORVMM-GUEST-OK kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) uptime=$(cut -d' ' -f1 /proc/uptime)s"
insmod /lib/modules/pvpanic.ko && insmod /lib/modules/pvpanic-mmio.ko
echo "ACTORVMM-GUEST-PVPANIC $(ls /sys/bus/platform/drivers/pvpanic-mmio 2>/dev/null | grep -c QEMU0001) device(s)"
echo c > /proc/sysrq-trigger
echo "ACTORVMM-GUEST-SURVIVED-PANIC"
EOF
chmod 755 "$tmp/panic/init"
pack panic "$out/initramfs-panic.cpio.gz"

echo "kernel: $out/vmlinuz ($image_pkg)"
