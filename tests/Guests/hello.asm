; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; hello: the first test guest. Loads its own GDT, programs COM1, prints a banner, the memory information
; and memory map the multiboot loader handed over, runs an integer checksum over a wide spread of
; instructions and flags (ALU forms, shifts and rotates incl. RCL/RCR, SHLD/SHRD, MUL/IMUL/DIV/IDIV, BT*,
; BSF/BSR, BCD adjusts, REP string ops, XADD/CMPXCHG/CMPXCHG8B, BSWAP, SETcc/CMOVcc, LOOP), folding in the
; flags each instruction defines (taken with PUSHFD and masked to the architecturally defined bits), prints
; the checksum and its own command line, and exits through isa-debug-exit with 0x10 (status 33).
; Build: nasm -f bin hello.asm (a.out kludge), or nasm -f elf32 + ld -m elf_i386 -Ttext=0x100000 (ELF).

%include "include/multiboot.inc"

%define ITERATIONS 8192

%define CF 0x001
%define PF 0x004
%define AF 0x010
%define ZF 0x040
%define SF 0x080
%define OF 0x800
%define ARITH (CF|PF|AF|ZF|SF|OF)
%define LOGIC (CF|PF|ZF|SF|OF)
%define SHIFTN (CF|PF|ZF|SF)

; Folds a 32-bit operand into the checksum in ebx (changes flags).
%macro MIX 1
    rol ebx, 5
    xor ebx, %1
    add ebx, 0x9e3779b9
%endmacro

; Folds the flags the last instruction defines (mask %1); must come straight after it.
%macro MIXF 1
    pushfd
    and dword [esp], %1
    pop dword [flag_tmp]
    MIX dword [flag_tmp]
%endmacro

; Next pseudo-random value into %1 (a 32-bit LCG in ebp, high bits rotated down).
%macro RAND 1
    imul ebp, ebp, 1664525
    add ebp, 1013904223
    mov %1, ebp
    ror %1, 11
%endmacro

entry:
    cli
    mov esp, stack_top
    mov [boot_magic], eax
    mov [boot_info], ebx
    call setup_gdt
    call uart_init

    mov esi, msg_banner
    call puts
    mov esi, msg_magic_ok
    cmp dword [boot_magic], MB_BOOT_MAGIC
    je .magic
    mov esi, msg_magic_bad
.magic:
    call puts

    call print_memory

    call checksum
    mov esi, msg_checksum
    call puts
    call put_hex32
    call newline

    call print_cmdline

    mov esi, msg_bye
    call puts
    mov al, 0x10
    jmp debug_exit

; ---- multiboot information -------------------------------------------------------------------------

print_memory:
    mov edi, [boot_info]
    test dword [edi], 1             ; flags.mem
    jz .no_mem
    mov esi, msg_mem_lower
    call puts
    mov eax, [edi + 4]
    call put_hex32
    mov esi, msg_mem_upper
    call puts
    mov eax, [edi + 8]
    call put_hex32
    call newline
.no_mem:
    test dword [edi], 0x40          ; flags.mmap
    jz .done
    mov ecx, [edi + 44]             ; mmap_length
    mov edx, [edi + 48]             ; mmap_addr
    add ecx, edx
.entry:
    cmp edx, ecx
    jae .done
    mov esi, msg_mmap
    call puts
    mov eax, [edx + 8]              ; base_addr high
    call put_hex32
    mov eax, [edx + 4]              ; base_addr low
    call put_hex32
    mov al, ' '
    call putc
    mov eax, [edx + 16]             ; length high
    call put_hex32
    mov eax, [edx + 12]             ; length low
    call put_hex32
    mov esi, msg_type
    call puts
    mov eax, [edx + 20]
    call put_hex8
    call newline
    add edx, [edx]                  ; size does not count itself
    add edx, 4
    jmp .entry
.done:
    ret

print_cmdline:
    mov edi, [boot_info]
    mov esi, msg_cmdline
    call puts
    test dword [edi], 4             ; flags.cmdline
    jz .none
    mov esi, [edi + 16]
    call puts
.none:
    mov al, '|'
    call putc
    jmp newline

; ---- the checksum ----------------------------------------------------------------------------------

checksum:
    push ebp
    mov ebx, 0x12345678
    mov ebp, 0xdeadbeef
    mov dword [iter_count], ITERATIONS
    mov dword [qword_cell], 0x01234567
    mov dword [qword_cell + 4], 0x89abcdef
