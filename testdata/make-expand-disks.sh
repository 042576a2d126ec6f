#!/usr/bin/env bash
# Builds the raw disks the expand tests grow: partition tables made with
# sfdisk/sgdisk, filesystems with mkfs.ext2/3/4 and mkfs.fat, files put in with
# mke2fs -d and mcopy. Usage: make-expand-disks.sh OUTDIR [NAME...]
# Every disk is a sparse file; nothing here is committed.
set -euo pipefail
out=${1:?usage: $0 OUTDIR [NAME...]}
shift
mkdir -p "$out"
cd "$out"

# Files every filesystem gets, with known content.
files() {
  mkdir -p files/sub
  printf 'hello from vhdkit\n' > files/hello.txt
  head -c 300000 /dev/urandom > files/sub/random.bin
  seq 1 20000 > files/sub/numbers.txt
}
files

export E2FSPROGS_FAKE_TIME=1700000000
MIB=1048576

# part_disk NAME SIZE_MIB TABLE(mbr|gpt) SFDISK_SCRIPT
mbr() { truncate -s "$2" "$1"; printf '%s\n' "$3" | sfdisk -q "$1"; }
gpt() { truncate -s "$2" "$1"; sgdisk "${@:3}" "$1" >/dev/null 2>&1; }

# put_fs DISK START_SECTOR SIZE_SECTORS MKFS...
# Makes the filesystem in a separate file, then copies it in place.
put_ext() {
  local disk=$1 start=$2 sectors=$3; shift 3
  local fs; fs=$(mktemp -p . fs.XXXX)
  truncate -s $((sectors * 512)) "$fs"
  "$@" -q -F -U 6d1f2c3a-1111-4222-8333-444455556666 -d files "$fs" >/dev/null
  dd if="$fs" of="$disk" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
  rm -f "$fs"
}
put_fat() {
  local disk=$1 start=$2 sectors=$3; shift 3
  local fs; fs=$(mktemp -p . fs.XXXX)
  rm -f "$fs"
  "$@" -C "$fs" $((sectors / 2)) >/dev/null
  mcopy -s -i "$fs" files/hello.txt files/sub ::/
  dd if="$fs" of="$disk" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
  rm -f "$fs"
}

build() {
  case $1 in
  # 512 MiB: mke2fs' "default" type (4 KiB blocks, 128 MiB groups).
  mbr-ext4-boot) mbr $1.raw 513M 'start=2048, type=83, bootable'
    put_ext $1.raw 2048 $((512 * 2048)) mkfs.ext4 ;;
  mbr-ext3) mbr $1.raw 128M 'start=2048, type=83'
    put_ext $1.raw 2048 $((128 * 2048 - 2048)) mkfs.ext3 ;;
  mbr-ext2) mbr $1.raw 64M 'start=2048, type=83'
    put_ext $1.raw 2048 $((64 * 2048 - 2048)) mkfs.ext2 ;;
  gpt-ext4) gpt $1.raw 256M -n 1:2048:0 -t 1:8300 -c 1:root -A 1:set:2
    local last; last=$(sgdisk -i 1 $1.raw | awk '/Last sector/ {print $3}')
    put_ext $1.raw 2048 $((last - 2048 + 1)) mkfs.ext4 ;;
  ext4-1k) mbr $1.raw 128M 'start=2048, type=83'
    put_ext $1.raw 2048 $((128 * 2048 - 2048)) mkfs.ext4 -b 1024 ;;
  ext4-old) mbr $1.raw 128M 'start=2048, type=83'
    put_ext $1.raw 2048 $((128 * 2048 - 2048)) mkfs.ext4 -O ^metadata_csum,^64bit,uninit_bg ;;
  ext4-noresize) mbr $1.raw 128M 'start=2048, type=83'
    put_ext $1.raw 2048 $((128 * 2048 - 2048)) mkfs.ext4 -O ^resize_inode ;;
  ext4-256m-1k) mbr $1.raw 257M 'start=2048, type=83'
    put_ext $1.raw 2048 $((256 * 2048)) mkfs.ext4 -b 1024 ;;
  bare-ext4) truncate -s 128M $1.raw
    put_ext $1.raw 0 $((128 * 2048)) mkfs.ext4 ;;
  mbr-fat16) mbr $1.raw 64M 'start=2048, type=06, bootable'
    put_fat $1.raw 2048 $((64 * 2048 - 2048)) mkfs.fat -F 16 ;;
  mbr-fat32) mbr $1.raw 128M 'start=2048, type=0c'
    put_fat $1.raw 2048 $((128 * 2048 - 2048)) mkfs.fat -F 32 ;;
  gpt-fat32) gpt $1.raw 128M -n 1:2048:0 -t 1:ef00 -c 1:esp
    local last; last=$(sgdisk -i 1 $1.raw | awk '/Last sector/ {print $3}')
    put_fat $1.raw 2048 $(( (last - 2048 + 1) / 2 * 2 )) mkfs.fat -F 32 ;;
  bare-fat16) truncate -s 64M $1.raw
    put_fat $1.raw 0 $((64 * 2048)) mkfs.fat -F 16 ;;
  two-partitions) mbr $1.raw 128M $'start=2048, size=100000, type=83\nstart=104448, type=83'
    put_ext $1.raw 2048 100000 mkfs.ext4 ;;
  partition-2-only) mbr $1.raw 64M $'2: start=2048, type=83'
    put_ext $1.raw 2048 $((64 * 2048 - 2048)) mkfs.ext4 ;;
  unknown-fs) mbr $1.raw 64M 'start=2048, type=83'
    dd if=/dev/urandom of=$1.raw bs=1M seek=1 count=2 conv=notrunc status=none ;;
  *) echo "unknown disk $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- mbr-ext4-boot mbr-ext3 mbr-ext2 gpt-ext4 ext4-1k ext4-old ext4-noresize ext4-256m-1k \
    bare-ext4 mbr-fat16 mbr-fat32 gpt-fat32 bare-fat16 two-partitions partition-2-only unknown-fs
fi
for name in "$@"; do build "$name"; done
