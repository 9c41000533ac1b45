// A Multiboot v1 kernel image (Multiboot Specification 0.6.96), parsed and validated up front so that a bad
// file fails before the VM starts with a message naming the file and the problem.
// The header (magic 0x1BADB002, flags, checksum) must lie 4-byte aligned in the first 8192 bytes. Flags:
//   bit 0  page-align modules          honoured (modules are always page aligned)
//   bit 1  memory information          honoured (mem_* and mmap_* are always provided)
//   bit 2  video mode table            not honoured: there is no framebuffer; accepted with a warning
//   bits 3-15                          required features this loader does not know: the image is rejected
//   bit 16 a.out kludge                header_addr/load_addr/load_end_addr/bss_end_addr/entry_addr are used
//   bits 17-31                         optional; ignored
// Without bit 16 the file must be a 32-bit little-endian i386 ELF; its PT_LOAD segments are loaded at their
// physical addresses (p_paddr) and a virtual entry point is translated through the segment that holds it,
// as GRUB does. A 64-bit ELF is rejected with a message saying so (Multiboot v1 cannot load it).
using System.Buffers.Binary;

namespace ActorVmm.Core.Boot;

public enum MultibootFormat
{
    /// <summary>Addresses from the header (flags bit 16); the file is a flat image.</summary>
    AoutKludge,
    /// <summary>32-bit ELF program headers.</summary>
    Elf32,
}

/// <summary>One piece of the image to place in guest memory: file bytes, then zeros up to MemorySize.</summary>
public sealed record MultibootSegment(uint Address, ReadOnlyMemory<byte> Data, uint MemorySize)
{
    /// <summary>Exclusive end address.</summary>
    public ulong End => (ulong)Address + MemorySize;
}

public sealed class MultibootImage : IKernelImage
{
    public const uint HeaderMagic = 0x1BADB002;
    public const int SearchLimit = 8192;

    public const uint FlagPageAlignModules = 1u << 0;
    public const uint FlagMemoryInfo = 1u << 1;
    public const uint FlagVideoMode = 1u << 2;
    public const uint FlagAoutKludge = 1u << 16;

    private MultibootImage(string name, int headerOffset, uint flags, MultibootFormat format, uint entry,
        IReadOnlyList<MultibootSegment> segments, IReadOnlyList<string> warnings)
    {
        Name = name;
        HeaderOffset = headerOffset;
        Flags = flags;
        Format = format;
        Entry = entry;
        Segments = segments;
        Warnings = warnings;
    }

    /// <summary>The name used in errors (usually the file path).</summary>
    public string Name { get; }

    /// <summary>File offset of the multiboot header.</summary>
    public int HeaderOffset { get; }

    public uint Flags { get; }
    public MultibootFormat Format { get; }

    /// <summary>Physical entry address.</summary>
    public uint Entry { get; }

    /// <summary>What to load, in file order.</summary>
    public IReadOnlyList<MultibootSegment> Segments { get; }

    /// <summary>Lowest address any segment occupies.</summary>
    public uint LoadStart => Segments.Min(s => s.Address);

    /// <summary>Exclusive end of the highest segment (bss included).</summary>
    public ulong LoadEnd => Segments.Max(s => s.End);

