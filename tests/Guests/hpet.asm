; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; hpet: the High Precision Event Timer at 0xfed00000 as a guest sees it. Prints the capabilities register
; (revision, timers, 64-bit counter, legacy-replacement capability, vendor, period in femtoseconds) and each
; timer's capabilities, checks that a halted main counter holds still and a running one advances, then, in
; legacy replacement mode (timer 0 on IOAPIC pin 2, timer 1 on pin 8; the PIT and RTC are cut off), takes a
; one-shot interrupt from each through the IOAPIC and the local APIC, and 10 periodic ones from timer 0.
; Everything printed is independent of timing. Exits through isa-debug-exit with 0x14 (status 41).

%include "include/multiboot.inc"
%include "include/apic.inc"

%define HPET        0xfed00000
%define GCAP_ID     (HPET + 0x000)
%define GEN_CONF    (HPET + 0x010)
%define GINTR_STA   (HPET + 0x020)
%define MAIN_CNT    (HPET + 0x0f0)
%define T0_CONF     (HPET + 0x100)
%define T0_CMP      (HPET + 0x108)
%define T1_CONF     (HPET + 0x120)
%define T1_CMP      (HPET + 0x128)

%define TN_INT_ENB  (1 << 2)
%define TN_TYPE     (1 << 3)
%define TN_VAL_SET  (1 << 6)

%define V_T0        0x60
%define V_T1        0x61
%define PERIOD      100000                  ; counter ticks: 1 ms at 100 MHz

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    call idt_init
    mov ecx, V_T0
    mov eax, timer0
    call set_vector
    mov ecx, V_T1
    mov eax, timer1
    call set_vector
    mov ecx, 0xff
    mov eax, stray
    call set_vector
    call pic_init_masked
    ; The PIT's OUT0 low and idle: control word for counter 0, mode 0, and no count.
    mov al, 0x30
    out 0x43, al

    ; ---- identity
    mov esi, msg_caps
    call puts
    mov eax, [GCAP_ID]
    call put_hex32
    mov esi, msg_period
    call puts
    mov eax, [GCAP_ID + 4]
    call put_hex32
    call newline
    xor ecx, ecx
.timer_caps:
    mov esi, msg_tcaps
    call puts
    mov al, cl
    call put_hex8
    mov al, '='
    call putc
    mov ebx, ecx
    shl ebx, 5
    mov eax, [T0_CONF + ebx + 4]
    call put_hex32
    mov al, ':'
    call putc
    mov eax, [T0_CONF + ebx]
    and eax, 0x30                           ; Tn_PER_INT_CAP, Tn_SIZE_CAP
    call put_hex32
    call newline
    inc ecx
    cmp ecx, 3
    jb .timer_caps

    ; ---- the main counter: halted it holds its value, enabled it runs.
    mov dword [GEN_CONF], 0
    mov dword [MAIN_CNT], 0
    mov dword [MAIN_CNT + 4], 0
    mov eax, [MAIN_CNT]
    mov ecx, 10000
.still:
    cmp eax, [MAIN_CNT]
    jne .moved
    loop .still
    mov esi, msg_halted_ok
    jmp .halted_done
.moved:
    mov esi, msg_halted_bad
.halted_done:
    call puts
    mov dword [GEN_CONF], 1
    mov eax, [MAIN_CNT]
    mov ecx, 1000000
.runs:
    cmp eax, [MAIN_CNT]
    jne .running
    loop .runs
    mov esi, msg_running_bad
    jmp .running_done
.running:
    mov esi, msg_running_ok
.running_done:
    call puts
    mov dword [GEN_CONF], 0

    ; ---- local APIC on, IOAPIC pins 2 and 8 edge-triggered to vectors 0x60 and 0x61.
    mov dword [LAPIC_SVR], 0x1ff
    mov dword [LAPIC_TPR], 0
    mov dword [LAPIC_LVT_TIMER], 0x10000
    mov eax, 0x15
    xor edx, edx
    call ioapic_write
    mov eax, 0x14
    mov edx, V_T0
    call ioapic_write
    mov eax, 0x21
    xor edx, edx
    call ioapic_write
    mov eax, 0x20
    mov edx, V_T1
    call ioapic_write

    ; ---- one-shot: timer 0 at 1 ms, timer 1 at 2 ms, legacy replacement routing.
    mov dword [MAIN_CNT], 0
    mov dword [MAIN_CNT + 4], 0
    mov dword [T0_CONF], TN_INT_ENB
    mov dword [T0_CMP], PERIOD
    mov dword [T0_CMP + 4], 0
    mov dword [T1_CONF], TN_INT_ENB
    mov dword [T1_CMP], 2 * PERIOD
    mov dword [T1_CMP + 4], 0
    mov dword [GEN_CONF], 3                 ; ENABLE_CNF | LEG_RT_CNF
    mov esi, t0_count
    mov eax, 1
    call wait_count
    mov esi, t1_count
    mov eax, 1
    call wait_count
    mov esi, msg_oneshot
    call puts
    mov esi, msg_status
    call puts
    mov eax, [GINTR_STA]
    call put_hex32
    call newline

    ; ---- periodic: timer 0 every 1 ms (comparator set with Tn_VAL_SET_CNF, then the period).
    mov dword [T1_CONF], 0
    mov dword [t0_count], 0
    mov dword [T0_CONF], TN_INT_ENB | TN_TYPE | TN_VAL_SET
    mov eax, [MAIN_CNT]
    add eax, PERIOD
    mov [T0_CMP], eax
    mov dword [T0_CMP], PERIOD
    mov esi, t0_count
    mov eax, 10
    call wait_count
    mov dword [T0_CONF], 0
    mov dword [GEN_CONF], 0
    mov esi, msg_periodic
    call puts
    mov esi, msg_conf
    call puts
    mov eax, [T0_CONF]
    call put_hex32
    mov al, ' '
    call putc
    mov eax, [GEN_CONF]
    call put_hex32
    call newline

    mov esi, msg_stray
    call puts
    mov eax, [stray_count]
    call put_hex32
    call newline
    mov esi, msg_done
    call puts
    mov al, 0x14
    jmp debug_exit

timer0:
    inc dword [t0_count]
    mov dword [LAPIC_EOI], 0
    iretd

timer1:
    inc dword [t1_count]
    mov dword [LAPIC_EOI], 0
    iretd

msg_banner:      db "ActorVmm hpet guest", 10, 0
msg_caps:        db "hpet: capabilities=", 0
msg_period:      db " period(fs)=", 0
msg_tcaps:       db "hpet: timer ", 0
msg_halted_ok:   db "hpet: halted counter holds still", 10, 0
msg_halted_bad:  db "hpet: halted counter moves", 10, 0
msg_running_ok:  db "hpet: enabled counter advances", 10, 0
msg_running_bad: db "hpet: enabled counter stuck", 10, 0
msg_oneshot:     db "hpet: one-shot timer 0 on ioapic pin 2 and timer 1 on pin 8 delivered", 10, 0
msg_status:      db "hpet: interrupt status (edge)=", 0
msg_periodic:    db "hpet: 10 periodic interrupts from timer 0", 10, 0
msg_conf:        db "hpet: timer 0 config/general config after stop=", 0
msg_stray:       db "stray interrupts=", 0
msg_done:        db "hpet: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 4
t0_count:   resd 1
t1_count:   resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
