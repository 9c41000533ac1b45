; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; singlestep: EFLAGS.TF single-step traps (#DB, vector 1). POPF sets TF: the trap follows each instruction after
; it, never the POPF itself nor the handler's IRET; a POPF clearing TF still traps once (TF was set when it
; started); INT3 runs its handler with TF clear and is not followed by a trap of its own; MOV SS holds the trap
; off for one instruction. The #DB handler counts traps, records the saved EIPs and DR6.BS, and returns.
; Every line is architectural, so it reads the same under QEMU. Exits with 0x17 (status 47).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    mov ecx, 1
    mov eax, db_handler
    mov edi, idt
    call set_gate
    mov ecx, 3
    mov eax, bp_handler
    call set_gate
    lidt [idt_descriptor]

    ; 1. Six traps: after nop, nop, nop, pushfd, and, popfd (the last clears TF but started with it).
    mov dword [count], 0
    pushfd
    or dword [esp], 0x100
    popfd
s1:
    nop
s2:
    nop
s3:
    nop
s4:
    pushfd
s5:
    and dword [esp], ~0x100
s6:
    popfd
s7:
    mov esi, msg_count
    call puts
    mov eax, [count]
    call put_hex8
    mov esi, msg_eips
    call puts
    mov ecx, 0
.eips:
    mov eax, [eips + ecx * 4]
    sub eax, s1
    call put_hex8
    mov al, ' '
    call putc
    inc ecx
    cmp ecx, [count]
    jb .eips
    call newline
    mov esi, msg_dr6
    call puts
    mov eax, [dr6_saved]
    and eax, 0x4000
    call put_hex32
    call newline

    ; 2. INT3 under TF: its handler runs with TF clear; the next trap follows the instruction after INT3.
    mov dword [count], 0
    mov dword [bp_seen], 0
    pushfd
    or dword [esp], 0x100
    popfd
t1:
    int3
t2:
    nop
t3:
    pushfd
    and dword [esp], ~0x100
    popfd
    mov esi, msg_int3
    call puts
    mov eax, [bp_seen]
    call put_hex8
    mov al, ' '
    call putc
    mov eax, [eips]
    sub eax, t1
    call put_hex8
    mov al, ' '
    call putc
    mov eax, [count]
    call put_hex8
    call newline

    ; 3. MOV SS holds the trap off for one instruction: no trap after it, one after the next.
    mov dword [count], 0
    pushfd
    or dword [esp], 0x100
    popfd
u1:
    mov ax, ss
u2:
    mov ss, ax
u3:
    nop
u4:
    nop
u5:
    pushfd
    and dword [esp], ~0x100
    popfd
    mov esi, msg_movss
    call puts
    mov ecx, 0
.ueips:
    mov eax, [eips + ecx * 4]
    sub eax, u1
    call put_hex8
    mov al, ' '
    call putc
    inc ecx
    cmp ecx, 3
    jb .ueips
    call newline

    mov esi, msg_done
    call puts
    mov al, 0x17
    jmp debug_exit

db_handler:
    push eax
    push ecx
    mov ecx, [count]
    mov eax, [esp + 8]              ; saved EIP
    cmp ecx, 16
    jae .full
    mov [eips + ecx * 4], eax
.full:
    inc dword [count]
    mov eax, dr6
    mov [dr6_saved], eax
    xor eax, eax
    mov dr6, eax                    ; the handler clears DR6, as an OS does
    pop ecx
    pop eax
    iretd

bp_handler:
    push eax
    pushfd
    pop eax
    and eax, 0x100                  ; TF as the handler sees it
    or eax, 1                       ; 1: the handler ran
    mov [bp_seen], eax
    pop eax
    iretd

%include "include/runtime.inc"

msg_banner: db "singlestep: TF traps", 10, 0
msg_count:  db "traps after popf(TF=1): ", 0
msg_eips:   db ", eips from s1: ", 0
msg_dr6:    db "dr6.bs in the handler: ", 0
msg_int3:   db "int3 handler (1 = ran with TF clear), first trap eip from t1, traps: ", 0
msg_movss:  db "mov ss: trap eips from u1: ", 0
msg_done:   db "singlestep: done", 10, 0

align 8
idt_descriptor:
    dw 32 * 8 - 1
    dd idt

section .bss
alignb 8
idt:     resb 32 * 8
count:   resd 1
bp_seen: resd 1
dr6_saved: resd 1
eips:    resd 16
alignb 16
         resb 4096
stack_top:

%include "include/footer.inc"
