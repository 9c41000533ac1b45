; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; paging: 32-bit paging with 4 KiB pages (an alias mapping, accessed and dirty bits, INVLPG after a PTE
; change), #PF with CR2 and the error code for a not-present read and a supervisor write to a read-only page
; under CR0.WP (allowed again with WP clear), a 4 MiB page (CR4.PSE), then PAE paging with a 2 MiB page.
; Every line printed is architectural, so it reads the same under QEMU. Exits with 0x15 (status 43).

%include "include/multiboot.inc"

%define ALIAS   0x40000000
%define MISSING 0x50000000
%define BIG     0x80000000

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    ; IDT: every exception to `fault`, which prints vector/CR2/error and resumes at [resume].
    xor ecx, ecx
.gate:
    mov eax, fault_noerr
    cmp ecx, 14
    jne .set
    mov eax, fault_pf
.set:
    mov edi, idt
    call set_gate
    inc ecx
    cmp ecx, 32
    jb .gate
    lidt [idt_descriptor]

    ; Page table 0 maps the first 4 MiB one to one; PDE 0x100 (ALIAS) points at table 1.
    xor ecx, ecx
.pt0:
    mov eax, ecx
    shl eax, 12
    or eax, 3                               ; present, writable, supervisor
    mov [pt0 + ecx * 4], eax
    inc ecx
    cmp ecx, 1024
    jb .pt0
    mov eax, pt0
    or eax, 3
    mov [pd], eax
    mov eax, pt1
    or eax, 3
    mov [pd + (ALIAS >> 22) * 4], eax
    mov eax, target_a
    or eax, 3
    mov [pt1], eax                          ; ALIAS -> target_a
    mov eax, target_ro
    or eax, 1                               ; ALIAS + 0x1000 -> target_ro, read-only
    mov [pt1 + 4], eax

    mov eax, pd
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                      ; PG, WP
    mov cr0, eax

    ; 1. A write through the alias lands in target_a.
    mov dword [ALIAS + 8], 0x12345678
    mov esi, msg_alias
    call puts
    mov eax, [target_a + 8]
    call put_hex32
    call newline

    ; 2. The walk set accessed and dirty in the PTE.
    mov esi, msg_ad
    call puts
    mov eax, [pt1]
    and eax, 0x60
    call put_hex8
    call newline

    ; 3. Not-present read: #PF(0) with CR2; the handler maps the page and the read is retried.
    mov dword [resume], .after_missing
    mov dword [map_on_fault], 1
    mov eax, [MISSING + 4]
.after_missing:
    mov esi, msg_value
    call puts
    call put_hex32
    call newline

    ; 4. Supervisor write to a read-only page with WP set: #PF(3); with WP clear it goes through.
    mov dword [map_on_fault], 0
    mov dword [resume], .after_ro
    mov dword [ALIAS + 0x1000], 0xcafe