.iter:
    RAND eax
    RAND ecx

    ; --- ALU forms
    mov edx, eax
    add edx, ecx
    MIXF ARITH
    MIX edx
    sub edx, eax
    MIXF ARITH
    MIX edx
    adc edx, ecx
    MIXF ARITH
    MIX edx
    sbb edx, 0x7ffff123
    MIXF ARITH
    MIX edx
    sbb edx, edx
    MIXF ARITH
    MIX edx
    mov edx, eax
    and edx, ecx
    MIXF LOGIC
    MIX edx
    or edx, 0x00f000f0
    MIXF LOGIC
    MIX edx
    xor edx, ecx
    MIXF LOGIC
    MIX edx
    add dl, cl
    MIXF ARITH
    MIX edx
    sub dx, ax
    MIXF ARITH
    MIX edx
    adc dh, 0x80
    MIXF ARITH
    MIX edx
    cmp eax, ecx
    MIXF ARITH
    test al, cl
    MIXF LOGIC
    cmp cx, 0x8000
    MIXF ARITH
    inc edx
    MIXF ARITH
    dec dl
    MIXF ARITH
    neg edx
    MIXF ARITH
    MIX edx
    not edx
    MIX edx
    add edx, byte -3
    MIXF ARITH
    mov [scratch], eax
    add [scratch], ecx
    MIXF ARITH
    sub [scratch], edx
    MIXF ARITH
    MIX dword [scratch]
    lea edx, [eax + ecx * 4 + 0x1234]
    MIX edx
    movsx edx, cl
    MIX edx
    movzx edx, ch
    MIX edx
    movsx edx, ax
    MIX edx
    mov edx, eax
    xchg edx, ecx
    MIX ecx
    mov ecx, edx
    push eax
    push ecx
    pop edx
    pop esi
    sub esi, edx
    MIXF ARITH
    MIX esi

    ; --- shifts and rotates (counts 1..16; OF only defined for count 1, so masked out)
    mov edx, ecx
    and ecx, 15
    inc ecx
    mov esi, eax
    shl esi, cl
    MIXF SHIFTN
    MIX esi
    mov esi, eax
    shr esi, cl
    MIXF SHIFTN
    MIX esi
    mov esi, eax
    sar esi, cl
    MIXF SHIFTN
    MIX esi
    mov esi, eax
    rol esi, cl
    MIXF CF
    MIX esi
    ror esi, cl
    MIXF CF
    MIX esi
    bt eax, 3
    rcl esi, cl
    MIXF CF
    MIX esi
    rcr esi, cl
    MIXF CF
    MIX esi
    rcl si, cl
    MIXF CF
    MIX esi
    rcr dl, cl
    MIXF CF
    MIX edx
    rcl dh, 1
    MIXF CF|OF
    MIX edx
    shl esi, 1
    MIXF LOGIC
    sar esi, 1
    MIXF LOGIC
    shr esi, 1
    MIXF LOGIC
    MIX esi
    mov esi, eax
    shld esi, edx, cl
    MIXF SHIFTN
    MIX esi
    shrd esi, edx, cl
    MIXF SHIFTN
    MIX esi
    shld esi, edx, 7
    MIXF SHIFTN
    shrd esi, edx, 29
    MIXF SHIFTN
    MIX esi
    sar dx, cl
    MIXF SHIFTN
    MIX edx

    ; --- multiply and divide (rebuilds ecx from the generator)
    RAND ecx
    mov esi, eax
    mul ecx
    MIXF CF|OF
    MIX eax
    MIX edx
    mov eax, esi
    imul ecx
    MIXF CF|OF
    MIX eax
    MIX edx
    imul edx, ecx, 12345
    MIXF CF|OF
    MIX edx
    imul edx, esi
    MIXF CF|OF
    MIX edx
    imul dx, cx
    MIXF CF|OF
    MIX edx
    mov eax, esi
    mov dl, cl
    mul dl
    MIXF CF|OF
    MIX eax
    mov eax, esi
    xor edx, edx
    mov edi, ecx
    or edi, 1
    div edi
    MIX eax
    MIX edx
    mov eax, esi
    cdq
    mov edi, ecx
    and edi, 0x7fffffff
    or edi, 1
    idiv edi
    MIX eax
    MIX edx
    mov eax, esi
    cwde
    cdq
    mov edi, ecx
    shr edi, 20
    or edi, 3
    idiv edi
    MIX eax
    MIX edx
    movzx eax, si
    movzx eax, al
    mov dl, cl
    or dl, 1
    div dl
    MIX eax
    mov eax, esi

    ; --- bit tests and scans
    mov esi, eax
    bt esi, ecx
    MIXF CF
    bts esi, ecx
    MIXF CF
    MIX esi
    btr esi, 5
    MIXF CF
    MIX esi
    btc esi, ecx
    MIXF CF
    MIX esi
    mov [scratch], eax
    bts dword [scratch], 17
    MIXF CF
    MIX dword [scratch]
    or esi, 0x00080000
    bsf edx, esi
    MIXF ZF
    MIX edx
    bsr edx, esi
    MIXF ZF
    MIX edx
    mov edx, ecx
    or dx, 0x0100
    bsf dx, dx
    MIX edx

    ; --- BCD adjusts (AF/CF come from the add/sub just before)
    mov eax, esi
    add al, cl
    daa
    MIXF CF|AF|SF|ZF|PF
    MIX eax
    sub al, ch
    das
    MIXF CF|AF|SF|ZF|PF
    MIX eax
    mov dl, cl
    and dl, 0x3f
    and al, 0x3f
    add al, dl
    aaa
    MIXF CF|AF
    MIX eax
    mov eax, esi
    aam 10
    MIXF SF|ZF|PF
    MIX eax
    aad 10
    MIXF SF|ZF|PF
    MIX eax
    mov eax, esi
    aam 7
    MIXF SF|ZF|PF
    MIX eax

    ; --- string operations
    push ecx
    cld
    mov edi, buf_a
    mov eax, esi
    mov ecx, 16
    rep stosd
    mov esi, buf_a
    mov edi, buf_b
    mov ecx, 64
    rep movsb
    pop ecx
    mov edx, ecx
    and edx, 63
    mov [buf_b + edx], cl
    push ecx
    mov esi, buf_a
    mov edi, buf_b
    mov ecx, 64
    repe cmpsb
    MIXF ARITH
    MIX ecx
    sub esi, buf_a
    MIX esi
    mov edi, buf_b
    mov al, [buf_b + 17]
    mov ecx, 64
    repne scasb
    MIXF ARITH
    MIX ecx
    mov esi, buf_b + 20
    lodsd
    MIX eax
    lodsw
    MIX eax
    std
    mov esi, buf_a + 63
    mov edi, buf_b + 63
    mov ecx, 9
    rep movsb
    cld
    MIX dword [buf_b + 56]
    MIX dword [buf_b + 60]
    mov esi, buf_b
    mov edi, buf_a
    movsd
    movsw
    cmpsb
    MIXF ARITH
    MIX dword [buf_a]
    pop ecx
    mov eax, [buf_b + 4]
    RAND esi                        ; esi held an address: replace it so the sum is position-independent

    ; --- atomics and byte swap
    mov [scratch], eax
    mov edx, ecx
    xadd [scratch], edx
    MIXF ARITH
    MIX edx
    MIX dword [scratch]
    xadd edx, eax
    MIXF ARITH
    MIX edx
    MIX eax
    mov eax, [scratch]
    mov edx, ecx
    cmpxchg [scratch], edx          ; equal: stores edx
    MIXF ARITH
    MIX eax
    MIX dword [scratch]
    mov eax, ecx
    not eax
    cmpxchg [scratch], esi          ; differs: loads eax
    MIXF ARITH
    MIX eax
    mov eax, [qword_cell]
    mov edx, [qword_cell + 4]
    test cl, 1
    jz .cx8_equal
    xor edx, 0x10                   ; half the time the compare fails
