; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; smp: the multiprocessor start-up of Intel SDM vol. 3 §9.4 and memory shared between processors. The BSP
; reads the CPU count the BIOS keeps in CMOS 0x5f (count - 1, as QEMU and ActorVmm store it), the BSP's entry of
; the MP table and the processors of the ACPI MADT it finds in the BIOS area, copies a real-mode trampoline to 0x8000 and
; starts every application processor with INIT, wait 10 ms, STARTUP 0x08, wait 200 us, STARTUP 0x08 (shorthand
; all-excluding-self, timed with PIT channel 2). Each AP starts in real mode at 0800:0000, switches to protected
; mode, takes a stack with LOCK XADD and, one at a time in APIC ID order (a turn variable), prints its real-mode
; CS and APIC ID. Then every processor, the BSP included, adds 1 to three shared counters 50000 times each: with
; LOCK XADD, with a LOCK CMPXCHG loop, and with a plain INC under a spinlock taken with XCHG and released with a
; plain MOV. Each AP then counts itself done, sends the BSP a fixed IPI (vector 0x40, physical destination 0) and
; halts; the BSP sleeps in HLT, woken by those IPIs, until all of them are done, and prints the counters, which are exact only if the locked
; instructions were atomic across processors. Everything printed is independent of timing and of the order in
; which processors run. Exits through isa-debug-exit with 0x18 (status 49).

%include "include/multiboot.inc"
%include "include/apic.inc"

%define TRAMPOLINE   0x8000
%define SIPI_VECTOR  (TRAMPOLINE >> 12)
%define V_DONE       0x40
%define ITERATIONS   50000
%define MAX_CPUS     32
%define AP_STACK     4096

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    call idt_init
    call pic_init_masked
    mov ecx, V_DONE
    mov eax, done_ipi
    call set_vector

    ; The CPU count: CMOS 0x5f holds it minus one.
    mov al, 0x5f
    out 0x70, al
    in al, 0x71
    movzx eax, al
    inc eax
    mov [cpu_count], eax
    mov esi, msg_cmos
    call puts
    call put_hex8
    mov esi, msg_cpus
    call puts

    call list_mp_processors
    call list_madt_processors

    ; Software-enable this local APIC (spurious vector 0xff) so the APs' IPIs are accepted.
    mov dword [LAPIC_SVR], 0x1ff

    ; The trampoline goes below 1 MiB, where a start-up IPI can point.
    mov esi, trampoline
    mov edi, TRAMPOLINE
    mov ecx, trampoline_end - trampoline
    cld
    rep movsb

    mov esi, msg_starting
    call puts
    mov dword [turn], 1
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], 0x000c4500        ; INIT, level assert, all excluding self
    call icr_idle
    mov ecx, 11932                              ; 10 ms of PIT clocks
    call pit_delay
    mov dword [LAPIC_ICR_LO], 0x000c4600 | SIPI_VECTOR
    call icr_idle
    mov ecx, 239                                ; 200 us
    call pit_delay
    mov dword [LAPIC_ICR_LO], 0x000c4600 | SIPI_VECTOR
    call icr_idle

    call add_to_counters

    ; Sleep until every AP is done. Each counts itself done and then sends its IPI, which wakes this HLT; two
    ; IPIs of one vector that arrive before the first is taken are one interrupt (one IRR bit), so the count
    ; comes from memory and the IPIs only wake the BSP.
    mov esi, ap_done
    mov eax, [cpu_count]
    dec eax
    call wait_count
    mov esi, msg_reported
    call puts
    mov eax, [ap_done]
    call put_hex8
    mov esi, msg_of
    call puts
    mov eax, [ap_up]
    call put_hex8
    mov esi, msg_aps
    call puts
    ; Every AP sends its IPI after counting itself done, so at least one is still pending or on its way: take it.
    cmp dword [cpu_count], 1
    je .counters
    mov esi, ipi_count
    mov eax, 1
    call wait_count
    mov esi, msg_woken
    call puts
.counters:

    mov esi, msg_xadd
    mov eax, [xadd_counter]
    call put_counter
    mov esi, msg_cmpxchg
    mov eax, [cas_counter]
    call put_counter
    mov esi, msg_spinlock
    mov eax, [spin_counter]
    call put_counter
    mov esi, msg_expected
    mov eax, [cpu_count]
    imul eax, eax, ITERATIONS
    call put_counter

    mov esi, msg_done
    call puts
    mov al, 0x18
    jmp debug_exit