.after_ro:
    mov eax, cr0
    and eax, ~0x10000
    mov cr0, eax
    mov dword [ALIAS + 0x1000], 0xbeef
    mov esi, msg_ro
    call puts
    mov eax, [target_ro]
    call put_hex32
    call newline

    ; 5. INVLPG after pointing the alias at another frame: the new frame is seen.
    mov dword [target_b], 0x0b0b0b0b
    mov eax, target_b
    or eax, 3
    mov [pt1], eax
    invlpg [ALIAS]
    mov esi, msg_invlpg
    call puts
    mov eax, [ALIAS]
    call put_hex32
    call newline

    ; 6. Code run through the alias: relative branches and CALL work on linear addresses, so the EIP the
    ;    code sees is the alias, not the frame's physical address.
    mov eax, aliased_code
    or eax, 3
    mov [pt1 + 8], eax                      ; ALIAS + 0x2000 -> the page holding aliased_code
    invlpg [ALIAS + 0x2000]
    mov eax, ALIAS + 0x2000
    call eax
    mov esi, msg_eip
    call puts
    call put_hex32
    call newline

    ; 7. A 4 MiB page (CR4.PSE) at BIG mapping physical 0: it shows the identity-mapped bytes.
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov dword [pd + (BIG >> 22) * 4], 0x83  ; present, writable, PS, frame 0
    mov dword [target_a + 12], 0x44444444
    mov esi, msg_pse
    call puts
    mov eax, [BIG + target_a + 12]
    call put_hex32
    call newline

    ; 8. PAE: paging off, CR4.PAE, a PDPT whose entry 0 points at a PD with a 2 MiB identity page and
    ;    entry 1 at a PD mapping ALIAS (1 GiB) with a 2 MiB page onto physical 0; paging on again.
    mov eax, cr0
    and eax, 0x7fffffff
    mov cr0, eax
    mov eax, pae_pd0
    or eax, 1
    mov [pdpt], eax
    mov eax, pae_pd1
    or eax, 1
    mov [pdpt + 8], eax
    mov dword [pae_pd0], 0x83               ; 0-2 MiB identity, 2 MiB page
    mov dword [pae_pd1], 0x83               ; 1 GiB -> physical 0
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, pdpt
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov dword [target_a + 16], 0x55aa55aa
    mov esi, msg_pae
    call puts
    mov eax, [ALIAS + target_a + 16]
    call put_hex32
    call newline

    mov esi, msg_done
    call puts
    mov al, 0x15
    jmp debug_exit

; Position-independent code run at ALIAS + 0x2000: a short jump, then CALL/POP to read its own EIP.
align 4096
aliased_code:
    jmp short .there
    hlt
.there:
    call .here
.here:
    pop eax
    ret
align 4, db 0

; #PF: [esp] error code, [esp+4] EIP.
fault_pf:
    push eax
    mov esi, msg_pf
    call puts
    mov eax, cr2
    call put_hex32
    mov esi, msg_err
    call puts
    mov eax, [esp + 4]
    call put_hex32
    call newline
    cmp dword [map_on_fault], 0
    je .skip
    ; Map the missing page (PDE for MISSING -> pt2, PTE 0 -> target_c) and retry the instruction.
    mov dword [target_c + 4], 0x600dcafe
    mov eax, pt2
    or eax, 3
    mov [pd + (MISSING >> 22) * 4], eax
    mov eax, target_c
    or eax, 3
    mov [pt2], eax
    pop eax
    add esp, 4
    iretd
.skip:
    pop eax
    add esp, 4
    push eax
    mov eax, [resume]
    mov [esp + 4], eax
    pop eax
    iretd

fault_noerr:
    mov esi, msg_unexpected
    call puts
    mov al, 0x7f
    jmp debug_exit

idt_descriptor:
    dw 32 * 8 - 1
    dd idt

msg_banner:     db "ActorVmm paging guest", 10, 0
msg_alias:      db "alias write seen at the frame: ", 0
msg_ad:         db "pte accessed+dirty: ", 0
msg_pf:         db "#PF cr2=", 0
msg_err:        db " error=", 0
msg_value:      db "after mapping: ", 0
msg_ro:         db "read-only page after WP=0 write: ", 0
msg_invlpg:     db "after invlpg: ", 0
msg_pse:        db "4 MiB page: ", 0
msg_eip:        db "code through the alias sees eip=", 0
msg_pae:        db "PAE 2 MiB page: ", 0
msg_unexpected: db "unexpected exception", 10, 0
msg_done:       db "paging: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 4096
pd:         resb 4096
pt0:        resb 4096
pt1:        resb 4096
pt2:        resb 4096
target_a:   resb 4096
target_ro:  resb 4096
target_b:   resb 4096
target_c:   resb 4096
pae_pd0:    resb 4096
pae_pd1:    resb 4096
pdpt:       resb 32
alignb 8
idt:        resb 32 * 8
resume:     resd 1
map_on_fault: resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
