#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Builds the test guests in tests/Guests into multiboot kernels.
#   usage: scripts/build-guests.sh [outdir]     (default: artifacts/guests under the repository root)
# Every tests/Guests/*.asm becomes NAME.bin (nasm -f bin: a flat image with the multiboot a.out kludge);
# the guests listed in ELF_GUESTS also become NAME.elf (nasm -f elf32, linked with ld -m elf_i386 at 1 MiB).
set -eu

ELF_GUESTS="hello"

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/artifacts/guests"}
src="$root/tests/Guests"

if ! command -v nasm >/dev/null 2>&1; then
    echo "build-guests: nasm not found; install it (Debian/Ubuntu: sudo apt-get install nasm)" >&2
    exit 1
fi
if ! command -v ld >/dev/null 2>&1 || ! ld -V 2>/dev/null | grep -q elf_i386; then
    echo "build-guests: GNU ld with the elf_i386 emulation not found; install binutils (Debian/Ubuntu: sudo apt-get install binutils)" >&2
    exit 1
fi

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ld 2.39+ warns about the single RWX segment a flat guest has; older versions lack the option.
ldflags=""
if ld --help 2>/dev/null | grep -q -- --no-warn-rwx-segments; then
    ldflags="--no-warn-rwx-segments"
fi

for asm in "$src"/*.asm; do
    name=$(basename "$asm" .asm)
    nasm -f bin -I"$src/" -o "$tmp/$name.bin" "$asm"
    mv "$tmp/$name.bin" "$out/$name.bin"
    echo "built $out/$name.bin"
    for e in $ELF_GUESTS; do
        if [ "$e" = "$name" ]; then
            nasm -f elf32 -I"$src/" -o "$tmp/$name.o" "$asm"
            # shellcheck disable=SC2086
            ld -m elf_i386 -Ttext=0x100000 -e entry $ldflags -o "$tmp/$name.elf" "$tmp/$name.o"
            mv "$tmp/$name.elf" "$out/$name.elf"
            echo "built $out/$name.elf"
        fi
    done
done
