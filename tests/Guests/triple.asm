; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; triple: prints a line, loads an empty IDT (limit 0) and executes INT3. The #BP cannot be delivered
; (#GP), neither can the #GP (#DF), nor the #DF: the processor shuts down (triple fault). With
; -no-reboot QEMU then exits with status 0. Should the CPU ever come back, the guest says so and exits
; through isa-debug-exit with 0x12 (status 37), which a test can tell apart.

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    lidt [empty_idt]
    int3
    xor edx, edx
    xor ecx, ecx
    div ecx
    mov esi, msg_survived
    call puts
    mov al, 0x12
    jmp debug_exit

empty_idt:
    dw 0
    dd 0

msg_banner:   db "ActorVmm triple guest: about to triple fault", 10, 0
msg_survived: db "triple: STILL RUNNING", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