.cx8_equal:
    push ebx
    push ecx
    mov ebx, esi
    cmpxchg8b [qword_cell]
    pushfd
    and dword [esp], ZF
    pop dword [flag_tmp]
    pop ecx
    pop ebx
    MIX dword [flag_tmp]
    MIX eax
    MIX edx
    MIX dword [qword_cell]
    MIX dword [qword_cell + 4]
    mov edx, ecx
    bswap edx
    MIX edx

    ; --- SETcc and CMOVcc on a fully defined compare
    cmp eax, ecx
    setb [set_bytes + 0]
    seta [set_bytes + 1]
    setl [set_bytes + 2]
    setg [set_bytes + 3]
    sets [set_bytes + 4]
    setpe [set_bytes + 5]
    seto [set_bytes + 6]
    setz [set_bytes + 7]
    MIX dword [set_bytes]
    MIX dword [set_bytes + 4]
    mov edx, 0x11111111
    sub ax, cx
    cmovl edx, eax
    cmova edx, ecx
    cmovo edx, esi
    cmovnp edx, ebp
    MIX edx

    ; --- LOOP
    and ecx, 7
    inc ecx
.small_loop:
    add ebx, ecx
    rol ebx, 3
    loop .small_loop

    dec dword [iter_count]
    jnz .iter
    mov eax, ebx
    pop ebp
    ret

msg_banner:    db "ActorVmm hello guest", 10, 0
msg_magic_ok:  db "multiboot: magic ok", 10, 0
msg_magic_bad: db "multiboot: BAD MAGIC", 10, 0
msg_mem_lower: db "mem: lower=", 0
msg_mem_upper: db " upper=", 0
msg_mmap:      db "mmap: ", 0
msg_type:      db " type ", 0
msg_checksum:  db "checksum: ", 0
msg_cmdline:   db "cmdline: |", 0
msg_bye:       db "hello: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
boot_magic:  resd 1
boot_info:   resd 1
iter_count:  resd 1
flag_tmp:    resd 1
scratch:     resd 1
set_bytes:   resb 8
alignb 8
qword_cell:  resq 1
buf_a:       resb 64
buf_b:       resb 64
alignb 16
stack:       resb 8192
stack_top:

%include "include/footer.inc"
