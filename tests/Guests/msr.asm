; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; msr: reads the architectural MSRs whose reset values the SDM fixes (APIC base, PAT, EFER), MTRRcap, writes
; and reads back PAT and an MTRR, and checks that a reserved PAT memory type, an EFER bit the CPU does not
; offer and an MSR that does not exist each raise #GP(0); the TSC MSR moves forward. Checks CPUID first:
; RDMSR exists only when CPUID.1:EDX.MSR is set. Exits with 0x16 (status 45).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    xor ecx, ecx
.gate:
    mov eax, fault
    mov edi, idt
    call set_gate
    inc ecx
    cmp ecx, 32
    jb .gate
    lidt [idt_descriptor]

    mov eax, 1
    cpuid
    mov esi, msg_nomsr
    test edx, 1 << 5
    jz .out

    mov ecx, 0x1b
    call show_msr
    mov ecx, 0x277
    call show_msr
    mov ecx, 0xc0000080
    call show_msr
    mov ecx, 0xfe
    call show_msr

    ; PAT: write a valid layout and read it back.
    mov ecx, 0x277
    mov eax, 0x00010406
    mov edx, 0x00070105
    wrmsr
    call show_msr
    ; MTRR physical base 0: write and read back.
    mov ecx, 0x200
    mov eax, 0x00000006
    xor edx, edx
    wrmsr
    call show_msr

    ; #GP cases: each handler line names the vector and error code.
    mov esi, msg_gp_pat
    call puts
    mov dword [resume], .after_pat
    mov ecx, 0x277
    mov eax, 0x02
    xor edx, edx
    wrmsr
.after_pat:
    mov esi, msg_gp_efer
    call puts
    mov dword [resume], .after_efer
    mov ecx, 0xc0000080
    mov eax, 1 << 8                 ; LME: #GP unless CPUID offers long mode
    xor edx, edx
    mov ebx, 0x80000000
    xchg eax, ebx
    cpuid                           ; CPUID.80000001:EDX.LM tells whether writing LME is allowed
    xchg eax, ebx
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jnz .lm_present
    mov ecx, 0xc0000080
    mov eax, 1 << 8
    xor edx, edx
    wrmsr
    jmp .after_efer
.lm_present:
    mov esi, msg_lm
    call puts
.after_efer:
    mov esi, msg_gp_none
    call puts
    mov dword [resume], .after_none
    mov ecx, 0x4b564dff             ; not an MSR of any Intel CPU
    rdmsr
.after_none:

    ; TSC MSR moves forward.
    mov ecx, 0x10
    rdmsr
    mov ebx, eax
    mov ecx, 1000
.spin:
    loop .spin
    mov ecx, 0x10
    rdmsr
    mov esi, msg_tsc_bad
    cmp eax, ebx
    je .out
    mov esi, msg_tsc_ok
.out:
    call puts
    mov esi, msg_done
    call puts
    mov al, 0x16
    jmp debug_exit

; Prints "msr XXXXXXXX = HHHHHHHHLLLLLLLL" for the MSR in ecx.
show_msr:
    push ecx
    mov esi, msg_msr
    call puts
    mov eax, ecx
    call put_hex32
    mov esi, msg_eq
    call puts
    rdmsr
    push eax
    mov eax, edx
    call put_hex32
    pop eax
    call put_hex32
    call newline
    pop ecx
    ret

; Every exception: print vector 13's error code (the only one this guest expects) and resume.
fault:
    mov esi, msg_fault
    call puts
    mov eax, [esp]
    call put_hex32
    call newline
    add esp, 4
    mov eax, [resume]
    mov [esp], eax
    iretd

idt_descriptor:
    dw 32 * 8 - 1
    dd idt

msg_banner:  db "ActorVmm msr guest", 10, 0
msg_nomsr:   db "cpuid: no MSR support", 10, 0
msg_msr:     db "msr ", 0
msg_eq:      db " = ", 0
msg_gp_pat:  db "pat with a reserved type: ", 0
msg_gp_efer: db "efer.lme without long mode: ", 0
msg_lm:      db "long mode offered", 10, 0
msg_gp_none: db "msr that does not exist: ", 0
msg_fault:   db "#GP error=", 0
msg_tsc_ok:  db "tsc msr: advancing", 10, 0
msg_tsc_bad: db "tsc msr: stuck", 10, 0
msg_done:    db "msr: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 8
idt:        resb 32 * 8
resume:     resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
