"""Byte-level generators: random bytes, truncations, bit flips, and header bombs written small by hand.

Every bomb DECLARES a huge size in a hand-written header and holds a few bytes of data; nothing here
ever allocates the declared size. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".png", ".tif")


def random_bytes(rng: np.random.Generator, low: int = 0, high: int = 4096) -> bytes:
    """Uniform random bytes, length in [low, high)."""
    return rng.integers(0, 256, int(rng.integers(low, high)), dtype=np.uint8).tobytes()


def truncated(rng: np.random.Generator, data: bytes) -> bytes:
    """``data`` cut at a random length in [0, len) (biased towards the header and the very end)."""
    pick = rng.random()
    if pick < 0.3:
        cut = int(rng.integers(0, min(64, len(data))))
    elif pick < 0.5:
        cut = len(data) - int(rng.integers(1, min(64, len(data)) + 1))
    else:
        cut = int(rng.integers(0, len(data)))
    return data[:cut]


def bit_flipped(rng: np.random.Generator, data: bytes, max_flips: int = 8) -> bytes:
    """``data`` with 1..max_flips random bits flipped (half the time all within the first 256 bytes)."""
    array = bytearray(data)
    span = min(len(array), 256) if rng.random() < 0.5 else len(array)
    for _ in range(int(rng.integers(1, max_flips + 1))):
        position = int(rng.integers(0, span))
        array[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(array)


def spliced(rng: np.random.Generator, data: bytes) -> bytes:
    """``data`` with a random run of bytes overwritten by random values (a damaged sector)."""
    array = bytearray(data)
    start = int(rng.integers(0, len(array)))
    length = int(rng.integers(1, 512))
    array[start : start + length] = rng.integers(
        0, 256, len(array[start : start + length]), dtype=np.uint8
    ).tobytes()
    return bytes(array)


def mutate(rng: np.random.Generator, data: bytes) -> tuple[str, bytes]:
    """One random damage of ``data``: (what was done, the damaged bytes)."""
    kind = ("truncated", "bit-flipped", "spliced")[int(rng.integers(0, 3))]
    function = {"truncated": truncated, "bit-flipped": bit_flipped, "spliced": spliced}[kind]
    return kind, function(rng, data)


# --- header bombs -----------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A ~100-byte PNG declaring ``width`` x ``height`` RGB pixels, with a few rows of real data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (3 * min(width, 4096) + 1) * 2, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int = 65500, height: int = 65500) -> bytes:
    """A baseline JPEG header (SOF0) declaring ``width`` x ``height``, then a few bytes of scan data."""
    soi = b"\xff\xd8"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof += b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    quant = b"\xff\xdb" + struct.pack(">HB", 67, 0) + bytes([1] * 64)
    huff = b"\xff\xc4" + struct.pack(">HB", 3 + 16 + 1, 0) + bytes([0, 1] + [0] * 14) + b"\x00"
    huff += b"\xff\xc4" + struct.pack(">HB", 3 + 16 + 1, 0x10) + bytes([0, 1] + [0] * 14) + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x00\x03\x00" + b"\x00\x3f\x00"
    return soi + quant + sof + huff + sos + b"\x00" * 64 + b"\xff\xd9"


def _ifd_entry(tag: int, kind: int, count: int, value: int) -> bytes:
    """One little-endian classic TIFF IFD entry; ``value`` is inline (SHORT/LONG) or an offset."""
    if kind == 3 and count == 1:
        return struct.pack("<HHIHH", tag, kind, count, value, 0)
    return struct.pack("<HHII", tag, kind, count, value)


def tiff_bomb(width: int = 1_000_000, height: int = 1_000_000, geo: bool = True) -> bytes:
    """A classic TIFF (optionally GeoTIFF, EPSG:32633) declaring ``width`` x ``height`` RGB uint8 in ONE
    deflate strip that holds only a few compressed rows: a few hundred bytes on disk."""
    strip = zlib.compress(b"\x00" * (3 * 4096), 9)
    extra = [] if not geo else [(33550, 12, 3), (33922, 12, 6), (34735, 3, 16)]
    n_entries = 12 + len(extra)
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * n_entries + 4
    blobs: list[bytes] = []

    def blob(data: bytes) -> int:
        offset = data_offset + sum(len(b) for b in blobs)
        blobs.append(data)
        return offset

    bits = blob(struct.pack("<HHH", 8, 8, 8))
    strip_at = blob(strip)
    entries = [
        _ifd_entry(256, 4, 1, width),
        _ifd_entry(257, 4, 1, height),
        _ifd_entry(258, 3, 3, bits),
        _ifd_entry(259, 3, 1, 8),  # deflate
        _ifd_entry(262, 3, 1, 2),  # RGB
        _ifd_entry(273, 4, 1, strip_at),
        _ifd_entry(277, 3, 1, 3),
        _ifd_entry(278, 4, 1, height),  # one strip for the whole image
        _ifd_entry(279, 4, 1, len(strip)),
        _ifd_entry(284, 3, 1, 1),
        _ifd_entry(339, 3, 1, 1),  # unsigned integers
        _ifd_entry(317, 3, 1, 1),  # no predictor
    ]
    if geo:
        scale = blob(struct.pack("<3d", 10.0, 10.0, 0.0))
        tie = blob(struct.pack("<6d", 0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0))
        keys = blob(struct.pack("<16H", 1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633))
        entries += [
            _ifd_entry(33550, 12, 3, scale),
            _ifd_entry(33922, 12, 6, tie),
            _ifd_entry(34735, 3, 16, keys),
        ]
    order = sorted(range(n_entries), key=lambda i: struct.unpack("<H", entries[i][:2])[0])
    ifd = struct.pack("<H", n_entries) + b"".join(entries[i] for i in order) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"".join(blobs)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version-1 .npy header (no data) declaring ``shape``."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (64 - (10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def npz_replace(npz: bytes, members: dict[str, bytes], compress: bool = False) -> bytes:
    """``npz`` with members (``key.npy`` -> raw bytes) replaced or added; others copied as they are."""
    source = zipfile.ZipFile(io.BytesIO(npz))
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as target:
        for name in source.namelist():
            if name not in members:
                target.writestr(name, source.read(name))
        for name, data in members.items():
            target.writestr(name, data)
    return buffer.getvalue()


def zip_bomb_member(size: int) -> tuple[bytes, int]:
    """Deflate data that inflates to a valid .npy of ``size`` bytes (zeros), built without allocating
    it: after a full flush, a 1 MiB block of zeros compresses to the same bytes every time.
    Returns (raw deflate stream, CRC-32 of the inflated bytes)."""
    block = 1 << 20
    header = npy_header((size - 128,), "|u1")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(block)
    chunk = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    n_blocks, rest = divmod(size - len(header), block)
    crc = zlib.crc32(header)
    for _ in range(n_blocks):
        crc = zlib.crc32(zeros, crc)
    tail = bytes(rest)
    crc = zlib.crc32(tail, crc)
    return head + chunk * n_blocks + compressor.compress(tail) + compressor.flush(zlib.Z_FINISH), crc


def npz_with_raw_deflate(npz: bytes, name: str, deflated: bytes, crc: int, size: int) -> bytes:
    """``npz`` with an extra member ``name`` whose deflate data is given raw (zipfile cannot write
    that): the hand-written member goes first, the original members (stored) after it."""
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(deflated), size, len(encoded), 0)
    central_first = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(deflated), size, len(encoded),
        0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    source = zipfile.ZipFile(io.BytesIO(npz))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as target:
        for member in source.namelist():
            target.writestr(member, source.read(member))
    body = buffer.getvalue()
    end = body.rfind(b"PK\x05\x06")
    _sig, _disk, _cd_disk, _here, n_records, central_size, central_offset, _comment = struct.unpack(
        "<IHHHHIIH", body[end : end + 22]
    )
    shift = len(local) + len(encoded) + len(deflated)
    central = (
        central_first + encoded + _shift_central(body[central_offset : central_offset + central_size], shift)
    )
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, n_records + 1, n_records + 1, len(central), shift + central_offset, 0
    )
    return local + encoded + deflated + body[:central_offset] + central + eocd


def _shift_central(central: bytes, shift: int) -> bytes:
    """Central-directory records with their local-header offsets moved by ``shift`` bytes."""
    out = bytearray(central)
    position = 0
    while position < len(out):
        name_len, extra_len, comment_len = struct.unpack("<HHH", out[position + 28 : position + 34])
        (offset,) = struct.unpack("<I", out[position + 42 : position + 46])
        out[position + 42 : position + 46] = struct.pack("<I", offset + shift)
        position += 46 + name_len + extra_len + comment_len
    return bytes(out)
