// An ELF kernel with a PVH entry point (Xen's "HVM direct boot" ABI, which Linux implements in
// arch/x86/platform/pvh): the ELF's PT_NOTE segments carry a note named "Xen" of type 18
// (XEN_ELFNOTE_PHYS32_ENTRY) whose 4- or 8-byte descriptor is the physical address of a 32-bit entry point.
// The kernel is loaded by its PT_LOAD segments at their physical addresses (p_paddr), bss zeroed. ELF64
// and ELF32, little-endian, x86 (EM_X86_64 or EM_386) only. A vmlinux taken out of a bzImage by
// LinuxPayload is the usual source; an ELF given to -kernel directly works too.
using System.Buffers.Binary;

namespace ActorVmm.Core.Boot;

/// <summary>One PT_LOAD segment: file bytes at a physical address, then zeros up to MemorySize.</summary>
public sealed record PvhSegment(ulong Address, ReadOnlyMemory<byte> Data, ulong MemorySize)
{
    public ulong End => Address + MemorySize;
}

/// <summary>A parsed, validated PVH ELF kernel.</summary>
public sealed class PvhImage : IKernelImage
{
    public const uint XenElfNotePhys32Entry = 18;
    private const uint PtLoad = 1, PtNote = 4;
    private const ushort EmX86_64 = 62, Em386 = 3;

    private PvhImage(string name, string format, uint entry, IReadOnlyList<PvhSegment> segments)
    {
        Name = name;
        Format = format;
        Entry = entry;
        Segments = segments;
    }

    public string Name { get; }

    public string Format { get; }

    /// <summary>The 32-bit physical entry point from XEN_ELFNOTE_PHYS32_ENTRY.</summary>
    public uint Entry { get; }

    public IReadOnlyList<PvhSegment> Segments { get; }

    public ulong LoadStart => Segments.Min(s => s.Address);

    public ulong LoadEnd => Segments.Max(s => s.End);

    /// <summary>True when the file starts with the ELF magic.</summary>
    public static bool IsElf(ReadOnlySpan<byte> file)
        => file.Length >= 4 && file[0] == 0x7f && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F';

    /// <exception cref="BootImageException">Not an ELF with a usable PVH entry; the message names the file and why.</exception>
    public static PvhImage Parse(ReadOnlyMemory<byte> file, string nameForErrors)
    {
        ArgumentException.ThrowIfNullOrEmpty(nameForErrors);
        var s = file.Span;
        BootImageException Fail(string problem) => new($"{nameForErrors}: {problem}");

        if (!IsElf(s) || s.Length < 52) throw Fail("not an ELF file");
        bool is64 = s[4] switch
        {
            1 => false,
            2 => true,
            _ => throw Fail($"ELF class {s[4]} is neither ELF32 nor ELF64"),
        };
        if (s[5] != 1) throw Fail("ELF is not little-endian");
        if (is64 && s.Length < 64) throw Fail($"file is truncated: {s.Length} bytes is less than an ELF64 header");
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(s[18..]);
        if (machine != EmX86_64 && machine != Em386) throw Fail($"ELF machine {machine} is not x86 (EM_X86_64 or EM_386)");

        ulong phoff = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(s[32..]) : BinaryPrimitives.ReadUInt32LittleEndian(s[28..]);
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(s[(is64 ? 54 : 42)..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(s[(is64 ? 56 : 44)..]);
        int minEntry = is64 ? 56 : 32;
        if (phnum == 0) throw Fail("ELF has no program headers");
        if (phentsize < minEntry) throw Fail($"ELF program header size {phentsize} is less than {minEntry}");
        if (phoff > (ulong)s.Length || (ulong)phnum * (ulong)phentsize > (ulong)s.Length - phoff)
            throw Fail($"file is truncated: {phnum} program headers at 0x{phoff:x} run past the end (0x{s.Length:x})");

        var segments = new List<PvhSegment>();
        uint? entry = null;
        for (int i = 0; i < phnum; i++)
        {
            var ph = s.Slice((int)phoff + i * phentsize, phentsize);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(ph);
            ulong offset, paddr, filesz, memsz;
            if (is64)
            {
                offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
                paddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[24..]);
                filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
                memsz = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
            }
            else
            {
                offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
                paddr = BinaryPrimitives.ReadUInt32LittleEndian(ph[12..]);
                filesz = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
                memsz = BinaryPrimitives.ReadUInt32LittleEndian(ph[20..]);
            }
            if (type != PtLoad && type != PtNote) continue;
            if (offset > (ulong)s.Length || filesz > (ulong)s.Length - offset)
                throw Fail($"file is truncated: program header {i} wants {filesz} bytes at file offset 0x{offset:x} but the file ends at 0x{s.Length:x}");
            if (type == PtNote)
            {
                entry ??= FindPvhEntry(s.Slice((int)offset, (int)filesz), Fail);
                continue;
            }
            if (memsz == 0) continue;
            if (filesz > memsz) throw Fail($"program header {i}: file size {filesz} is larger than memory size {memsz}");
            if (paddr + memsz < paddr || paddr + memsz > 1UL << 40)
                throw Fail($"program header {i}: physical range 0x{paddr:x} + 0x{memsz:x} is not addressable");
            segments.Add(new PvhSegment(paddr, file.Slice((int)offset, (int)filesz), memsz));
        }
        if (entry is null)
            throw Fail("ELF has no PVH entry point (no Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY, type 18): it cannot be booted through PVH");
        if (segments.Count == 0) throw Fail("ELF has no loadable (PT_LOAD) segments");
        var sorted = segments.OrderBy(x => x.Address).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            if (sorted[i].Address < sorted[i - 1].End)
                throw Fail($"PT_LOAD segments at 0x{sorted[i - 1].Address:x} and 0x{sorted[i].Address:x} overlap");
        }
        return new PvhImage(nameForErrors, is64 ? "ELF64 with a PVH entry" : "ELF32 with a PVH entry", entry.Value, sorted);
    }

    /// <summary>The PHYS32_ENTRY note's value among the notes of one PT_NOTE segment, or null.</summary>
    private static uint? FindPvhEntry(ReadOnlySpan<byte> notes, Func<string, BootImageException> fail)
    {
        int at = 0;
        while (at + 12 <= notes.Length)
        {
            uint namesz = BinaryPrimitives.ReadUInt32LittleEndian(notes[at..]);
            uint descsz = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 8)..]);
            long nameAt = at + 12;
            long descAt = nameAt + Align4(namesz);
            long next = descAt + Align4(descsz);
            if (next > notes.Length) return null; // a malformed tail: no more notes
            var name = notes.Slice((int)nameAt, (int)namesz);
            if (type == XenElfNotePhys32Entry && name.SequenceEqual("Xen\0"u8))
            {
                var desc = notes.Slice((int)descAt, (int)descsz);
                ulong value = descsz switch
                {
                    4 => BinaryPrimitives.ReadUInt32LittleEndian(desc),
                    8 => BinaryPrimitives.ReadUInt64LittleEndian(desc),
                    _ => throw fail($"XEN_ELFNOTE_PHYS32_ENTRY has a {descsz}-byte value (4 or 8 expected)"),
                };
                if (value > uint.MaxValue) throw fail($"PVH entry point 0x{value:x} is above 4 GiB");
                return (uint)value;
            }
            at = (int)next;
        }
        return null;
    }

    private static long Align4(uint n) => (n + 3L) & ~3L;
}
