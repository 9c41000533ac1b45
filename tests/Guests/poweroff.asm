; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; poweroff: enters ACPI S5 the way an OS does: PM1a_CNT from the FADT (include/acpi.inc: 0x604 on QEMU's PIIX4,
; 0x404 on bhyve's layout, which -accel vmm has; 0x604 if there is no FADT), SLP_TYP = 0 for S5 (the DSDT's _S5 on
; both), then SLP_EN. The VMM ends the run with status 0 (QEMU too).
; It then waits in HLT with interrupts off, so a machine that fails to power off ends as a dead halt.

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    call acpi_pm_ports
    test ax, ax
    jnz .have_port
    mov ax, 0x604                   ; no FADT: the PIIX4's PM1a_CNT
.have_port:
    mov dx, ax
    mov ax, (0 << 10) | (1 << 13)   ; SLP_TYP = S5 (0 on this chipset), SLP_EN
    out dx, ax
    ; The VMM acts on the request asynchronously (QEMU's main loop takes it some time later), so wait in HLT
    ; with interrupts off: a machine that never stops ends as a dead halt (ActorVmm status 6) instead.
.halt:
    cli
    hlt
    jmp .halt

msg_banner: db "ActorVmm poweroff guest: entering ACPI S5", 10, 0

%include "include/runtime.inc"
%include "include/acpi.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
