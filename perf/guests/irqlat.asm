; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; Interrupt latency guest (perf/ActorVmm.Perf/InterruptLatencyBenchmarks.cs). IRQ4 (COM1's line) is the only
; interrupt source; the guest then idles in STI/HLT forever. Its handler sends the EOI and writes port 0x80,
; which the benchmark's exit handler takes as "the guest's handler ran". Port 0x81 is written once, when the
; guest is ready. Two builds of this one source:
;   default    the 8259 pair at vectors 0x20/0x28 with only IRQ4 unmasked; the interrupt reaches the CPU as
;              ExtINT through the local APIC's LINT0 (virtual-wire mode), the EOI goes to the 8259 (port 0x20).
;   -DIRQLAT_IOAPIC   every 8259 input masked, the local APIC software-enabled, IOAPIC pin 4 redirected to vector 0x34
;              (fixed, edge, physical destination APIC 0); the EOI goes to the local APIC.
; Built with
;   nasm -f bin -I tests/Guests/ [-DIRQLAT_IOAPIC] -o irqlat.bin perf/guests/irqlat.asm

%include "include/multiboot.inc"
%include "include/apic.inc"

%define IOAPIC_VECTOR 0x34

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call idt_init
    call pic_init_masked
%ifdef IRQLAT_IOAPIC
    mov ecx, IOAPIC_VECTOR
    mov eax, irq4
    call set_vector
    mov dword [LAPIC_SVR], 0x1ff        ; software-enabled, spurious vector 0xff
    mov eax, 0x10 + 2 * 4 + 1           ; IOREDTBL4, high dword: destination APIC 0
    xor edx, edx
    call ioapic_write
    mov eax, 0x10 + 2 * 4               ; IOREDTBL4, low dword: unmasked, edge, fixed, physical
    mov edx, IOAPIC_VECTOR
    call ioapic_write
    call ioapic_read                    ; reads back (see below)
    mov eax, [LAPIC_SVR]
%else
    mov ecx, 0x24
    mov eax, irq4
    call set_vector
    in al, 0x21
    and al, ~0x10
    out 0x21, al
    in al, 0x21                         ; reads back (see below)
%endif
    ; A read returns only after the device has taken every earlier write (on the Mailbox route writes are
    ; posted), so the set-up above is in place when the benchmark sees "ready".
    out 0x81, al
.idle:
    sti
    hlt
    jmp .idle

irq4:
    push eax
%ifdef IRQLAT_IOAPIC
    mov dword [LAPIC_EOI], 0
%else
    mov al, 0x20
    out 0x20, al
%endif
    out 0x80, al
    pop eax
    iret

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
