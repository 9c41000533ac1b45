; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; longmode: from the multiboot entry (32-bit protected mode) into IA-32e mode and back. 4-level paging with
; 2 MiB and 4 KiB pages and a second mapping of low memory at the top of the address space; a 64-bit IDT
; (16-byte gates) whose handlers print the vector, error code and CR2 and resume: #PF for a not-present page,
; a write to a read-only page and a fetch from an XD page (EFER.NXE), #DE from a 64-bit DIV by zero and from a
; quotient too wide, #UD, INT3 (a trap: it returns to the next instruction) and #GP for a non-canonical address.
; Then a 64-bit checksum (xorshift64, FNV-1a, 128-bit MUL and DIV, RIP-relative data), ring 3 through IRETQ,
; INT3 from ring 3 on the TSS's RSP0 stack, SYSCALL/SYSRET with SWAPGS, compatibility-mode code, and the way
; back: CR0.PG off leaves IA-32e mode, EFER.LME off, and a RET to the 32-bit caller. Every line is
; architectural, so it reads the same under QEMU. Exits with 0x16 (status 45).

%include "include/multiboot.inc"
%include "include/runtime.inc"

%define HIGH_ALIAS   0xffffff8000000000  ; PML4 slot 511 maps the same first GiB
%define TEST_BASE    0x800000            ; 8 MiB: the 2 MiB slot mapped with 4 KiB pages
%define PAGE_RW      (TEST_BASE)
%define PAGE_RO      (TEST_BASE + 0x1000)
%define PAGE_XD      (TEST_BASE + 0x2000)
%define PAGE_MISSING (TEST_BASE + 0x3000)
%define UNMAPPED     0x0000004000000000  ; PDPT slot 256 of PML4 slot 0: not present

%define SEL_CODE32   0x08
%define SEL_CODE64   0x10
%define SEL_DATA     0x18
%define SEL_UCODE32  0x20
%define SEL_UDATA    0x28
%define SEL_UCODE64  0x30
%define SEL_TSS      0x38

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    ; What the CPU offers for long mode: LM, NX and SYSCALL in CPUID 0x80000001 EDX.
    mov eax, 0x80000001
    cpuid
    and edx, (1 << 29) | (1 << 20) | (1 << 11)
    mov esi, msg_cpuid
    call puts
    mov eax, edx
    call put_hex32
    call newline

    call long_mode_test                 ; returns here in 32-bit protected mode, paging off

    mov esi, msg_back
    call puts
    mov eax, cr0
    and eax, 0x80000001
    call put_hex32
    mov esi, msg_efer
    call puts
    mov ecx, 0xc0000080
    rdmsr
    call put_hex32
    call newline
    mov esi, msg_result
    call puts
    mov eax, [checksum + 4]
    call put_hex32
    mov eax, [checksum]
    call put_hex32
    call newline
    mov esi, msg_done
    call puts
    mov al, 0x16
    jmp debug_exit

; --- 32-bit: build the tables and enter IA-32e mode --------------------------------------------------------
long_mode_test:
    pushad
    mov [saved_esp], esp

    ; PML4[0] and PML4[511] -> pdpt; pdpt[0] -> pd; pd: 2 MiB pages for the first GiB, except slot 4 (8 MiB),
    ; which is a 4 KiB page table. Everything is user-accessible, so ring 3 can run the same code.
    mov eax, pdpt
    or eax, 7
    mov [pml4], eax
    mov [pml4 + 511 * 8], eax
    mov eax, pd
    or eax, 7
    mov [pdpt], eax
    xor ecx, ecx
