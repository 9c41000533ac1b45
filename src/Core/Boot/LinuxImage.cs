// A Linux bzImage (the x86 boot protocol, Documentation/x86/boot.rst in the kernel tree): the real-mode
// setup sectors with the setup header at file offset 0x1f1, then the protected-mode kernel at
// (setup_sects + 1) * 512. Only what the 64-bit entry and host-side extraction need is read:
//   0x1f1 setup_sects (0 means 4)     0x1f4 syssize (16-byte paragraphs of the protected-mode part)
//   0x1fe boot_flag 0xaa55            0x201 jump byte: the header ends at 0x202 + this byte
//   0x202 "HdrS"                      0x206 version (>= 0x020c: 2.12 brought xloadflags and the 64-bit entry)
//   0x211 loadflags (LOADED_HIGH)     0x22c initrd_addr_max     0x230 kernel_alignment
//   0x234 relocatable_kernel          0x235 min_alignment (log2)   0x236 xloadflags (XLF_KERNEL_64)
//   0x238 cmdline_size                0x248 payload_offset / 0x24c payload_length (from the protected-mode start)
//   0x258 pref_address                0x260 init_size
// Everything is checked against the file size up front; a bad image is a BootImageException naming the
// file and the field. The compressed payload is recognised by its magic (gzip, xz, zstd, bzip2, lzma, lzo,
// lz4); LinuxPayload decompresses the ones the host can.
using System.Buffers.Binary;

namespace ActorVmm.Core.Boot;

public enum LinuxCompression
{
    Unknown,
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    Lzma,
    Lzo,
    Lz4,
}

/// <summary>A parsed, validated bzImage.</summary>
public sealed class LinuxBzImage : IKernelImage
{
    public const int HeaderOffset = 0x1f1;
    public const uint HeaderMagic = 0x53726448; // "HdrS"
    public const ushort MinimumVersion = 0x020c;
    public const byte LoadedHigh = 0x01;
    public const ushort XlfKernel64 = 0x0001;
    public const ushort XlfCanBeLoadedAbove4G = 0x0002;
    /// <summary>The 64-bit entry point's offset from the load address.</summary>
    public const ulong Entry64Offset = 0x200;

    private readonly ReadOnlyMemory<byte> _file;

    private LinuxBzImage(string name, ReadOnlyMemory<byte> file)
    {
        Name = name;
        _file = file;
    }

    public string Name { get; }

    public string Format => $"Linux bzImage (boot protocol {Version >> 8}.{Version & 0xff})";

    public ushort Version { get; private init; }
    public int SetupSectors { get; private init; }
    public byte LoadFlags { get; private init; }
    public ushort XLoadFlags { get; private init; }
    public uint InitrdAddressMax { get; private init; }
    public uint KernelAlignment { get; private init; }
    public bool Relocatable { get; private init; }
    public int MinAlignmentLog2 { get; private init; }
    public uint CmdlineSize { get; private init; }
    public ulong PreferredAddress { get; private init; }
    public uint InitSize { get; private init; }
    public uint PayloadOffset { get; private init; }
    public uint PayloadLength { get; private init; }
    public LinuxCompression Compression { get; private init; }

    /// <summary>File offset of the protected-mode kernel: (setup_sects + 1) * 512.</summary>
    public int KernelOffset => (SetupSectors + 1) * 512;

    /// <summary>The protected-mode kernel (what is loaded at the load address).</summary>
    public ReadOnlyMemory<byte> Kernel => _file[KernelOffset..];

    /// <summary>The compressed payload inside the protected-mode kernel.</summary>
    public ReadOnlyMemory<byte> Payload => _file.Slice(KernelOffset + (int)PayloadOffset, (int)PayloadLength);

    /// <summary>The setup header as the file has it: from 0x1f1 to 0x202 + the jump byte at 0x201.</summary>
    public ReadOnlyMemory<byte> SetupHeader => _file[HeaderOffset..HeaderEnd(_file.Span)];

    /// <summary>True when the file looks like a bzImage (boot flag and "HdrS"); Parse says whether it is usable.</summary>
    public static bool IsBzImage(ReadOnlySpan<byte> file)
        => file.Length >= 0x206 && BinaryPrimitives.ReadUInt16LittleEndian(file[0x1fe..]) == 0xaa55
           && BinaryPrimitives.ReadUInt32LittleEndian(file[0x202..]) == HeaderMagic;

