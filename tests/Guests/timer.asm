; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; timer: the PC's interrupt controller and timers as a guest sees them. Programs the 8259A pair (vectors
; 0x20/0x28), runs the 8254 counter 0 as a 1 kHz rate generator and counts 100 IRQ0 interrupts with STI/HLT,
; latches counter 0, watches the port 0x61 refresh bit toggle, prints the RTC's reset register values and the
; memory-size CMOS bytes, takes 32 RTC periodic interrupts on IRQ8 through the slave PIC, and checks that the
; ACPI PM timer advances (its port from the FADT, include/acpi.inc: 0x608 on QEMU's PIIX4, 0x408 on vmm; 0x608
; without a FADT). Every line printed is independent of timing, so the output is the same on
; every run and under QEMU. Exits through isa-debug-exit with 0x12 (status 37).

%include "include/multiboot.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts

    ; IDT: 0-31 -> unexpected, 0x20 -> irq0, 0x28 -> irq8, others -> spurious (EOI to both PICs).
    xor ecx, ecx
.gate:
    mov eax, unexpected
    cmp ecx, 32
    jb .set
    mov eax, spurious
    cmp ecx, 0x20
    jne .not0
    mov eax, irq0
.not0:
    cmp ecx, 0x28
    jne .set
    mov eax, irq8
.set:
    mov edi, idt
    call set_gate
    inc ecx
    cmp ecx, 48
    jb .gate
    lidt [idt_descriptor]

    ; 8259A pair: ICW1 edge + ICW4, ICW2 vector bases, ICW3 cascade on IR2, ICW4 8086 mode.
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    out 0xa1, al
    mov al, 0xfa                ; master: IRQ0 and the cascade unmasked
    out 0x21, al
    mov al, 0xff                ; slave: all masked
    out 0xa1, al
    ; OCW3: read the IMR back through the data port
    in al, 0x21
    mov esi, msg_imr
    call puts
    call put_hex8
    call newline

    ; 8254 counter 0: mode 2, binary, LSB then MSB, divisor 1193 (about 1 kHz).
    mov al, 0x34
    out 0x43, al
    mov al, 1193 & 0xff
    out 0x40, al
    mov al, 1193 >> 8
    out 0x40, al

    sti
.wait_pit:
    hlt
    cmp dword [ticks], 100
    jb .wait_pit
    cli
    mov esi, msg_pit
    call puts

    ; Counter latch command for counter 0, then read LSB and MSB: the count is within 1..1193.
    mov al, 0x00
    out 0x43, al
    in al, 0x40
    mov ah, al
    in al, 0x40
    xchg al, ah
    movzx eax, ax
    mov esi, msg_latch_bad
    test eax, eax
    jz .latch_done
    cmp eax, 1193
    ja .latch_done
    mov esi, msg_latch_ok
.latch_done:
    call puts

    ; Port 0x61 bit 4 (refresh request) toggles on its own; firmware delay loops count the toggles.
    in al, 0x61
    and al, 0x10
    mov bl, al
    mov ecx, 1000000
.refresh:
    in al, 0x61
    and al, 0x10
    cmp al, bl
    jne .toggled
    loop .refresh
    mov esi, msg_refresh_bad
    jmp .refresh_done
.toggled:
    mov esi, msg_refresh_ok
.refresh_done:
    call puts

    ; RTC registers A and B after reset, and the memory-size bytes firmware reads from CMOS.
    mov esi, msg_rtc_ab
    call puts
    mov al, 0x0a
    call cmos_read
    call put_hex8
    mov al, ' '
    call putc
    mov al, 0x0b
    call cmos_read
    and al, 0x7f                ; SET aside, what the reset leaves
    call put_hex8
    call newline
    mov esi, msg_cmos
    call puts
    mov esi, cmos_bytes
.cmos_next:
    mov al, [esi]
    test al, al
    jz .cmos_done
    call cmos_read
    call put_hex8
    mov al, ' '
    call putc
    inc esi
    jmp .cmos_next
.cmos_done:
    call newline

    ; RTC periodic interrupt: divider normal (DV=010), rate 6 (1024 Hz), PIE on, 24-hour mode.
    mov al, 0x0a
    mov ah, 0x26
    call cmos_write
    mov al, 0x0b
    call cmos_read
    or al, 0x42
    mov ah, al
    mov al, 0x0b
    call cmos_write
    mov al, 0x0c                ; clear any pending flags
    call cmos_read
    mov al, 0xfe                ; slave: IRQ8 unmasked
    out 0xa1, al
    mov al, 0xfb                ; master: only the cascade (the PIT's IRQ0 masked now)
    out 0x21, al
    sti
.wait_rtc:
    hlt
    cmp dword [rtc_ticks], 32
    jb .wait_rtc
    cli
    mov al, 0x0b
    call cmos_read
    and al, ~0x40
    mov ah, al
    mov al, 0x0b
    call cmos_write
    mov esi, msg_rtc
    call puts

    ; ACPI PM timer (PM_TMR_BLK from the FADT; PIIX4 PM at 0x600, timer at 0x608): 24-bit, 3.58 MHz; it must move.
    call acpi_pm_ports
    test dx, dx
    jnz .pm_port
    mov dx, 0x608
.pm_port:
    in eax, dx
    and eax, 0xffffff
    mov ebx, eax
    mov ecx, 1000000
.pm:
    in eax, dx
    and eax, 0xffffff
    cmp eax, ebx
    jne .pm_ok
    loop .pm
    mov esi, msg_pm_bad
    jmp .pm_done
.pm_ok:
    mov esi, msg_pm_ok
.pm_done:
    call puts

    mov esi, msg_done
    call puts
    mov al, 0x12
    jmp debug_exit

; CMOS index al (NMI left enabled) -> al.
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

irq0:
    push eax
    inc dword [ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd

irq8:
    push eax
    mov al, 0x0c                ; reading register C acknowledges the RTC interrupt
    out 0x70, al
    in al, 0x71
    inc dword [rtc_ticks]
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop eax
    iretd

spurious:
    push eax
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop eax
    iretd

unexpected:
    mov esi, msg_unexpected
    call puts
    mov al, 0x7f
    jmp debug_exit

idt_descriptor:
    dw 48 * 8 - 1
    dd idt

cmos_bytes: db 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0

msg_banner:      db "ActorVmm timer guest", 10, 0
msg_imr:         db "pic: imr=", 0
msg_pit:         db "pit: 100 ticks on irq0", 10, 0
msg_latch_ok:    db "pit: latched count in range", 10, 0
msg_latch_bad:   db "pit: latched count out of range", 10, 0
msg_refresh_ok:  db "port61: refresh bit toggles", 10, 0
msg_refresh_bad: db "port61: refresh bit stuck", 10, 0
msg_rtc_ab:      db "rtc: a/b=", 0
msg_cmos:        db "cmos: ", 0
msg_rtc:         db "rtc: 32 periodic interrupts on irq8", 10, 0
msg_pm_ok:       db "pmtimer: advancing", 10, 0
msg_pm_bad:      db "pmtimer: stuck", 10, 0
msg_unexpected:  db "unexpected exception", 10, 0
msg_done:        db "timer: done", 10, 0

%include "include/runtime.inc"
%include "include/acpi.inc"

section .bss
alignb 8
idt:        resb 48 * 8
ticks:      resd 1
rtc_ticks:  resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
