; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; pvpanic: the ISA pvpanic device at port 0x505 (-device pvpanic). Reads and prints the features byte (bit 0
; PANICKED, bit 1 CRASH_LOADED), reports a panic (writes bit 0), then keeps running for a while (about 50 million
; LOOP iterations) and, if the machine is still running, says so and exits through isa-debug-exit with 0x19
; (status 51). What the VMM does with the panic is -action panic=: shutdown (the default) ends the run with
; status 0 before the guest says anything more; none lets the guest go on to status 51; pause stops it.

%include "include/multiboot.inc"

PVPANIC equ 0x505

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    mov dx, PVPANIC
    in al, dx
    call put_hex8
    call newline
    mov al, 1                       ; PANICKED
    out dx, al
    mov ecx, 50000000
.spin:
    loop .spin
    mov esi, msg_went_on
    call puts
    mov al, 0x19
    jmp debug_exit

msg_banner: db "ActorVmm pvpanic guest: features ", 0
msg_went_on: db "the guest went on after its panic report", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