.pd:
    mov eax, ecx
    shl eax, 21
    or eax, 0x87                        ; present, writable, user, 2 MiB
    mov [pd + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jb .pd
    mov eax, pt
    or eax, 7
    mov [pd + 4 * 8], eax
    mov dword [pt + 0 * 8], PAGE_RW | 7
    mov dword [pt + 1 * 8], PAGE_RO | 5             ; read-only
    mov dword [pt + 2 * 8], PAGE_XD | 7
    mov dword [pt + 2 * 8 + 4], 0x80000000          ; XD
    ; pt[3] (PAGE_MISSING) stays not present
    mov byte [PAGE_XD], 0xc3                        ; a RET that must not run

    ; 64-bit TSS: RSP0 for ring 3 -> ring 0, IST1 for #DF (unused but set, as an OS does).
    mov dword [tss + 4], kstack_top
    mov dword [tss + 0x24], dfstack_top
    mov word [tss + 0x66], 104                      ; no I/O bitmap
    mov eax, tss
    mov [gdt64 + SEL_TSS + 2], ax
    shr eax, 16
    mov [gdt64 + SEL_TSS + 4], al
    mov [gdt64 + SEL_TSS + 7], ah

    lgdt [gdt64_descriptor]
    mov eax, cr4
    or eax, 0x20                        ; PAE
    mov cr4, eax
    mov eax, pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x901                       ; SCE, LME, NXE
    wrmsr
    mov eax, cr0
    or eax, 0x80000000                  ; PG: IA-32e mode is now active, still in compatibility mode
    mov cr0, eax
    jmp SEL_CODE64:long64

bits 64
long64:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, esp                        ; RSP = the 32-bit ESP, zero-extended
    lea rsi, [rel msg_in64]
    call puts64
    mov ecx, 0xc0000080
    rdmsr
    call hex32_64
    mov al, ' '
    call putc64
    mov ax, cs
    call hex8_64
    call newline64

    ; IDT: 16-byte interrupt gates to the stubs; INT3's gate is DPL 3 so ring 3 may use it.
    lea rdi, [rel idt64]
    lea rbx, [rel stubs]
    xor ecx, ecx
.gate:
    mov rax, rbx
    mov [rdi], ax
    mov word [rdi + 2], SEL_CODE64
    mov word [rdi + 4], 0x8e00
    cmp ecx, 3
    jne .dpl0
    mov word [rdi + 4], 0xee00
.dpl0:
    cmp ecx, 8
    jne .noist
    mov byte [rdi + 4], 1               ; #DF on IST1
.noist:
    shr rax, 16
    mov [rdi + 6], ax
    shr rax, 16
    mov [rdi + 8], eax
    mov dword [rdi + 12], 0
    add rdi, 16
    add rbx, stub_size
    inc ecx
    cmp ecx, 32
    jb .gate
    lidt [rel idt64_descriptor]
    mov ax, SEL_TSS
    ltr ax
    mov rax, cr0
    or eax, 0x10000                     ; WP: read-only pages are read-only for the supervisor too
    mov cr0, rax

    ; The same memory through the top of the address space.
    mov rax, 0x0123456789abcdef
    mov rbx, HIGH_ALIAS
    lea rdx, [rel scratch]
    mov [rbx + rdx], rax
    lea rsi, [rel msg_alias]
    call puts64
    mov rax, [rel scratch]
    call hex64
    call newline64

    ; Faults; each handler prints and resumes at [resume].
    lea rax, [rel .f1]
    mov [rel resume], rax
    mov rax, [PAGE_MISSING]
.f1:
    lea rax, [rel .f2]
    mov [rel resume], rax
    mov rax, UNMAPPED
    mov byte [rax + 0x123], 1
.f2:
    lea rax, [rel .f3]
    mov [rel resume], rax
    mov qword [PAGE_RO + 8], 5
.f3:
    lea rax, [rel .f4]
    mov [rel resume], rax
    mov rax, PAGE_XD
    jmp rax
.f4:
    lea rax, [rel .f5]
    mov [rel resume], rax
    xor edx, edx
    mov rax, 1234
    xor ecx, ecx
    div rcx
.f5:
    lea rax, [rel .f6]
    mov [rel resume], rax
    mov rdx, 5
    mov rax, 0
    mov rcx, 5
    div rcx                             ; quotient 2^64: too wide
.f6:
    lea rax, [rel .f7]
    mov [rel resume], rax
    ud2
.f7:
    lea rax, [rel .f8]
    mov [rel resume], rax
    mov rax, 0x8000000000000000
    mov rax, [rax]
.f8:
    mov qword [rel resume], 0
    int3                                ; a trap: returns right after
    lea rsi, [rel msg_after_int3]
    call puts64

    ; With CR0.WP clear the supervisor may write the read-only page.
    mov rax, cr0
    and eax, ~0x10000
    mov cr0, rax
    mov qword [PAGE_RO + 16], 7
    mov rax, [PAGE_RO + 16]
    lea rsi, [rel msg_rw]
    call puts64
    call hex8_64
    call newline64

    call checksum64

    ; Ring 3: IRETQ to user code; it takes INT3 on the RSP0 stack, then makes two system calls.
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, (SEL_UCODE32 << 16) | SEL_CODE64   ; SYSRET base 0x20 (CS 0x33, SS 0x2b), SYSCALL CS 0x10
    wrmsr
    mov ecx, 0xc0000082
    lea rax, [rel syscall_entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xc0000084
    mov eax, 0x200                      ; SFMASK: IF
    xor edx, edx
    wrmsr
    mov ecx, 0xc0000102                 ; KERNEL_GS_BASE -> percpu
    lea rax, [rel percpu]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    lea rax, [rel kstack_top]
    mov [rel percpu + 8], rax
    mov [rel kernel_rsp], rsp

    push SEL_UDATA | 3
    lea rax, [rel ustack_top]
    push rax
    push 0x002                          ; IF stays clear: the firmware's PIC may have a timer unmasked
    push SEL_UCODE64 | 3
    lea rax, [rel user_code]
    push rax
    iretq

user_code:
    mov ax, cs
    mov [rel user_cs], ax
    int3                                ; ring 3 -> ring 0 on RSP0, back by IRETQ
    mov rax, 7
    mov rdi, 0x1111
    syscall                             ; prints, returns with SYSRET
    add rax, rdi                        ; the kernel returned rax = 0x2222
    mov [rel user_result], rax
    mov rax, 99
    syscall                             ; does not return to ring 3
    ud2

syscall_entry:
    swapgs
    mov [gs:16], rsp                    ; the user stack, in the per-CPU area
    mov rsp, [gs:8]
    push rcx
    push r11
    cmp rax, 99
    je .leave
    lea rsi, [rel msg_syscall]
    call puts64
    mov rax, [gs:0]                     ; per-CPU self pointer
    lea rdx, [rel percpu]
    cmp rax, rdx
    sete al
    call hex8_64
    mov al, ' '
    call putc64
    mov rax, [rsp]                      ; R11 = user RFLAGS
    and eax, 0x202
    call hex32_64
    mov al, ' '
    call putc64
    pushfq
    pop rax                             ; IF masked by SFMASK
    and eax, 0x200
    call hex32_64
    call newline64
    mov rax, 0x2222
    pop r11
    pop rcx
    mov rsp, [gs:16]
    swapgs
    o64 sysret

.leave:
    swapgs
    mov rsp, [rel kernel_rsp]
    lea rsi, [rel msg_user]
    call puts64
    mov ax, [rel user_cs]
    call hex8_64
    mov al, ' '
    call putc64
    mov rax, [rel user_result]
    call hex32_64
    call newline64

    ; Compatibility mode: a far return into the 32-bit code segment.
    push SEL_CODE32
    lea rax, [rel compat32]
    push rax
    retfq

bits 32
compat32:
    ; The IRETQ to ring 3 nulled DS and ES (their DPL is below CPL 3, SDM IRET); 64-bit code ignores that, but
    ; compatibility mode checks segments as protected mode does, so reload them.
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov esi, msg_compat
    call puts
    mov eax, cr0
    and eax, 0x7fffffff                 ; PG off: leaves IA-32e mode
    mov cr0, eax
    mov ecx, 0xc0000080
    rdmsr
    and eax, ~0x100                     ; LME off
    wrmsr
    call setup_gdt                      ; the runtime's flat GDT again
    mov esp, [saved_esp]
    popad
    ret

bits 64
; --- 64-bit exception handling -------------------------------------------------------------------------------
; One 16-byte stub per vector: vectors without an error code push a zero first.
%define HAS_ERROR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17)
align 16
stubs:
%assign v 0
%rep 32
    align 16
%if HAS_ERROR(v) == 0
    push 0
%endif
    push v
    jmp exception_common
%assign v v + 1
%endrep
stub_size equ 16

exception_common:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    ; frame: [rsp+40] vector, +48 error, +56 RIP, +64 CS, +72 RFLAGS, +80 RSP, +88 SS
    lea rsi, [rel msg_exception]
    call puts64
    mov al, [rsp + 40]
    call hex8_64
    lea rsi, [rel msg_error]
    call puts64
    mov eax, [rsp + 48]
    call hex32_64
    cmp qword [rsp + 40], 14
    jne .no_cr2
    lea rsi, [rel msg_cr2]
    call puts64
    mov rax, cr2
    call hex64
.no_cr2:
    lea rsi, [rel msg_from]
    call puts64
    mov al, [rsp + 64]
    call hex8_64
    call newline64
    mov rax, [rel resume]
    test rax, rax
    jz .return
    mov [rsp + 56], rax
    mov qword [rel resume], 0
.return:
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

; --- 64-bit checksum: xorshift64 drives FNV-1a, 128-bit products and quotients, RIP-relative tables ---------
checksum64:
    mov r8, 0x9e3779b97f4a7c15          ; xorshift state
    mov r9, 0xcbf29ce484222325          ; FNV offset basis
    mov r10, 0x100000001b3              ; FNV prime
    xor r11, r11                        ; product accumulator
    mov ecx, 20000
.loop:
    mov rax, r8
    shl rax, 13
    xor r8, rax
    mov rax, r8
    shr rax, 7
    xor r8, rax
    mov rax, r8
    shl rax, 17
    xor r8, rax
    mov rax, r8
    movzx edx, al
    and edx, 7
    lea rbx, [rel table]
    xor r9, [rbx + rdx * 8]
    xor r9, rax
    imul r9, r10
    mul r9                              ; rdx:rax = r8 * r9
    add r11, rdx
    adc r11, rax
    mov rax, r11
    xor edx, edx
    mov rbx, r8
    or rbx, 1
    div rbx                             ; quotient and remainder of a 64-bit division
    xor r11, rdx
    ror r11, 11
    movsxd rax, ecx
    add r11, rax
    dec ecx
    jnz .loop
    xor r9, r11
    mov [rel checksum], r9
    lea rsi, [rel msg_checksum]
    call puts64
    mov rax, r9
    call hex64
    call newline64
    ret

; --- 64-bit serial output ------------------------------------------------------------------------------------
putc64:
    push rdx
    push rax
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop rax
    mov dx, COM1
    out dx, al
    pop rdx
    ret

puts64:
    push rsi
    push rax
.next:
    lodsb
    test al, al
    jz .done
    call putc64
    jmp .next
.done:
    pop rax
    pop rsi
    ret

newline64:
    push rax
    mov al, 10
    call putc64
    pop rax
    ret

; rax as 16 hex digits; hex32_64: eax as 8; hex8_64: al as 2. Preserve all registers.
hex64:
    push rcx
    push rax
    mov ecx, 16
    jmp hex_common
hex32_64:
    push rcx
    push rax
    shl rax, 32
    mov ecx, 8
    jmp hex_common
hex8_64:
    push rcx
    push rax
    shl rax, 56
    mov ecx, 2
hex_common:
    push rdx
    push rbx
    mov rdx, rax
    lea rbx, [rel hex_digits]
.digit:
    rol rdx, 4
    mov eax, edx
    and eax, 0x0f
    mov al, [rbx + rax]
    call putc64
    dec ecx
    jnz .digit
    pop rbx
    pop rdx
    pop rax
    pop rcx
    ret

bits 32

; data (in .text: the a.out-kludge header loads .text only)
align 16
gdt64:
    dq 0
    dq 0x00cf9a000000ffff               ; 0x08: 32-bit code, ring 0
    dq 0x00af9a000000ffff               ; 0x10: 64-bit code, ring 0
    dq 0x00cf92000000ffff               ; 0x18: data, ring 0
    dq 0x00cffa000000ffff               ; 0x20: 32-bit code, ring 3
    dq 0x00cff2000000ffff               ; 0x28: data, ring 3
    dq 0x00affa000000ffff               ; 0x30: 64-bit code, ring 3
    dq 0x0000890000000067               ; 0x38: 64-bit TSS (base filled in), limit 103
    dq 0                                ;       upper half of the TSS descriptor
gdt64_end:
gdt64_descriptor:
    dw gdt64_end - gdt64 - 1
    dd gdt64
idt64_descriptor:
    dw 32 * 16 - 1
    dq idt64
align 8
table:
    dq 0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0, 0x082efa98ec4e6c89
    dq 0x452821e638d01377, 0xbe5466cf34e90c6c, 0xc0ac29b7c97c50dd, 0x3f84d5b5b5470917
percpu:
    dq percpu                           ; self
    dq 0                                ; kernel stack
    dq 0                                ; saved user stack

msg_banner:     db "longmode: 32-bit entry", 10, 0
msg_cpuid:      db "cpuid 80000001 edx lm/nx/syscall: ", 0
msg_in64:       db "64-bit mode: efer=", 0
msg_alias:      db "through the high alias: ", 0
msg_exception:  db "exception ", 0
msg_error:      db " error=", 0
msg_cr2:        db " cr2=", 0
msg_from:       db " cs=", 0
msg_after_int3: db "after int3", 10, 0
msg_rw:         db "cr0.wp clear, supervisor write to the read-only page: ", 0
msg_checksum:   db "64-bit checksum: ", 0
msg_syscall:    db "syscall: percpu=", 0
msg_user:       db "ring 3 done: cs=", 0
msg_compat:     db "compatibility mode", 10, 0
msg_back:       db "back in 32-bit protected mode: cr0=", 0
msg_efer:       db " efer=", 0
msg_result:     db "checksum seen from 32-bit code: ", 0
msg_done:       db "longmode: done", 10, 0

section .bss
alignb 4096
pml4:       resb 4096
pdpt:       resb 4096
pd:         resb 4096
pt:         resb 4096
idt64:      resb 32 * 16
tss:        resb 104
alignb 16
            resb 4096
kstack_top:
            resb 4096
dfstack_top:
            resb 4096
ustack_top:
            resb 8192
stack_top:
scratch:    resq 1
resume:     resq 1
checksum:   resq 1
kernel_rsp: resq 1
user_result: resq 1
user_cs:    resw 1
saved_esp:  resd 1

%include "include/footer.inc"
