// The ACPI power button as a VM's kernel side offers it (kernel-irqchip=on keeps the ACPI PM block in the
// kernel, where the host cannot reach it as a device): pressing it sets PM1_STS.PWRBTN_STS and raises the SCI
// when the guest has enabled it, the event a guest's ACPI driver turns into an orderly power-off. Optional:
// a VM that has no in-kernel PM block does not implement it.
namespace ActorVmm.Core.Accel;

public interface IPowerButton
{
    /// <summary>Presses the power button once. Thread-safe. False when the PM block is not in the kernel in this VM's irqchip mode.</summary>
    bool PressPowerButton();
}
