// What a boot loader hands to the machine builder: the register state the boot vCPU starts with.
using ActorVmm.Core.Accel;

namespace ActorVmm.Core.Boot;

/// <summary>The boot vCPU's initial registers, as a loader prepared them (guest memory is already written).</summary>
public sealed record BootState(CpuRegisters Registers, SystemRegisters System)
{
    /// <summary>Guest-physical address of the boot information the loader wrote (multiboot: the info structure).</summary>
    public ulong InfoAddress { get; init; }

    /// <summary>First guest-physical address past everything the loader wrote (kernel, modules, tables).</summary>
    public ulong LoadedEnd { get; init; }
}

/// <summary>A boot image (kernel file, module) is unusable; the message names the file and the problem.</summary>
public sealed class BootImageException(string message) : Exception(message);
