#!/usr/bin/env bash
# Makes VHD fixtures with qemu-img for tests/qemu_interop.rs.
#
# Usage: make-qemu-fixtures.sh OUTDIR
#
# Writes into OUTDIR:
#   create-*.vhd     qemu-img create -f vpc (fixed and dynamic, with and
#                    without force_size, odd sizes, 1 GiB)
#   convert-*.vhd    qemu-img convert -O vpc from data.raw, a raw file with
#                    data written here and there by dd conv=notrunc
#   data.raw         that raw file
# and prints the names of the VHDs it made, one a line.
set -euo pipefail

out=${1:?usage: make-qemu-fixtures.sh OUTDIR}
mkdir -p "$out"
cd "$out"

mib=$((1024 * 1024))
odd=$((10 * mib + 512))

create() { # name subformat size [extra options]
    local name=$1 sub=$2 size=$3 extra=${4:-}
    qemu-img create -q -f vpc -o "subformat=$sub$extra" "$name" "$size"
    echo "$name"
}

create create-fixed-10M.vhd fixed $((10 * mib))
create create-fixed-10M-force.vhd fixed $((10 * mib)) ,force_size=on
create create-fixed-odd.vhd fixed $odd
create create-fixed-odd-force.vhd fixed $odd ,force_size=on
create create-dynamic-10M.vhd dynamic $((10 * mib))
create create-dynamic-10M-force.vhd dynamic $((10 * mib)) ,force_size=on
create create-dynamic-odd.vhd dynamic $odd
create create-dynamic-odd-force.vhd dynamic $odd ,force_size=on
create create-dynamic-1G.vhd dynamic $((1024 * mib))
create create-dynamic-1G-force.vhd dynamic $((1024 * mib)) ,force_size=on
create create-fixed-1G-force.vhd fixed $((1024 * mib)) ,force_size=on

# A raw disk of 7 MiB + 512 bytes with data in the first sector, across a
# 2 MiB block boundary, in a lone sector mid-block, and in the last sector.
truncate -s $((7 * mib + 512)) data.raw
put() { # byte-offset sectors (deterministic text, different at each offset)
    { seq "$1" 999999999 || true; } | head -c $(($2 * 512)) >chunk.tmp
    dd if=chunk.tmp of=data.raw bs=512 seek=$(($1 / 512)) conv=notrunc status=none
}
put 0 1
put $((2 * mib - 4096)) 16
put $((3 * mib + 512 * 7)) 1
put $((5 * mib)) 2048
put $((7 * mib)) 1
rm -f chunk.tmp

convert() { # name subformat [extra options]
    qemu-img convert -f raw -O vpc -o "subformat=$2${3:-}" data.raw "$1"
    echo "$1"
}
convert convert-dynamic.vhd dynamic
convert convert-dynamic-force.vhd dynamic ,force_size=on
convert convert-fixed.vhd fixed
convert convert-fixed-force.vhd fixed ,force_size=on
