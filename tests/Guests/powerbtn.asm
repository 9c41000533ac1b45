; SPDX-License-Identifier: BSD-2-Clause
; Copyright (c) 2026 The ActorVmm authors
;
; powerbtn: waits for the ACPI power button the way an OS's ACPI driver does, then powers off. Sets
; PWRBTN_EN in PM1a_EN (0x602) and SCI_EN in PM1a_CNT (0x604), unmasks IRQ9 (the SCI on PIIX4) on the slave
; 8259 and the cascade on the master, and sleeps in HLT. Its SCI handler reads PM1a_STS (0x600); on
; PWRBTN_STS it clears the bit (write 1), counts the press and sends EOIs. After the press it enters S5
; (SLP_TYP 0, SLP_EN) like poweroff.asm, so the host sees a power-off (status 0). Used by the QMP tests:
; `system_powerdown` presses the button. Under QEMU the same sequence needs ACPI mode enabled first.

%include "include/multiboot.inc"
%include "include/apic.inc"

entry:
    cli
    mov esp, stack_top
    call setup_gdt
    call uart_init
    call idt_init
    call pic_init_masked
    mov ecx, 0x29               ; IRQ9 = slave input 1, vector 0x28 + 1
    mov eax, sci
    call set_vector
    mov esi, msg_banner
    call puts

    mov dx, 0x602
    mov ax, 0x0100              ; PWRBTN_EN
    out dx, ax
    mov dx, 0x604
    in ax, dx
    or ax, 0x0001               ; SCI_EN
    out dx, ax
    in al, 0xa1
    and al, ~0x02               ; unmask IRQ9
    out 0xa1, al
    in al, 0x21
    and al, ~0x04               ; unmask the cascade (IRQ2)
    out 0x21, al

    mov esi, msg_waiting
    call puts
.wait:
    sti
    hlt
    cli
    cmp dword [presses], 0
    je .wait

    mov esi, msg_pressed
    call puts
    mov dx, 0x604
    mov ax, 0x2001              ; SLP_EN, SLP_TYP 0 (S5), SCI_EN
    out dx, ax
.halt:
    cli
    hlt
    jmp .halt

sci:
    push eax
    push edx
    mov dx, 0x600
    in ax, dx
    test ax, 0x0100             ; PWRBTN_STS
    jz .eoi
    mov ax, 0x0100
    out dx, ax                  ; write 1 to clear
    inc dword [presses]
.eoi:
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop edx
    pop eax
    iret

msg_banner:  db "ActorVmm powerbtn guest", 10, 0
msg_waiting: db "waiting for the power button", 10, 0
msg_pressed: db "power button pressed: powering off", 10, 0

%include "include/runtime.inc"

section .bss
alignb 16
presses:    resd 1
stack:      resb 4096
stack_top:

%include "include/footer.inc"
