; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; devices: touches every platform device of the PC machine outside the interrupt controllers and timers, so
; a test can put a fault into any device's actor and see it on the guest's path. In order: COM1 (the
; driver of runtime.inc, for every line), the debug console at 0xe9 (writes a line, reads the Bochs
; readback 0xe9), the PCI host bridge (CONFIG_ADDRESS 0x80000000, then the vendor/device dword of 00.0),
; fw_cfg (selector 0x0000, four signature bytes from the data port), port 0x92, the reset control register
; 0xcf9 (read only), the i8042 status register, the boot-timer port 0x440 (one write, then a read that is
; not printed, so the guest goes on only once the write is done). Each value read is
; printed (port 0x92 without A20 and the i8042 status without SYS and CMD/DATA, the bits firmware changes:
; QEMU boots a multiboot kernel through SeaBIOS, ActorVmm loads it directly), so a lost or failed access
; shows in the output. Output under QEMU 7.2: tests/Actors/FaultMatrixTests.cs. Exits through isa-debug-exit with 0x18 (status 49).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    ; debugcon: a line out, the readback in.
    mov esi, msg_debugcon
.dc:
    lodsb
    test al, al
    jz .dc_done
    out 0xe9, al
    jmp .dc
.dc_done:
    mov esi, msg_dc_readback
    call puts
    in al, 0xe9
    call put_hex8
    call newline

    ; PCI 00.0 vendor and device ID through configuration mechanism #1.
    mov esi, msg_pci
    call puts
    mov dx, 0xcf8
    mov eax, 0x80000000
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    call put_hex32
    call newline

    ; fw_cfg signature.
    mov esi, msg_fwcfg
    call puts
    mov dx, 0x510
    xor ax, ax
    out dx, ax
    mov dx, 0x511
    mov ecx, 4
.sig:
    in al, dx
    call putc
    loop .sig
    call newline

    mov esi, msg_port92
    call puts
    in al, 0x92
    and al, 0xfd                ; without A20 (bit 1), which firmware (SeaBIOS under QEMU) turns on
    call put_hex8
    call newline

    mov esi, msg_cf9
    call puts
    mov dx, 0xcf9
    in al, dx
    call put_hex8
    call newline

    mov esi, msg_i8042
    call puts
    in al, 0x64
    and al, 0xf3                ; without SYS (bit 2) and CMD/DATA (bit 3), which depend on firmware having run
    call put_hex8
    call newline

    mov dx, 0x440
    mov al, 1
    out dx, al
    in al, dx                   ; not printed: waits until the write is done wherever the port is served
    mov esi, msg_done
    call puts

    mov al, 0x18
    jmp debug_exit

msg_banner:       db "ActorVmm devices guest", 10, 0
msg_debugcon:     db "devices guest on debugcon", 10, 0
msg_dc_readback:  db "debugcon readback: ", 0
msg_pci:          db "pci 00.0 id: ", 0
msg_fwcfg:        db "fw_cfg signature: ", 0
msg_port92:       db "port 0x92: ", 0
msg_cf9:          db "port 0xcf9: ", 0
msg_i8042:        db "i8042 status: ", 0
msg_done:         db "all devices answered", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
