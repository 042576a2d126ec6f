#!/usr/bin/env bash
# Builds the raw disks the sparsify tests read: every filesystem is made over
# random bytes (mkfs told not to discard), files are written into it, then
# some are deleted, so its free blocks hold random data as on a used disk.
# Partition tables come from sfdisk/sgdisk, filesystems from mkfs.ext2/3/4,
# mkfs.fat, mkntfs, mkswap and mkfs.xfs; files go in with mke2fs -d and
# debugfs, mcopy/mdel, ntfscp/ntfstruncate.
#
# Usage: make-sparsify-disks.sh OUTDIR [NAME...]   (every NAME by default)
# Each NAME.raw comes with NAME.files: one "partition-number path md5" line
# per file left in it. Nothing here is committed.
set -euo pipefail
out=${1:?usage: $0 OUTDIR [NAME...]}
shift
mkdir -p "$out"
cd "$out"

export E2FSPROGS_FAKE_TIME=1700000000
MIB=1048576

files() {
  rm -rf files && mkdir -p files/sub
  printf 'hello from vhdkit\n' > files/hello.txt
  head -c 700000 /dev/urandom > files/sub/random.bin
  seq 1 30000 > files/sub/numbers.txt
  head -c 3000000 /dev/urandom > files/doomed.bin
}

# random_file PATH BYTES: a file of random bytes (what deleted data looks like).
random_file() {
  if command -v openssl >/dev/null; then openssl rand -out "$1" "$2"; else head -c "$2" /dev/urandom > "$1"; fi
}

# place DISK START_SECTOR FSFILE [sparse]: copies a filesystem image into the
# disk (every byte, unless the disk there is known to be zero already).
place() {
  dd if="$3" of="$1" bs=1M seek=$(($2 * 512)) oflag=seek_bytes conv=notrunc${4:+,sparse} status=none
  rm -f "$3"
}

# record NAME PARTNO: lists the files that stay, with their MD5.
record() {
  for f in hello.txt sub/random.bin sub/numbers.txt; do
    echo "$2 /$f $(md5sum < "files/$f" | cut -d' ' -f1)"
  done >> "$1.files"
}

# put_ext DISK START SECTORS PARTNO NAME MKFS...: an ext filesystem over
# random bytes, files added by mke2fs -d, one big file written then removed.
put_ext() {
  local disk=$1 start=$2 sectors=$3 part=$4 name=$5; shift 5
  local fs=fs.$name.$part
  random_file "$fs" $((sectors * 512))
  "$@" -q -F -E nodiscard,lazy_itable_init=0 -U 6d1f2c3a-1111-4222-8333-444455556666 -d files "$fs" >/dev/null
  debugfs -w -R "rm /doomed.bin" "$fs" >/dev/null 2>&1
  place "$disk" "$start" "$fs"
  record "$name" "$part"
}

put_fat() {
  local disk=$1 start=$2 sectors=$3 part=$4 name=$5; shift 5
  local fs=fs.$name.$part
  random_file "$fs" $((sectors * 512))
  "$@" "$fs" >/dev/null
  mcopy -s -i "$fs" files/hello.txt files/sub files/doomed.bin ::/
  mdel -i "$fs" ::/doomed.bin
  place "$disk" "$start" "$fs"
  record "$name" "$part"
}

put_ntfs() {
  local disk=$1 start=$2 sectors=$3 part=$4 name=$5
  local fs=fs.$name.$part
  random_file "$fs" $((sectors * 512))
  mkntfs -F -Q -q -s 512 -p "$start" -H 255 -S 63 "$fs" >/dev/null
  ntfscp -f -q "$fs" files/hello.txt /hello.txt
  ntfscp -f -q "$fs" files/doomed.bin /doomed.bin
  local ino; ino=$(ntfsls -f -i "$fs" | awk '$2 == "doomed.bin" {print $1}')
  ntfstruncate -f "$fs" "$ino" 0 >/dev/null
  # ntfscp cannot make folders: the sub/ files go to the root.
  ntfscp -f -q "$fs" files/sub/random.bin /random.bin
  ntfscp -f -q "$fs" files/sub/numbers.txt /numbers.txt
  place "$disk" "$start" "$fs"
  for f in hello.txt sub/random.bin sub/numbers.txt; do
    echo "$part /$(basename $f) $(md5sum < "files/$f" | cut -d' ' -f1)"
  done >> "$name.files"
}

put_swap() {
  local disk=$1 start=$2 sectors=$3 part=$4 name=$5
  local fs=fs.$name.$part
  random_file "$fs" $((sectors * 512))
  mkswap -q "$fs" >/dev/null
  place "$disk" "$start" "$fs"
}