    /// <summary>Validates the setup header and the layout it describes.</summary>
    /// <exception cref="BootImageException">Not a bzImage this loader can boot; the message names the file and the field.</exception>
    public static LinuxBzImage Parse(ReadOnlyMemory<byte> file, string nameForErrors)
    {
        ArgumentException.ThrowIfNullOrEmpty(nameForErrors);
        var s = file.Span;
        BootImageException Fail(string problem) => new($"{nameForErrors}: {problem}");

        if (s.Length < 0x206) throw Fail($"file is too short to be a bzImage ({s.Length} bytes; the setup header alone ends at 0x206)");
        if (BinaryPrimitives.ReadUInt32LittleEndian(s[0x202..]) != HeaderMagic) throw Fail("no Linux setup header (\"HdrS\" at offset 0x202)");
        if (BinaryPrimitives.ReadUInt16LittleEndian(s[0x1fe..]) != 0xaa55) throw Fail("boot_flag at 0x1fe is not 0xaa55");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(s[0x206..]);
        if (version < MinimumVersion)
            throw Fail($"boot protocol {version >> 8}.{version & 0xff} is too old: the 64-bit entry needs 2.12 or later");
        int headerEnd = HeaderEnd(s);
        if (headerEnd < 0x26c) throw Fail($"setup header ends at 0x{headerEnd:x} (jump byte 0x{s[0x201]:x2}); protocol {version >> 8}.{version & 0xff} needs it to reach 0x26c");
        if (s.Length < headerEnd) throw Fail($"file is truncated: the setup header ends at 0x{headerEnd:x} but the file at 0x{s.Length:x}");

        int setupSects = s[0x1f1] == 0 ? 4 : s[0x1f1];
        int kernelOffset = (setupSects + 1) * 512;
        if (kernelOffset >= s.Length) throw Fail($"file is truncated: setup_sects {setupSects} puts the kernel at 0x{kernelOffset:x} but the file ends at 0x{s.Length:x}");
        long syssize = (long)BinaryPrimitives.ReadUInt32LittleEndian(s[0x1f4..]) * 16;
        if (syssize == 0) throw Fail("syssize at 0x1f4 is 0 (no protected-mode kernel)");
        if (kernelOffset + syssize > s.Length)
            throw Fail($"file is truncated: syssize says {syssize} bytes of kernel from 0x{kernelOffset:x} but the file ends at 0x{s.Length:x}");

        byte loadFlags = s[0x211];
        if ((loadFlags & LoadedHigh) == 0) throw Fail($"loadflags 0x{loadFlags:x2} lacks LOADED_HIGH: a zImage (loaded at 0x10000) is not supported");
        ushort xloadFlags = BinaryPrimitives.ReadUInt16LittleEndian(s[0x236..]);
        if ((xloadFlags & XlfKernel64) == 0) throw Fail($"xloadflags 0x{xloadFlags:x4} lacks XLF_KERNEL_64: the kernel has no 64-bit entry point");

        uint alignment = BinaryPrimitives.ReadUInt32LittleEndian(s[0x230..]);
        bool relocatable = s[0x234] != 0;
        int minAlign = s[0x235];
        if (relocatable && (alignment == 0 || (alignment & (alignment - 1)) != 0))
            throw Fail($"kernel_alignment 0x{alignment:x} at 0x230 is not a power of two");
        if (minAlign > 31) throw Fail($"min_alignment {minAlign} at 0x235 is not a plausible log2 alignment");
        uint cmdlineSize = BinaryPrimitives.ReadUInt32LittleEndian(s[0x238..]);
        ulong pref = BinaryPrimitives.ReadUInt64LittleEndian(s[0x258..]);
        uint initSize = BinaryPrimitives.ReadUInt32LittleEndian(s[0x260..]);
        if (initSize < syssize) throw Fail($"init_size 0x{initSize:x} at 0x260 is smaller than the kernel itself (0x{syssize:x})");
        if (pref < 0x100000) throw Fail($"pref_address 0x{pref:x} at 0x258 is below 1 MiB");
        uint payloadOffset = BinaryPrimitives.ReadUInt32LittleEndian(s[0x248..]);
        uint payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(s[0x24c..]);
        if (payloadLength < 4 || (long)kernelOffset + payloadOffset + payloadLength > s.Length)
            throw Fail($"payload (offset 0x{payloadOffset:x}, length {payloadLength}) does not lie inside the kernel (file ends at 0x{s.Length:x})");

        var payload = s.Slice(kernelOffset + (int)payloadOffset, (int)payloadLength);
        return new LinuxBzImage(nameForErrors, file)
        {
            Version = version,
            SetupSectors = setupSects,
            LoadFlags = loadFlags,
            XLoadFlags = xloadFlags,
            InitrdAddressMax = BinaryPrimitives.ReadUInt32LittleEndian(s[0x22c..]),
            KernelAlignment = alignment,
            Relocatable = relocatable,
            MinAlignmentLog2 = minAlign,
            CmdlineSize = cmdlineSize,
            PreferredAddress = pref,
            InitSize = initSize,
            PayloadOffset = payloadOffset,
            PayloadLength = payloadLength,
            Compression = DetectCompression(payload),
        };
    }

    /// <summary>The compression a payload's first bytes announce.</summary>
    public static LinuxCompression DetectCompression(ReadOnlySpan<byte> p)
    {
        if (p.Length >= 4 && p[0] == 0x7f && p[1] == (byte)'E' && p[2] == (byte)'L' && p[3] == (byte)'F') return LinuxCompression.None;
        if (p.Length >= 2 && p[0] == 0x1f && (p[1] == 0x8b || p[1] == 0x9e)) return LinuxCompression.Gzip;
        if (p.Length >= 6 && p[..6].SequenceEqual((ReadOnlySpan<byte>)[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return LinuxCompression.Xz;
        if (p.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(p) == 0xfd2fb528) return LinuxCompression.Zstd;
        if (p.Length >= 3 && p[0] == (byte)'B' && p[1] == (byte)'Z' && p[2] == (byte)'h') return LinuxCompression.Bzip2;
        if (p.Length >= 3 && p[0] == 0x5d && p[1] == 0x00 && p[2] == 0x00) return LinuxCompression.Lzma;
        if (p.Length >= 3 && p[0] == 0x89 && p[1] == (byte)'L' && p[2] == (byte)'Z') return LinuxCompression.Lzo;
        if (p.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(p) == 0x184c2102) return LinuxCompression.Lz4;
        return LinuxCompression.Unknown;
    }

    private static int HeaderEnd(ReadOnlySpan<byte> s) => 0x202 + s[0x201];
}
