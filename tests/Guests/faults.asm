; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; faults: installs an IDT and takes #DE (DIV by zero), #UD (UD2), #BP (INT3), #GP from loading DS with a
; selector past the GDT limit, and #GP from loading SS with the null selector. Each handler prints one line:
; the vector, the error code (or "none" for exceptions that push none) and the saved EIP as an offset from
; the instruction that raised it (0 for faults, the instruction length for the INT3 trap), then resumes at
; the address the test put in `resume`. Exits through isa-debug-exit with 0x11 (status 35).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    ; Build the IDT: vectors 0-31 all go to their stub; one 8-byte interrupt gate each.
    xor ecx, ecx
.gate:
    mov eax, [stubs + ecx * 4]
    mov edi, idt
    call set_gate
    inc ecx
    cmp ecx, 32
    jb .gate
    lidt [idt_descriptor]

    ; #DE
    mov dword [fault_at], t_de
    mov dword [resume], t_de_done
    mov eax, 1
    xor edx, edx
    xor ecx, ecx
t_de:
    div ecx
t_de_done:

    ; #UD
    mov dword [fault_at], t_ud
    mov dword [resume], t_ud_done
t_ud:
    ud2
t_ud_done:

    ; #BP: a trap, the saved EIP is the next instruction
    mov dword [fault_at], t_bp
    mov dword [resume], t_bp_done
t_bp:
    int3
t_bp_done:

    ; #GP(0x18): selector 0x18 is past the 3-entry GDT
    mov dword [fault_at], t_gp
    mov dword [resume], t_gp_done
    mov ax, 0x18
t_gp:
    mov ds, ax
t_gp_done:

    ; #GP(0): the null selector cannot be loaded into SS
    mov dword [fault_at], t_gp0
    mov dword [resume], t_gp0_done
    xor eax, eax
t_gp0:
    mov ss, ax
t_gp0_done:

    mov esi, msg_done
    call puts
    mov al, 0x11
    jmp debug_exit

; Stubs: exceptions without an error code push a marker so every frame looks the same.
%define NO_ERROR 0xffffffff
%macro STUB 1
stub_%1:
%if %1 == 8 || (%1 >= 10 && %1 <= 14) || %1 == 17 || %1 == 21
%else
    push dword NO_ERROR
%endif
    push dword %1
    jmp common_handler
%endmacro
%assign v 0
%rep 32
    STUB v
%assign v v + 1
%endrep

; Frame: [esp] vector, [esp+4] error code, [esp+8] EIP, [esp+12] CS, [esp+16] EFLAGS.
common_handler:
    mov ax, 0x10                    ; the #GP tests leave DS as it was, but be safe
    mov ds, ax
    mov es, ax
    mov esi, msg_vector
    call puts
    mov eax, [esp]
    call put_hex8
    mov esi, msg_error
    call puts
    mov eax, [esp + 4]
    cmp eax, NO_ERROR
    jne .has_error
    mov esi, msg_none
    call puts
    jmp .eip
.has_error:
    call put_hex32
.eip:
    mov esi, msg_eip
    call puts
    mov eax, [esp + 8]
    sub eax, [fault_at]
    call put_hex8
    call newline
    mov eax, [resume]
    mov [esp + 8], eax
    add esp, 8
    iretd

align 4
stubs:
%assign v 0
%rep 32
    dd stub_ %+ v
%assign v v + 1
%endrep

idt_descriptor:
    dw 32 * 8 - 1
    dd idt

msg_banner: db "ActorVmm faults guest", 10, 0
msg_vector: db "exception vector=", 0
msg_error:  db " error=", 0
msg_none:   db "none", 0
msg_eip:    db " eip=+", 0
msg_done:   db "faults: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 8
idt:        resb 32 * 8
fault_at:   resd 1
resume:     resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