put_xfs() {
  local disk=$1 start=$2 sectors=$3 part=$4 name=$5
  local fs=fs.$name.$part
  truncate -s $((sectors * 512)) "$fs"
  mkfs.xfs -q -K -f "$fs" >/dev/null
  place "$disk" "$start" "$fs" sparse
}

# disk NAME SIZE: a disk of random bytes (gaps and the tail hold garbage too).
disk() { rm -f "$1.raw" "$1.files"; touch "$1.files"; random_file "$1.raw" "$2"; }
mbr() { printf '%s\n' "$2" | sfdisk -q --wipe never "$1.raw"; }

build() {
  local n=$1
  case $n in
  # 4 KiB blocks in 16 MiB groups: flex_bg packs every table into group 0
  # and the later groups are BLOCK_UNINIT (metadata_csum, 64bit).
  mbr-ext4) disk $n $((64 * MIB)); mbr $n 'start=2048, type=83, bootable'
    put_ext $n.raw 2048 $((63 * 2048)) 1 $n mkfs.ext4 -b 4096 -g 4096 ;;
  mbr-ext4-1k) disk $n $((64 * MIB)); mbr $n 'start=2048, type=83'
    put_ext $n.raw 2048 $((63 * 2048)) 1 $n mkfs.ext4 -b 1024 ;;
  mbr-ext4-old) disk $n $((48 * MIB)); mbr $n 'start=2048, type=83'
    put_ext $n.raw 2048 $((47 * 2048)) 1 $n mkfs.ext4 -O ^uninit_bg,^metadata_csum ;;
  mbr-ext4-metabg) disk $n $((64 * MIB)); mbr $n 'start=2048, type=83'
    put_ext $n.raw 2048 $((63 * 2048)) 1 $n mkfs.ext4 -b 1024 -O meta_bg,^resize_inode ;;
  gpt-ext4-swap) disk $n $((96 * MIB))
    sgdisk -n 1:2048:+64M -t 1:8300 -n 2:0:0 -t 2:8200 $n.raw >/dev/null
    local s2 e2; s2=$(sgdisk -i 2 $n.raw | awk '/First sector/ {print $3}')
    e2=$(sgdisk -i 2 $n.raw | awk '/Last sector/ {print $3}')
    put_ext $n.raw 2048 $((64 * 2048)) 1 $n mkfs.ext4
    put_swap $n.raw "$s2" $((e2 - s2 + 1)) 2 $n ;;
  mbr-logical-ext3) disk $n $((96 * MIB))
    mbr $n $'start=2048, size=40960, type=83\nstart=43008, type=5\nstart=45056, size=81920, type=83'
    put_ext $n.raw 2048 40960 1 $n mkfs.ext2
    put_ext $n.raw 45056 81920 5 $n mkfs.ext3 ;;
  bare-ext2) disk $n $((48 * MIB))
    put_ext $n.raw 0 $((48 * 2048)) 0 $n mkfs.ext2 ;;
  mbr-fat16) disk $n $((64 * MIB)); mbr $n 'start=2048, type=06'
    put_fat $n.raw 2048 $((63 * 2048)) 1 $n mkfs.fat -F 16 ;;
  mbr-fat32) disk $n $((96 * MIB)); mbr $n 'start=2048, type=0c'
    put_fat $n.raw 2048 $((95 * 2048)) 1 $n mkfs.fat -F 32 ;;
  mbr-ntfs) disk $n $((96 * MIB)); mbr $n 'start=2048, type=07'
    put_ntfs $n.raw 2048 $((95 * 2048)) 1 $n ;;
  mbr-xfs) rm -f $n.raw $n.files; touch $n.files; truncate -s $((320 * MIB)) $n.raw; mbr $n 'start=2048, type=83'
    put_xfs $n.raw 2048 $((319 * 2048)) 1 $n ;;
  mbr-ext4-dirty) disk $n $((64 * MIB)); mbr $n 'start=2048, type=83'
    put_ext $n.raw 2048 $((63 * 2048)) 1 $n mkfs.ext4
    # As if the machine stopped with the journal unreplayed.
    debugfs -w -R "feature needs_recovery" "$n.raw?offset=$((2048 * 512))" >/dev/null 2>&1 ;;
  *) echo "unknown disk $n" >&2; return 1 ;;
  esac
}

ALL=(mbr-ext4 mbr-ext4-1k mbr-ext4-old mbr-ext4-metabg gpt-ext4-swap mbr-logical-ext3
  bare-ext2 mbr-fat16 mbr-fat32 mbr-ntfs mbr-xfs mbr-ext4-dirty)
files
for n in "${@:-${ALL[@]}}"; do build "$n"; done
rm -rf files
