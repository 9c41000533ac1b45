; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; apic: the local APIC and the IOAPIC as a guest sees them, without asking CPUID (the soft CPU does not
; advertise the APIC yet). Prints the local APIC's ID, version and SVR, the IOAPIC's version and a
; redirection entry read back; takes 20 PIT interrupts through IOAPIC pin 2 (ISA IRQ0's override), 20 through
; the 8259 and LINT0 in ExtINT mode, 16 level-triggered RTC interrupts through pin 8 (Remote IRR set in the
; handler, clear after the EOI broadcast, TMR set), a self-IPI by shorthand and one by physical destination
; (ISR and PPR inside the handler), and the local APIC timer one-shot and periodic. Everything printed is
; independent of timing. Exits through isa-debug-exit with 0x13 (status 39).

%include "include/multiboot.inc"
%include "include/apic.inc"

%define V_PIT_IOAPIC 0x30
%define V_RTC_LEVEL  0x38
%define V_SELF_IPI   0x40
%define V_PHYS_IPI   0x41
%define V_TIMER      0x50

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    call idt_init
    mov ecx, 0x20
    mov eax, pic_irq0
    call set_vector
    mov ecx, V_PIT_IOAPIC
    mov eax, pit_ioapic
    call set_vector
    mov ecx, V_RTC_LEVEL
    mov eax, rtc_level
    call set_vector
    mov ecx, V_SELF_IPI
    mov eax, self_ipi
    call set_vector
    mov ecx, V_PHYS_IPI
    mov eax, phys_ipi
    call set_vector
    mov ecx, V_TIMER
    mov eax, apic_timer
    call set_vector
    mov ecx, 0xff
    mov eax, spurious
    call set_vector
    call pic_init_masked

    ; ---- local APIC identity, then software-enable it with spurious vector 0xff.
    mov esi, msg_id
    call puts
    mov eax, [LAPIC_ID]
    shr eax, 24
    call put_hex8
    call newline
    mov esi, msg_version
    call puts
    mov eax, [LAPIC_VERSION]
    call put_hex32
    call newline
    mov dword [LAPIC_SVR], 0x1ff
    mov dword [LAPIC_TPR], 0
    mov dword [LAPIC_LVT_LINT0], 0x700       ; ExtINT: the 8259 in virtual-wire mode
    mov dword [LAPIC_LVT_LINT1], 0x400       ; NMI
    mov dword [LAPIC_LVT_TIMER], 0x10000 | V_TIMER
    mov dword [LAPIC_LVT_ERROR], 0x10000 | 0xfe
    mov esi, msg_svr
    call puts
    mov eax, [LAPIC_SVR]
    call put_hex32
    call newline

    ; ---- IOAPIC: version, then pin 2 -> vector 0x30, edge, fixed, physical destination APIC 0.
    mov esi, msg_ioapic_ver
    call puts
    mov eax, 1
    call ioapic_read
    call put_hex32
    call newline
    mov eax, 0x15                           ; entry 2, high half: destination 0
    xor edx, edx
    call ioapic_write
    mov eax, 0x14                           ; entry 2, low half
    mov edx, V_PIT_IOAPIC
    call ioapic_write
    mov esi, msg_redir
    call puts
    mov eax, 0x15
    call ioapic_read
    call put_hex32
    mov al, ':'
    call putc
    mov eax, 0x14
    call ioapic_read
    call put_hex32
    call newline

    ; PIT counter 0: mode 2, divisor 1193 (about 1 kHz).
    mov al, 0x34
    out 0x43, al
    mov al, 1193 & 0xff
    out 0x40, al
    mov al, 1193 >> 8
    out 0x40, al
    mov esi, pit_ioapic_count
    mov eax, 20
    call wait_count
    mov eax, 0x14                           ; mask pin 2 again
    mov edx, 0x10000 | V_PIT_IOAPIC
    call ioapic_write
    mov esi, msg_pit_ioapic
    call puts

    ; ---- the 8259 through LINT0 (ExtINT) while the local APIC is enabled.
    mov al, 0xfe                            ; master: IRQ0 only
    out 0x21, al
    mov esi, pic_count
    mov eax, 20
    call wait_count
    mov al, 0xff
    out 0x21, al
    mov esi, msg_lint0
    call puts

    ; ---- RTC periodic interrupt, level-triggered through IOAPIC pin 8 (vector 0x38).
    mov dword [rirr_in_handler], 1
    mov eax, 0x21
    xor edx, edx
    call ioapic_write
    mov eax, 0x20
    mov edx, 0x8000 | V_RTC_LEVEL           ; level, active high, fixed, unmasked
    call ioapic_write
    mov al, 0x0a
    mov ah, 0x26                            ; 1024 Hz
    call cmos_write
    mov al, 0x0b
    call cmos_read
    or al, 0x40                             ; PIE
    mov ah, al
    mov al, 0x0b
    call cmos_write
    mov al, 0x0c
    call cmos_read
    mov esi, rtc_count
    mov eax, 16
    call wait_count
    mov al, 0x0b
    call cmos_read
    and al, ~0x40
    mov ah, al
    mov al, 0x0b
    call cmos_write
    mov al, 0x0c
    call cmos_read
    mov eax, 0x20
    mov edx, 0x10000 | 0x8000 | V_RTC_LEVEL
    call ioapic_write
    mov esi, msg_rtc_level
    call puts
    mov eax, [rirr_in_handler]
    call put_hex8
    mov esi, msg_after_eoi
    call puts
    mov eax, [rirr_after_eoi]
    call put_hex8
    mov esi, msg_tmr
    call puts
    mov eax, [tmr_in_handler]
    call put_hex8
    call newline

    ; ---- self-IPI through the ICR shorthand, then an IPI to physical destination 0 (ourselves).
    mov dword [LAPIC_ICR_HI], 0
    mov dword [LAPIC_ICR_LO], 0x00044000 | V_SELF_IPI
    mov esi, self_ipi_count
    mov eax, 1
    call wait_count
    mov esi, msg_self_ipi
    call puts
    mov eax, [ipi_isr]
    call put_hex32
    mov esi, msg_ppr
    call puts
    mov eax, [ipi_ppr]
    call put_hex8
    call newline
    mov dword [LAPIC_ICR_HI], 0             ; destination APIC ID 0
    mov dword [LAPIC_ICR_LO], 0x00004000 | V_PHYS_IPI
    mov esi, phys_ipi_count
    mov eax, 1
    call wait_count
    mov esi, msg_phys_ipi
    call puts
    mov eax, [LAPIC_ICR_LO]
    shr eax, 12
    and eax, 1
    call put_hex8
    call newline

    ; ---- local APIC timer: one-shot (1 ms at divide-by-1), then periodic until 10 more interrupts.
    mov dword [LAPIC_TIMER_DCR], 0xb
    mov dword [LAPIC_LVT_TIMER], V_TIMER
    mov dword [LAPIC_TIMER_ICR], 1000000
    mov esi, timer_count
    mov eax, 1
    call wait_count
    mov esi, msg_oneshot
    call puts
    mov eax, [LAPIC_TIMER_CCR]
    call put_hex32
    call newline
    mov dword [LAPIC_LVT_TIMER], 0x20000 | V_TIMER
    mov dword [LAPIC_TIMER_ICR], 1000000
    mov esi, timer_count
    mov eax, 11
    call wait_count
    mov esi, msg_periodic_bad
    mov eax, [LAPIC_TIMER_CCR]
    test eax, eax
    jz .ccr_done
    cmp eax, 1000000
    ja .ccr_done
    mov esi, msg_periodic_ok
.ccr_done:
    call puts
    mov dword [LAPIC_LVT_TIMER], 0x30000 | V_TIMER
    mov dword [LAPIC_TIMER_ICR], 0
    mov esi, msg_timer_regs
    call puts
    mov eax, [LAPIC_TIMER_DCR]
    call put_hex32
    mov al, ' '
    call putc
    mov eax, [LAPIC_LVT_TIMER]
    call put_hex32
    call newline

    mov esi, msg_stray
    call puts
    mov eax, [stray_count]
    call put_hex32
    call newline
    mov esi, msg_done
    call puts
    mov al, 0x13
    jmp debug_exit

; CMOS index al -> al.
cmos_read:
    out 0x70, al
    in al, 0x71
    ret

; CMOS index al <- ah.
cmos_write:
    out 0x70, al
    mov al, ah
    out 0x71, al
    ret

pic_irq0:
    push eax
    inc dword [pic_count]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd

pit_ioapic:
    inc dword [pit_ioapic_count]
    mov dword [LAPIC_EOI], 0
    iretd

rtc_level:
    push eax
    mov eax, 0x20                           ; entry 8, low half: Remote IRR is bit 14
    call ioapic_read
    shr eax, 14
    and eax, 1
    and [rirr_in_handler], eax
    mov eax, [LAPIC_TMR + 0x10]             ; TMR bits for vectors 32-63
    shr eax, V_RTC_LEVEL - 32
    and eax, 1
    mov [tmr_in_handler], eax
    mov al, 0x0c                            ; register C: acknowledges the RTC, its line falls
    out 0x70, al
    in al, 0x71
    mov dword [LAPIC_EOI], 0                ; broadcast to the IOAPIC: Remote IRR clears
    mov eax, 0x20
    call ioapic_read
    shr eax, 14
    and eax, 1
    or [rirr_after_eoi], eax
    inc dword [rtc_count]
    pop eax
    iretd

self_ipi:
    push eax
    mov eax, [LAPIC_ISR + 0x20]             ; ISR bits for vectors 64-95
    mov [ipi_isr], eax
    mov eax, [LAPIC_PPR]
    mov [ipi_ppr], eax
    inc dword [self_ipi_count]
    mov dword [LAPIC_EOI], 0
    pop eax
    iretd

phys_ipi:
    inc dword [phys_ipi_count]
    mov dword [LAPIC_EOI], 0
    iretd

apic_timer:
    inc dword [timer_count]
    mov dword [LAPIC_EOI], 0
    iretd

spurious:
    inc dword [stray_count]
    iretd

msg_banner:       db "ActorVmm apic guest", 10, 0
msg_id:           db "lapic: id=", 0
msg_version:      db "lapic: version=", 0
msg_svr:          db "lapic: svr=", 0
msg_ioapic_ver:   db "ioapic: version=", 0
msg_redir:        db "ioapic: redirection entry 2=", 0
msg_pit_ioapic:   db "ioapic: 20 pit interrupts on pin 2", 10, 0
msg_lint0:        db "lapic: 20 pic interrupts through lint0 (extint)", 10, 0
msg_rtc_level:    db "ioapic: 16 level rtc interrupts on pin 8; remote irr in handler=", 0
msg_after_eoi:    db " after eoi=", 0
msg_tmr:          db " tmr=", 0
msg_self_ipi:     db "lapic: self-ipi delivered; isr[64-95]=", 0
msg_ppr:          db " ppr=", 0
msg_phys_ipi:     db "lapic: ipi to apic 0 delivered; delivery status=", 0
msg_oneshot:      db "lapic timer: one-shot fired; current count=", 0
msg_periodic_ok:  db "lapic timer: 10 periodic interrupts; current count in range", 10, 0
msg_periodic_bad: db "lapic timer: 10 periodic interrupts; current count out of range", 10, 0
msg_timer_regs:   db "lapic timer: dcr/lvt=", 0
msg_stray:        db "stray interrupts=", 0
msg_done:         db "apic: done", 10, 0

%include "include/runtime.inc"

section .bss
alignb 4
pic_count:        resd 1
pit_ioapic_count: resd 1
rtc_count:        resd 1
rirr_in_handler:  resd 1
rirr_after_eoi:   resd 1
tmr_in_handler:   resd 1
self_ipi_count:   resd 1
phys_ipi_count:   resd 1
ipi_isr:          resd 1
ipi_ppr:          resd 1
timer_count:      resd 1
alignb 16
stack:            resb 4096
stack_top:

%include "include/footer.inc"
