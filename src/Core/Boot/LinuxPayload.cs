// Takes the vmlinux ELF out of a bzImage on the host, so the kernel can be entered through PVH without
// running its own decompressor (about 4.5 G guest instructions for Debian's XZ kernel; guests.md §0).
// The payload (setup header payload_offset/payload_length) is one compressed stream followed, for every
// compressor the kernel's build uses, by the uncompressed size as a 32-bit little-endian number (for gzip
// this is the gzip trailer's ISIZE). The size is checked against what came out.
// Decompressors: gzip from the BCL; xz (with the x86 BCJ filter the kernel's build uses), zstd, bzip2 and
// lzma from SharpCompress. lzo and lz4 have no decompressor here and are refused by name.
using System.Buffers.Binary;
using System.IO.Compression;
using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.LZMA;
using SharpCompress.Compressors.Xz;
using SharpCompress.Compressors.ZStandard;

namespace ActorVmm.Core.Boot;

public static class LinuxPayload
{
    /// <summary>The largest vmlinux accepted (a bound on what a hostile image can make the host allocate).</summary>
    public const int MaxUncompressedBytes = 1 << 30;

    /// <summary>The decompressed payload of <paramref name="image"/> (for a real kernel: the vmlinux ELF).</summary>
    /// <exception cref="BootImageException">Unsupported compression or a corrupt payload; the message names the file.</exception>
    public static byte[] Extract(LinuxBzImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var payload = image.Payload;
        uint expected = BinaryPrimitives.ReadUInt32LittleEndian(payload.Span[^4..]);
        BootImageException Fail(string problem) => new($"{image.Name}: {problem}");
        if (image.Compression == LinuxCompression.None) return payload.ToArray();
        if (expected == 0 || expected > MaxUncompressedBytes)
            throw Fail($"the payload's trailing size field says {expected} bytes (expected 1 to {MaxUncompressedBytes})");

        byte[] output = new byte[expected];
        int got;
        try
        {
            using var input = new MemoryStream(payload.ToArray(), writable: false);
            using Stream stream = image.Compression switch
            {
                LinuxCompression.Gzip => new GZipStream(input, CompressionMode.Decompress),
                LinuxCompression.Xz => new XZStream(input),
                LinuxCompression.Zstd => new DecompressionStream(input),
                LinuxCompression.Bzip2 => BZip2Stream.Create(input, SharpCompress.Compressors.CompressionMode.Decompress, decompressConcatenated: false),
                LinuxCompression.Lzma => OpenLzma(input),
                LinuxCompression.Lzo or LinuxCompression.Lz4 =>
                    throw Fail($"the payload is {image.Compression.ToString().ToLowerInvariant()}-compressed, which the host cannot decompress (gzip, xz, zstd, bzip2 and lzma can); boot it with -kernel-boot bzimage"),
                _ => throw Fail("the payload's compression is not recognised (no gzip, xz, zstd, bzip2, lzma, lzo or lz4 magic)"),
            };
            got = ReadFully(stream, output);
            if (got == output.Length && stream.ReadByte() >= 0)
                throw Fail($"the payload decompresses to more than the {expected} bytes its size field gives");
        }
        catch (BootImageException)
        {
            throw;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or InvalidOperationException or ArgumentException
                                      or IndexOutOfRangeException or NotSupportedException or OverflowException)
        {
            throw Fail($"the {image.Compression.ToString().ToLowerInvariant()} payload is corrupt: {e.Message}");
        }
        if (got != output.Length)
            throw Fail($"the payload decompresses to {got} bytes but its size field gives {expected}");
        return output;
    }

    /// <summary>
    /// The vmlinux of <paramref name="image"/> as a PVH kernel.
    /// </summary>
    /// <exception cref="BootImageException">The payload cannot be extracted or holds no PVH-capable ELF.</exception>
    public static PvhImage ExtractPvh(LinuxBzImage image)
    {
        var elf = Extract(image);
        if (!PvhImage.IsElf(elf)) throw new BootImageException($"{image.Name}: the decompressed payload is not an ELF file (a vmlinux is expected)");
        return PvhImage.Parse(elf, image.Name + " (vmlinux)");
    }

    /// <summary>The legacy .lzma container: 5 property bytes, a 64-bit size (often all ones), then the stream.</summary>
    private static LzmaStream OpenLzma(MemoryStream input)
    {
        var props = new byte[5];
        if (input.Read(props) != 5) throw new InvalidDataException("lzma header truncated");
        Span<byte> size = stackalloc byte[8];
        if (input.Read(size) != 8) throw new InvalidDataException("lzma header truncated");
        long outSize = BinaryPrimitives.ReadInt64LittleEndian(size);
        return LzmaStream.Create(props, input, input.Length - input.Position, outSize);
    }

    private static int ReadFully(Stream stream, byte[] buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer, total, buffer.Length - total);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
