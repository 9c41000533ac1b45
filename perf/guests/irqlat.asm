; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; Interrupt latency guest (perf/ActorVmm.Perf/InterruptLatencyBenchmarks.cs): the 8259 pair at vectors
; 0x20/0x28 with only IRQ4 (COM1's line) unmasked, then STI/HLT forever. The IRQ4 handler sends the EOI and
; writes port 0x80, which the benchmark's exit handler takes as "the guest's handler ran". Port 0x81 is
; written once, when the guest is ready. Built with
;   nasm -f bin -I tests/Guests/ -o irqlat.bin perf/guests/irqlat.asm

%include "include/multiboot.inc"
%include "include/apic.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call idt_init
    call pic_init_masked
    mov ecx, 0x24
    mov eax, irq4
    call set_vector
    in al, 0x21
    and al, ~0x10
    out 0x21, al
    out 0x81, al
.idle:
    sti
    hlt
    jmp .idle

irq4:
    push eax
    mov al, 0x20
    out 0x20, al
    out 0x80, al
    pop eax
    iret

%include "include/runtime.inc"

section .bss
alignb 16
stack:      resb 4096
stack_top:

%include "include/footer.inc"