; Prints the string at esi, eax in hex, and a newline.
put_counter:
    call puts
    call put_hex32
    call newline
    ret

; Adds 1 to each shared counter ITERATIONS times, three ways.
add_to_counters:
    mov ecx, ITERATIONS
.xadd:
    mov eax, 1
    lock xadd [xadd_counter], eax
    dec ecx
    jnz .xadd

    mov ecx, ITERATIONS
.cas:
    mov eax, [cas_counter]
.cas_retry:
    lea edx, [eax + 1]
    lock cmpxchg [cas_counter], edx             ; on failure eax holds the current value
    jnz .cas_retry
    dec ecx
    jnz .cas

    mov ecx, ITERATIONS
.spin:
    mov eax, 1
    xchg eax, [spin_lock]                       ; XCHG with memory is locked without a prefix
    test eax, eax
    jz .locked
.wait:
    pause
    cmp dword [spin_lock], 0
    jne .wait
    jmp .spin
.locked:
    inc dword [spin_counter]                    ; a plain read-modify-write, safe only under the lock
    mov dword [spin_lock], 0                    ; release with a plain store
    dec ecx
    jnz .spin
    ret

; Waits until the ICR's delivery-status bit is clear.
icr_idle:
    test dword [LAPIC_ICR_LO], 0x1000
    jnz icr_idle
    ret

; Waits ecx PIT clocks (1.193182 MHz) with channel 2 in mode 0, polling OUT2 in port 0x61.
pit_delay:
    push eax
    in al, 0x61
    and al, 0xfd                                ; speaker data off
    or al, 0x01                                 ; GATE2 on
    out 0x61, al
    mov al, 0xb0                                ; channel 2, lobyte/hibyte, mode 0, binary
    out 0x43, al
    mov al, cl
    out 0x42, al
    mov al, ch
    out 0x42, al
.wait:
    in al, 0x61
    test al, 0x20
    jz .wait
    pop eax
    ret

; Finds the MP floating pointer ("_MP_", 16-byte aligned, in 0xf0000-0xfffff) and prints the BSP's APIC ID from
; its configuration table (SeaBIOS lists one processor entry per package, so only the BSP entry is compared).
list_mp_processors:
    mov esi, msg_mp
    call puts
    mov edi, 0xf0000
.scan:
    cmp dword [edi], '_MP_'
    je .found
    add edi, 16
    cmp edi, 0x100000
    jb .scan
    jmp .none
.found:
    mov ebx, [edi + 4]                          ; configuration table
    test ebx, ebx
    jz .none
    cmp dword [ebx], 'PCMP'
    jne .none
    movzx ecx, word [ebx + 34]                  ; entry count
    lea edi, [ebx + 44]
.entry:
    test ecx, ecx
    jz .none
    cmp byte [edi], 0
    jne .other
    test byte [edi + 3], 2                      ; the BSP's entry
    jnz .bsp
    add edi, 20
    dec ecx
    jmp .entry
.other:
    add edi, 8
    dec ecx
    jmp .entry
.bsp:
    mov esi, msg_bsp
    call puts
    mov al, [edi + 1]
    call put_hex8
    call newline
    ret
.none:
    mov esi, msg_mp_none
    call puts
    ret

; Finds the ACPI RSDP ("RSD PTR ", 16-byte aligned, in 0xe0000-0xfffff), the MADT through the RSDT, and prints the
; APIC IDs of its enabled processor local APIC entries.
list_madt_processors:
    mov esi, msg_madt
    call puts
    mov edi, 0xe0000
.scan:
    cmp dword [edi], 'RSD '
    jne .next
    cmp dword [edi + 4], 'PTR '
    je .found
.next:
    add edi, 16
    cmp edi, 0x100000
    jb .scan
    jmp .none
.found:
    mov ebx, [edi + 16]                         ; RSDT
    mov ecx, [ebx + 4]
    sub ecx, 36
    shr ecx, 2                                  ; entries
    lea edx, [ebx + 36]
.table:
    test ecx, ecx
    jz .none
    mov eax, [edx]
    cmp dword [eax], 'APIC'
    je .madt
    add edx, 4
    dec ecx
    jmp .table
.madt:
    mov ecx, [eax + 4]
    lea edx, [eax + ecx]                        ; end
    lea edi, [eax + 44]
