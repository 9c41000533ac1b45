#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine to build, run and test ActorVmm:
#   - Debian packages: nasm and binutils (to assemble the test guests), qemu-system-x86 (the reference the
#     tests compare against), acpica-tools (iasl, which checks the DSDT ActorVmm writes), seabios (the BIOS
#     image -bios boots: /usr/share/seabios/bios.bin), gcc and linux-libc-dev (the KVM layout tests compile a C
#     program against linux/kvm.h);
#   - the guest programs under tests/Guests, assembled into artifacts/guests;
#   - the Linux guest (scripts/build-linux-guest.sh: Debian's kernel and busybox-static from the package archive,
#     and the initramfs images) in artifacts/linux, unless ACTORVMM_NO_LINUX=1;
#   - a Release build of the solution.
# Needs the .NET 10 SDK on PATH. Safe to run again: it installs only what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need=()
command -v nasm >/dev/null || need+=(nasm)
command -v ld >/dev/null || need+=(binutils)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v iasl >/dev/null || need+=(acpica-tools)
[ -f /usr/share/seabios/bios.bin ] || need+=(seabios)
command -v gcc >/dev/null || need+=(gcc)                          # KVM layout tests compile against linux/kvm.h
[ -f /usr/include/linux/kvm.h ] || need+=(linux-libc-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null; then
    echo "setup: the .NET 10 SDK is required (dotnet on PATH)" >&2
    exit 1
fi

scripts/build-guests.sh artifacts/guests >&2
if [ "${ACTORVMM_NO_LINUX:-0}" != 1 ]; then
    scripts/build-linux-guest.sh artifacts/linux >&2
fi
dotnet build -c Release --nologo -v quiet ActorVmm.sln >&2
