; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; rtcpm: the MC146818 RTC's register formats and interrupts, and the ACPI PM timer's rate. Prints registers A,
; B and D as programmed; sets 2026-12-31 23:59:59 in BCD 24-hour format (SET held while writing) and prints the
; time registers after the next update-ended interrupt (the new year, day of week included; the wall time is
; never printed); counts periodic interrupts at two rates, shows register C's
; flags for an update-ended interrupt, and measures the PM timer (PM_TMR_BLK from the FADT, include/acpi.inc: 0x608
; on QEMU's PIIX4, 0x408 on vmm; 0x608 without a FADT) across
; 64 RTC periodic interrupts at 1024 Hz (62.5 ms): it must count about 3.58 MHz (within 15%). Everything printed
; is independent of the time of day and of timing. Exits through isa-debug-exit with 0x15 (status 43).

%include "include/multiboot.inc"
%include "include/apic.inc"

%define PM_TMR_DEFAULT 0x608

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    mov esi, msg_banner
    call puts
    call acpi_pm_ports
    test dx, dx
    jnz .pm_port
    mov dx, PM_TMR_DEFAULT
.pm_port:
    mov [pm_port], dx
    call idt_init
    mov ecx, 0x28                           ; IRQ8 on the slave 8259
    mov eax, irq8
    call set_vector
    mov ecx, 0x27                           ; the master's spurious IRQ7
    mov eax, stray
    call set_vector
    call pic_init_masked

    ; ---- register formats
    mov al, 0x0b
    mov ah, 0x02                            ; 24-hour, BCD, no interrupts
    call cmos_write
    mov al, 0x0a
    mov ah, 0x26                            ; 32.768 kHz time base, 1024 Hz periodic rate
    call cmos_write
    mov esi, msg_regs
    call puts
    mov al, 0x0a
    call cmos_read
    and al, 0x7f                            ; UIP aside
    call put_hex8
    mov al, ' '
    call putc
    mov al, 0x0b
    call cmos_read
    call put_hex8
    mov al, ' '
    call putc
    mov al, 0x0d
    call cmos_read
    call put_hex8
    call newline

    ; IRQ8 on the slave, the cascade on the master's IR2
    mov al, 0xfe
    out 0xa1, al
    mov al, 0xfb
    out 0x21, al
    mov al, 0x0a
    mov ah, 0x20                            ; periodic rate 0: no PF while the update cycle is watched
    call cmos_write

    ; ---- time registers: set the last second of 2026 in BCD 24-hour format (SET held while writing), then take
    ; the update-ended interrupt and print what the update made of it. (Binary and 12-hour formats are left
    ; out: QEMU 7.2 does not keep a time written in them across the update, where the MC146818 does.)
    mov esi, msg_bcd24
    mov ebx, set_bcd24
    call set_and_update
    mov al, 0x0b
    mov ah, 0x02
    call cmos_write
    mov al, 0x0a
    mov ah, 0x26
    call cmos_write

    ; ---- periodic interrupts through the 8259
    mov al, 0x0c
    call cmos_read
    mov al, 0x0b
    mov ah, 0x42                            ; PIE, 24-hour, BCD
    call cmos_write
    mov esi, rtc_count
    mov eax, 32
    call wait_count
    mov esi, msg_p1024
    call puts
    mov al, 0x0a
    mov ah, 0x23                            ; 8192 Hz
    call cmos_write
    mov dword [rtc_count], 0
    mov esi, rtc_count
    mov eax, 64
    call wait_count
    mov esi, msg_p8192
    call puts

    ; ---- PM timer against 64 periodic interrupts at 1024 Hz
    mov al, 0x0a
    mov ah, 0x26
    call cmos_write
    mov dword [rtc_count], 0
    mov esi, rtc_count
    mov eax, 1
    call wait_count
    mov dx, [pm_port]
    in eax, dx
    mov [pm_start], eax
    mov esi, rtc_count
    mov eax, 65
    call wait_count
    mov dx, [pm_port]
    in eax, dx
    sub eax, [pm_start]
    and eax, 0xffffff                       ; 24-bit counter
    mov esi, msg_pm_ok
    cmp eax, 190000                         ; 3.579545 MHz * 62.5 ms = 223,722 ticks, +-15%
    jb .pm_bad
    cmp eax, 257000
    jbe .pm_done
.pm_bad:
    mov esi, msg_pm_bad
.pm_done:
    call puts

    ; ---- update-ended interrupt: periodic rate 0 (no PF), UIE on; register C in the handler has IRQF|UF.
    mov al, 0x0b
    mov ah, 0x02
    call cmos_write
    mov al, 0x0a
    mov ah, 0x20
    call cmos_write
    mov al, 0x0c
    call cmos_read
    mov dword [rtc_count], 0
    mov al, 0x0b
    mov ah, 0x12                            ; UIE, 24-hour, BCD
    call cmos_write
    mov esi, rtc_count
    mov eax, 1
    call wait_count
    mov al, 0x0b
    mov ah, 0x02
    call cmos_write
    mov esi, msg_uf
    call puts
    mov al, [last_c]
    and al, 0xd0                            ; IRQF, PF, UF (AF depends on the alarm registers)
    call put_hex8
    call newline

    mov esi, msg_stray
    call puts
    mov eax, [stray_count]
    call put_hex32
    call newline
    mov esi, msg_done
    call puts
    mov al, 0x15
    jmp debug_exit

; ebx: register B's format, then seconds, minutes, hours, day of week, day, month, year in that format; esi: the
; label. Writes them with B.SET held, releases SET with UIE on, waits for the update-ended interrupt and prints
; the label, register B and the seven time registers after the update.
set_and_update:
    push eax
    push ecx
    call puts
    mov al, 0x0b
    call cmos_read
    or al, 0x80                             ; SET first, in the old format: the update cycle stops
    mov ah, al
    mov al, 0x0b
    call cmos_write
    mov ah, [ebx]
    or ah, 0x80                             ; then the new format, still stopped, and the time in it
    mov al, 0x0b
    call cmos_write
    xor ecx, ecx
.write:
    mov al, [time_regs + ecx]
    mov ah, [ebx + 1 + ecx]
    call cmos_write
    inc ecx
    cmp ecx, 7
    jb .write
    mov al, 0x0c
    call cmos_read
    mov dword [rtc_count], 0
    mov ah, [ebx]
    or ah, 0x10                             ; UIE, SET released
    mov al, 0x0b
    call cmos_write
    push esi
    mov esi, rtc_count
    mov eax, 1
    call wait_count
    pop esi
    mov ah, [ebx]
    mov al, 0x0b
    call cmos_write
    mov al, 0x0b
    call cmos_read
    call put_hex8
    mov al, ' '
    call putc
    mov al, '>'
    call putc
    xor ecx, ecx
.read:
    mov al, ' '
    call putc
    mov al, [time_regs + ecx]
    call cmos_read
    call put_hex8
    inc ecx
    cmp ecx, 7
    jb .read
    call newline
    pop ecx
    pop eax
    ret

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

irq8:
    push eax
    mov al, 0x0c
    out 0x70, al
    in al, 0x71
    test al, 0x80                           ; IRQF clear: an edge the 8259 latched before the source was
    jz .eoi                                 ; turned off; nothing to count
    mov [last_c], al
    inc dword [rtc_count]
.eoi:
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop eax
    iretd

time_regs:    db 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09
; register B, then seconds, minutes, hours, day of week (Thursday = 5), day, month, year: 2026-12-31 23:59:59
set_bcd24:    db 0x02, 0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x26

msg_banner:  db "ActorVmm rtcpm guest", 10, 0
msg_regs:    db "rtc: a/b/d=", 0
msg_bcd24:   db "rtc: bcd 24-hour 2026-12-31 23:59:59, b=", 0
msg_p1024:   db "rtc: 32 periodic interrupts at 1024 Hz", 10, 0
msg_p8192:   db "rtc: 64 periodic interrupts at 8192 Hz", 10, 0
msg_pm_ok:   db "pmtimer: about 3.58 MHz against the rtc", 10, 0
msg_pm_bad:  db "pmtimer: rate is not about 3.58 MHz", 10, 0
msg_uf:      db "rtc: update-ended interrupt; c & d0=", 0
msg_stray:   db "stray interrupts=", 0
msg_done:    db "rtcpm: done", 10, 0

%include "include/runtime.inc"
%include "include/acpi.inc"

section .bss
alignb 4
rtc_count:  resd 1
pm_start:   resd 1
pm_port:    resd 1
last_c:     resd 1
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
