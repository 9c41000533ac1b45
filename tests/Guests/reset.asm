; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; reset: asks the i8042 keyboard controller to pulse the CPU reset line (command 0xFE on port 0x64), the way
; Linux's reboot=k does. With -no-reboot the VMM ends the run instead of rebooting (QEMU: status 0). It then
; waits in HLT with interrupts off, so a machine that fails to reset ends as a dead halt.

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
.wait_ibf:
    in al, 0x64                 ; wait until the controller's input buffer is empty
    test al, 0x02
    jnz .wait_ibf
    mov al, 0xfe
    out 0x64, al
    ; The VMM acts on the request asynchronously (QEMU's main loop takes it some time later), so wait in HLT
    ; with interrupts off: a machine that never stops ends as a dead halt (ActorVmm status 6) instead.
.halt:
    cli
    hlt
    jmp .halt

msg_banner: db "ActorVmm reset guest: pulsing the reset line through the i8042", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
