; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; reset: asks the i8042 keyboard controller to pulse the CPU reset line (command 0xFE on port 0x64), the way
; Linux's reboot=k does. With -no-reboot the VMM ends the run instead of rebooting (QEMU: status 0). Should the
; reset not happen, the guest reports it and exits through isa-debug-exit with 0x13 (status 39).

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
    mov ecx, 100000             ; the reset takes effect at once on a VMM; give real hardware time
.spin:
    loop .spin
    mov esi, msg_failed
    call puts
    mov al, 0x13
    jmp debug_exit

msg_banner: db "ActorVmm reset guest: pulsing the reset line through the i8042", 10, 0
msg_failed: db "reset: still running", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
