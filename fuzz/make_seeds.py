#!/usr/bin/env python3
"""Writes the seed corpora of vhdkit's fuzz targets into fuzz/corpus/<target>/.

Small images (a few KiB to 128 KiB), made here byte by byte (VHDs) or with
the system's own tools (sfdisk, sgdisk, mke2fs, mkfs.fat) when present;
nothing binary is committed. Usage: python3 fuzz/make_seeds.py
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
TIMESTAMP = 0x2E000000
BAT_UNUSED = 0xFFFFFFFF


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def checksum(b):
    return (~sum(b)) & 0xFFFFFFFF


def chs(size):
    """CHS geometry as the VHD specification computes it."""
    ts = min(size // 512, 65535 * 16 * 255)
    if ts >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = ts // spt
    else:
        spt = 17
        cth = ts // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = ts // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = ts // spt
    return cth // heads, heads, spt


def footer(size, disk_type, data_offset):
    c, h, s = chs(size)
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, data_offset, TIMESTAMP)
    f[28:32] = b"vhdk"
    struct.pack_into(">I", f, 32, 0x00010000)
    f[36:40] = b"Wi2k"
    struct.pack_into(">QQHBBI", f, 40, size, size, c, h, s, disk_type)
    f[68:84] = uuid.UUID(int=size ^ disk_type).bytes
    struct.pack_into(">I", f, 64, checksum(f))
    return bytes(f)


def dyn_header(entries, block_size, parent=None):
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 0xFFFFFFFFFFFFFFFF, 1536, 0x00010000, entries, block_size)
    if parent is not None:
        name, pid, loc_off = parent
        h[40:56] = pid
        enc = name.encode("utf-16-be")
        h[64:64 + len(enc)] = enc
        # One W2ru locator: data at loc_off, 512 bytes reserved.
        data = name.encode("utf-16-le")
        struct.pack_into(">IIIIQ", h, 576, 0x57327275, 512, len(data), 0, loc_off)
    struct.pack_into(">I", h, 36, checksum(h))
    return bytes(h)


def dynamic_vhd(size, block_size, blocks, disk_type=3, parent=None):
    """A dynamic (or differencing) VHD; `blocks` maps block index -> data."""
    entries = -(-size // block_size)
    bat_len = -(-entries * 4 // 512) * 512
    pos = 1536 + bat_len
    locator = b""
    if parent is not None:
        name, pid = parent
        locator = name.encode("utf-16-le").ljust(512, b"\0")
        parent = (name, pid, pos)
        pos += 512
    bat = [BAT_UNUSED] * entries
    body = b""
    bitmap_len = -(-(block_size // 512) // 8 // 512) * 512 or 512
    for i, data in sorted(blocks.items()):
        bat[i] = (pos + len(body)) // 512
        body += b"\xff" * bitmap_len + data.ljust(block_size, b"\0")
    bat_bytes = b"".join(struct.pack(">I", e) for e in bat).ljust(bat_len, b"\xff")
    foot = footer(size, disk_type, 512)
    return foot + dyn_header(entries, block_size, parent) + bat_bytes + locator + body + foot


def vhd_seeds():
    pattern = bytes(range(256)) * 16
    seeds = {
        "dynamic-empty-4m": dynamic_vhd(4 << 20, 2 << 20, {}),
        "dynamic-4k-blocks": dynamic_vhd(16 << 10, 4096, {0: pattern, 2: pattern[::-1]}),
        "fixed-8k": (pattern * 2) + footer(8192, 2, 0xFFFFFFFFFFFFFFFF),
        "differencing": dynamic_vhd(
            16 << 10, 4096, {1: pattern}, 4, ("parent.vhd", uuid.UUID(int=7).bytes)
        ),
    }
    for name, data in seeds.items():
        put("image", name, data)
        put("whole_image", name, data)


def tool(*args):
    if shutil.which(args[0]) is None:
        print(f"note: {args[0]} not installed, its seeds are skipped", file=sys.stderr)
        return False
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return True


def blank(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def fs_seeds(tmp):
    ext2 = os.path.join(tmp, "ext2.img")
    blank(ext2, 128 << 10)
    if tool("mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-N", "16", ext2):
        put("ext", "ext2-128k", read(ext2))
        put("expand", "bare-ext2-128k", read(ext2))
    ext4 = os.path.join(tmp, "ext4.img")
    blank(ext4, 128 << 10)
    if tool("mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-N", "16", "-O", "^has_journal", ext4):
        put("ext", "ext4-128k", read(ext4))
    fat = os.path.join(tmp, "fat.img")
    if tool("mkfs.fat", "-C", fat, "64"):
        put("fat", "fat12-64k", read(fat))
        put("expand", "bare-fat12-64k", read(fat))
    fat16 = os.path.join(tmp, "fat16.img")
    if tool("mkfs.fat", "-F", "16", "-s", "1", "-C", fat16, "4200"):
        # The first 64 KiB: the BPB and the start of the FATs.
        put("fat", "fat16-head", read(fat16)[: 64 << 10])


def table_seeds(tmp):
    mbr = os.path.join(tmp, "mbr.img")
    blank(mbr, 64 << 10)
    if tool("sh", "-c", f"echo 'start=8, type=83' | sfdisk -q {mbr}"):
        put("partition", "mbr-64k", read(mbr))
    gpt = os.path.join(tmp, "gpt.img")
    blank(gpt, 64 << 10)
    if tool("sgdisk", "-a", "1", "-n", "1:40:80", gpt):
        put("partition", "gpt-64k", read(gpt))
    # A partitioned disk with ext2 inside, for expand.
    ext = os.path.join(tmp, "ext2.img")
    disk = os.path.join(tmp, "disk.img")
    if os.path.exists(ext) and shutil.which("sfdisk"):
        blank(disk, (128 << 10) + 4096)
        tool("sh", "-c", f"echo 'start=8, type=83' | sfdisk -q {disk}")
        data = bytearray(read(disk))
        data[4096 : 4096 + (128 << 10)] = read(ext)
        put("expand", "mbr-ext2", bytes(data))
    fat = os.path.join(tmp, "fat.img")
    if os.path.exists(fat) and shutil.which("sgdisk"):
        size = (64 << 10) + 40 * 512 + 33 * 512
        blank(disk, size)
        tool("sgdisk", "-a", "1", "-n", "1:40:167", disk)
        data = bytearray(read(disk))
        data[40 * 512 : 40 * 512 + (64 << 10)] = read(fat)
        put("expand", "gpt-fat12", bytes(data))


def main():
    vhd_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        fs_seeds(tmp)
        table_seeds(tmp)
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))), "seeds")


if __name__ == "__main__":
    main()
