#!/usr/bin/env bash
# Disks whose ext filesystem had resize_inode cleared after mke2fs (debugfs
# 'feature -resize_inode'): s_reserved_gdt_blocks stays set and inode 7 keeps
# its blocks; e2fsck -fn still exits 0. Usage: make-stale-gdt-disks.sh OUTDIR
# Makes gpt-ext4.raw, mbr-ext3.raw and bare-ext4.raw (sparse, 64 MiB), and
# files/hello.txt, the file each filesystem holds.
set -euo pipefail
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out/files"
cd "$out"
printf 'hello from a stale reserved GDT\n' > files/hello.txt
head -c 200000 /dev/urandom > files/random.bin
export E2FSPROGS_FAKE_TIME=1700000000

# put_ext DISK START_SECTOR SIZE_SECTORS MKFS...
put_ext() {
  local disk=$1 start=$2 sectors=$3; shift 3
  local fs; fs=$(mktemp -p . fs.XXXX)
  truncate -s $((sectors * 512)) "$fs"
  "$@" -q -F -d files "$fs" >/dev/null
  debugfs -w -R 'feature -resize_inode' "$fs" >/dev/null 2>&1
  dd if="$fs" of="$disk" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
  rm -f "$fs"
}

truncate -s 64M gpt-ext4.raw
sgdisk -n 1:2048:0 -t 1:8300 gpt-ext4.raw >/dev/null 2>&1
last=$(sgdisk -i 1 gpt-ext4.raw | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
put_ext gpt-ext4.raw 2048 $((last - 2048 + 1)) mkfs.ext4

truncate -s 64M mbr-ext3.raw
printf 'start=2048, type=83\n' | sfdisk -q mbr-ext3.raw
put_ext mbr-ext3.raw 2048 $((64 * 2048 - 2048)) mkfs.ext3

truncate -s 64M bare-ext4.raw
put_ext bare-ext4.raw 0 $((64 * 2048)) mkfs.ext4