    /// <summary>Things the loader accepted but does not honour (e.g. a requested video mode).</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>Finds and validates the multiboot header and the load layout.</summary>
    /// <exception cref="BootImageException">The file is not a usable Multiboot v1 kernel; the message names it and why.</exception>
    public static MultibootImage Parse(ReadOnlyMemory<byte> file, string nameForErrors)
    {
        ArgumentException.ThrowIfNullOrEmpty(nameForErrors);
        var name = nameForErrors;
        var span = file.Span;
        BootImageException Fail(string problem) => new($"{name}: {problem}");

        int header = FindHeader(span);
        if (header < 0)
        {
            if (span.Length < 12) throw Fail($"file is too short to be a multiboot kernel ({span.Length} bytes)");
            if (IsElf64(span)) throw Fail("is a 64-bit ELF without a Multiboot v1 header; Multiboot v1 loads only 32-bit ELF or a.out-kludge images");
            throw Fail($"no Multiboot v1 header (magic 0x{HeaderMagic:X8} with a valid checksum, 4-byte aligned) in the first {SearchLimit} bytes");
        }
        uint flags = U32(span, header + 4);
        var warnings = new List<string>();

        uint unknownRequired = flags & 0xffff & ~(FlagPageAlignModules | FlagMemoryInfo | FlagVideoMode);
        if (unknownRequired != 0)
            throw Fail($"multiboot header at offset 0x{header:x} requires features this loader cannot provide (flags bits 0x{unknownRequired:x4} of 0x{flags:x8})");
        if ((flags & FlagVideoMode) != 0)
            warnings.Add($"{name}: video mode requested (flags bit 2) but there is no framebuffer; the kernel gets text-mode information only");

        int headerSize = (flags & FlagVideoMode) != 0 ? 48 : (flags & FlagAoutKludge) != 0 ? 32 : 12;
        if (header + headerSize > span.Length)
            throw Fail($"file is truncated: the multiboot header at offset 0x{header:x} needs {headerSize} bytes but the file ends at 0x{span.Length:x}");

        if ((flags & FlagAoutKludge) != 0)
        {
            var (entry, segment) = ParseAoutKludge(file, header, Fail);
            return new MultibootImage(name, header, flags, MultibootFormat.AoutKludge, entry, [segment], warnings);
        }
        var (elfEntry, segments) = ParseElf(file, Fail);
        return new MultibootImage(name, header, flags, MultibootFormat.Elf32, elfEntry, segments, warnings);
    }

    /// <summary>True when a valid Multiboot v1 header lies in the first <see cref="SearchLimit"/> bytes.</summary>
    public static bool HasHeader(ReadOnlySpan<byte> file) => FindHeader(file) >= 0;

    /// <inheritdoc/>
    string IKernelImage.Format => Format == MultibootFormat.AoutKludge ? "Multiboot v1 (a.out kludge)" : "Multiboot v1 ELF32";

    private static int FindHeader(ReadOnlySpan<byte> span)
    {
        int limit = Math.Min(span.Length, SearchLimit) - 12;
        for (int off = 0; off <= limit; off += 4)
        {
            if (U32(span, off) != HeaderMagic) continue;
            uint flags = U32(span, off + 4);
            uint checksum = U32(span, off + 8);
            if (unchecked(HeaderMagic + flags + checksum) == 0) return off;
        }
        return -1;
    }

    private static (uint Entry, MultibootSegment Segment) ParseAoutKludge(ReadOnlyMemory<byte> file, int header, Func<string, BootImageException> fail)
    {
        var span = file.Span;
        uint headerAddr = U32(span, header + 12);
        uint loadAddr = U32(span, header + 16);
        uint loadEndAddr = U32(span, header + 20);
        uint bssEndAddr = U32(span, header + 24);
        uint entry = U32(span, header + 28);

        if (loadAddr > headerAddr)
            throw fail($"a.out kludge: load_addr 0x{loadAddr:x} is above header_addr 0x{headerAddr:x}");
        ulong fileStart = (ulong)header - (headerAddr - loadAddr);
        if ((long)header - (long)(headerAddr - loadAddr) < 0)
            throw fail($"a.out kludge: header_addr 0x{headerAddr:x} - load_addr 0x{loadAddr:x} puts the load start before the beginning of the file");
        ulong loadSize;
        if (loadEndAddr == 0)
        {
            loadSize = (ulong)span.Length - fileStart;
        }
        else
        {
            if (loadEndAddr < loadAddr)
                throw fail($"a.out kludge: load_end_addr 0x{loadEndAddr:x} is below load_addr 0x{loadAddr:x}");
            loadSize = loadEndAddr - loadAddr;
            if (fileStart + loadSize > (ulong)span.Length)
                throw fail($"file is truncated: the a.out kludge loads 0x{loadSize:x} bytes from file offset 0x{fileStart:x} but the file is 0x{span.Length:x} bytes");
        }
        ulong end = loadAddr + loadSize;
        ulong memEnd = end;
        if (bssEndAddr != 0)
        {
            if (bssEndAddr < end)
                throw fail($"a.out kludge: bss_end_addr 0x{bssEndAddr:x} is below the end of the loaded data 0x{end:x}");
            memEnd = bssEndAddr;
        }
        if (memEnd > 1UL << 32)
            throw fail($"a.out kludge: the image 0x{loadAddr:x}-0x{memEnd:x} runs past 4 GiB");
        if (memEnd == loadAddr)
            throw fail("a.out kludge: the image loads nothing (load_end_addr equals load_addr)");
        if (entry < loadAddr || entry >= memEnd)
            throw fail($"a.out kludge: entry_addr 0x{entry:x} is outside the loaded image 0x{loadAddr:x}-0x{memEnd - 1:x}");
        var data = file.Slice((int)fileStart, (int)loadSize);
        return (entry, new MultibootSegment(loadAddr, data, (uint)(memEnd - loadAddr)));
    }