.entry:
    cmp edi, edx
    jae .end
    cmp byte [edi], 0                           ; processor local APIC
    jne .skip
    test byte [edi + 4], 1                      ; enabled
    jz .skip
    mov al, ' '
    call putc
    mov al, [edi + 3]
    call put_hex8
.skip:
    movzx eax, byte [edi + 1]
    test eax, eax
    jz .end
    add edi, eax
    jmp .entry
.end:
    call newline
    ret
.none:
    mov esi, msg_mp_none
    call puts
    ret

; The BSP's handler for the APs' IPIs.
done_ipi:
    lock inc dword [ipi_count]
    mov dword [LAPIC_EOI], 0
    iretd

; ---- application processors

; Copied to TRAMPOLINE; entered in real mode at (SIPI_VECTOR << 8):0000.
bits 16
trampoline:
    cli
    mov bx, cs                                  ; kept for the report
    mov ax, cs
    mov ds, ax
    o32 lgdt [tramp_gdt_descriptor - trampoline]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp dword 0x08:ap_protected
align 4
tramp_gdt_descriptor:
    dw gdt_end - gdt - 1
    dd gdt
trampoline_end:

bits 32
ap_protected:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov eax, 1
    lock xadd [next_stack], eax                 ; this AP's stack: 1, 2, ... in start-up order
    inc eax
    cmp eax, MAX_CPUS
    jbe .stack
    mov eax, MAX_CPUS
.stack:
    imul eax, eax, AP_STACK
    lea esp, [ap_stacks + eax]
    lidt [idt_descriptor]
    or dword [LAPIC_SVR], 0x100                 ; software-enable this local APIC (INIT left it disabled)
    mov edi, [LAPIC_ID]
    shr edi, 24                                 ; edi = APIC ID

    ; Report, one processor at a time in APIC ID order.
.my_turn:
    pause
    cmp [turn], edi
    jne .my_turn
    mov esi, msg_ap
    call puts
    mov eax, edi
    call put_hex8
    mov esi, msg_ap_cs
    call puts
    movzx eax, bx
    call put_hex16
    mov esi, msg_ap_id
    call puts
    mov eax, edi
    call put_hex8
    call newline
    lock inc dword [ap_up]
    lock inc dword [turn]

    call add_to_counters

    ; Tell the BSP: count this AP done, then a fixed interrupt V_DONE to APIC ID 0.
    lock inc dword [ap_done]
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], 0x00004000 | V_DONE
    call icr_idle
.park:
    cli
    hlt
    jmp .park

; Sends ax as four hex digits.
put_hex16:
    push ecx
    push eax
    push edx
    mov edx, eax
    shl edx, 16
    mov ecx, 4
    jmp put_hex32.digit

%include "include/runtime.inc"

msg_banner:   db "smp: multiprocessor start-up and shared memory", 10, 0
msg_cmos:     db "cmos: ", 0
msg_cpus:     db " cpus", 10, 0
msg_mp:       db "mp table:", 0
msg_madt:     db "acpi madt processors:", 0
msg_mp_none:  db " none found", 10, 0
msg_bsp:      db " bsp apic id ", 0
msg_starting: db "starting application processors with init and startup 08", 10, 0
msg_ap:       db "ap ", 0
msg_ap_cs:    db ": started in real mode at ", 0
msg_ap_id:    db ":0000, apic id ", 0
msg_reported: db "application processors done: ", 0
msg_of:       db " of ", 0
msg_aps:      db " started", 10, 0
msg_woken:    db "ipi from application processors taken", 10, 0
msg_xadd:     db "lock xadd counter:    ", 0
msg_cmpxchg:  db "lock cmpxchg counter: ", 0
msg_spinlock: db "xchg spinlock counter:", 0
msg_expected: db "expected:             ", 0
msg_done:     db "smp: done", 10, 0

section .bss
alignb 4096
; Shared variables on a page of their own (no code shares it).
cpu_count:    resd 1
turn:         resd 1
ap_up:        resd 1
ipi_count:    resd 1
ap_done:      resd 1
next_stack:   resd 1
alignb 64
xadd_counter: resd 1
alignb 64
cas_counter:  resd 1
alignb 64
spin_lock:    resd 1
alignb 64
spin_counter: resd 1
alignb 4096
ap_stacks:    resb AP_STACK * (MAX_CPUS + 1)
stack:        resb 8192
stack_top:

%include "include/footer.inc"
