; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; A guest loop for side-by-side speed runs (perf/side-by-side.sh): a multiboot kernel that runs ITER
; iterations of one loop body, then leaves through isa-debug-exit. Built with
;   nasm -f bin -I tests/Guests/ -DITER=n -DKIND=k [-DLONG] perf/guests/loop.asm
; KIND 1 = integer ALU, 2 = memory (loads and stores), 3 = branchy. LONG runs the loop in 64-bit mode
; (4-level paging, 2 MiB pages) instead of 32-bit protected mode. The ALU and memory bodies are 8 instructions
; per iteration including the loop's own DEC/JNZ; the branchy one averages 7.5 (its ADD runs every other time).

%include "include/multiboot.inc"
%include "include/runtime.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
%ifdef LONG
    mov eax, pdpt
    or eax, 3
    mov [pml4], eax
    mov eax, pd
    or eax, 3
    mov [pdpt], eax
    xor ecx, ecx
.pd:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [pd + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jb .pd
    lgdt [gdt64_descriptor]
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x10:body
bits 64
%endif

%ifdef LONG
    %define PTR rsi
%else
    %define PTR esi
%endif

body:
    mov ecx, ITER
    mov esi, buffer
    xor eax, eax
    mov ebx, 0x12345678
    xor edx, edx
    xor edi, edi
%if KIND == 1
.loop:
    add eax, ebx
    xor ebx, eax
    shl eax, 1
    adc edx, eax
    inc edi
    sub ebx, edi
    dec ecx
    jnz .loop
%elif KIND == 2
.loop:
    mov eax, [PTR + 4]
    add [PTR + 8], eax
    mov edx, [PTR + 12]
    mov [PTR + 16], edx
    add eax, [PTR + 20]
    mov [PTR + 24], eax
    dec ecx
    jnz .loop
%else
.loop:
    inc eax
    test eax, 1
    jz .even
    add edx, eax
.even:
    cmp eax, ebx
    jne .next
    xor edx, edx
.next:
    dec ecx
    jnz .loop
%endif
    xor eax, eax
    out 0xf4, al            ; isa-debug-exit: status 1
.halt:
    hlt
    jmp .halt

bits 32
align 8
gdt64:
    dq 0
    dq 0x00cf9a000000ffff
    dq 0x00af9a000000ffff   ; 0x10: 64-bit code
    dq 0x00cf92000000ffff
gdt64_end:
gdt64_descriptor:
    dw gdt64_end - gdt64 - 1
    dd gdt64

section .bss
alignb 4096
pml4:   resb 4096
pdpt:   resb 4096
pd:     resb 4096
buffer: resb 4096
        resb 4096
stack_top:

%include "include/footer.inc"