    private static (uint Entry, List<MultibootSegment> Segments) ParseElf(ReadOnlyMemory<byte> file, Func<string, BootImageException> fail)
    {
        var span = file.Span;
        if (span.Length < 4 || span[0] != 0x7f || span[1] != (byte)'E' || span[2] != (byte)'L' || span[3] != (byte)'F')
            throw fail("the multiboot header does not set flags bit 16 (a.out kludge) and the file is not ELF");
        if (span.Length < 52)
            throw fail($"file is truncated: an ELF32 header needs 52 bytes, the file has {span.Length}");
        if (span[4] == 2)
            throw fail("is a 64-bit ELF (ELFCLASS64); Multiboot v1 loads only 32-bit ELF (link with -m elf_i386, or use the a.out kludge)");
        if (span[4] != 1)
            throw fail($"ELF class {span[4]} is not ELFCLASS32");
        if (span[5] != 1)
            throw fail("ELF data encoding is not little-endian");
        ushort type = U16(span, 16);
        ushort machine = U16(span, 18);
        if (machine != 3)
            throw fail($"ELF machine {machine} is not EM_386 (3)");
        if (type != 2)
            throw fail($"ELF type {type} is not ET_EXEC (2)");
        uint entry = U32(span, 24);
        uint phoff = U32(span, 28);
        ushort phentsize = U16(span, 42);
        ushort phnum = U16(span, 44);
        if (phnum == 0)
            throw fail("ELF has no program headers");
        if (phentsize < 32)
            throw fail($"ELF program header size {phentsize} is smaller than 32");
        if ((ulong)phoff + (ulong)phentsize * phnum > (ulong)span.Length)
            throw fail($"file is truncated: {phnum} ELF program headers at 0x{phoff:x} run past the end of the file (0x{span.Length:x})");

        var segments = new List<MultibootSegment>();
        uint? physEntry = null;
        for (int i = 0; i < phnum; i++)
        {
            int ph = (int)phoff + i * phentsize;
            if (U32(span, ph) != 1) continue; // PT_LOAD
            uint offset = U32(span, ph + 4);
            uint vaddr = U32(span, ph + 8);
            uint paddr = U32(span, ph + 12);
            uint filesz = U32(span, ph + 16);
            uint memsz = U32(span, ph + 20);
            if (memsz < filesz)
                throw fail($"ELF segment {i}: p_memsz 0x{memsz:x} is smaller than p_filesz 0x{filesz:x}");
            if ((ulong)offset + filesz > (ulong)span.Length)
                throw fail($"file is truncated: ELF segment {i} needs file bytes 0x{offset:x}-0x{(ulong)offset + filesz:x} but the file is 0x{span.Length:x} bytes");
            if ((ulong)paddr + memsz > 1UL << 32)
                throw fail($"ELF segment {i} at 0x{paddr:x}+0x{memsz:x} runs past 4 GiB");
            if (memsz == 0) continue;
            segments.Add(new MultibootSegment(paddr, file.Slice((int)offset, (int)filesz), memsz));
            if (physEntry is null && entry - vaddr < memsz) physEntry = paddr + (entry - vaddr);
        }
        if (segments.Count == 0)
            throw fail("ELF has no loadable (PT_LOAD) segments");
        uint resolved = physEntry ?? entry;
        if (!segments.Any(s => resolved >= s.Address && resolved < s.End))
            throw fail($"ELF entry point 0x{entry:x} is not inside any loadable segment");
        return (resolved, segments);
    }

    private static bool IsElf64(ReadOnlySpan<byte> span)
        => span.Length > 4 && span[0] == 0x7f && span[1] == (byte)'E' && span[2] == (byte)'L' && span[3] == (byte)'F' && span[4] == 2;

    private static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]);

    private static ushort U16(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(s[offset..]);
}
