; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; poweroff: enters ACPI S5 the way an OS does after reading the FADT and the DSDT's _S5 package on a PC
; (PIIX4 PM1a_CNT at 0x604: SLP_TYP = 0 for S5, then SLP_EN). The VMM ends the run with status 0 (QEMU too).
; Should the machine keep running, the guest reports it and exits through isa-debug-exit with 0x14 (status 41).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    mov dx, 0x604
    mov ax, (0 << 10) | (1 << 13)   ; SLP_TYP = S5 (0 on this chipset), SLP_EN
    out dx, ax
    mov ecx, 100000
.spin:
    loop .spin
    mov esi, msg_failed
    call puts
    mov al, 0x14
    jmp debug_exit

msg_banner: db "ActorVmm poweroff guest: entering ACPI S5", 10, 0
msg_failed: db "poweroff: still running", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
