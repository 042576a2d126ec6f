#!/usr/bin/env bash
# convert raw -> dynamic VHD, vhdkit vs `qemu-img convert -O vpc`, side by
# side in one run (alternating, median of REPS, default 5), at equal
# durability: neither fsyncs (`--no-sync`), and vhdkit synced as a third row.
#
#   benches/convert.sh            # dense 2 GiB and sparse 8 GiB (30% of 2 MiB blocks)
#
# Env: VHDKIT (binary, default target/release/vhdkit), BENCH_DIR (work folder
# parent, default /tmp), REPS, DENSE (size, default 2G), SPARSE (default 8G).
set -euo pipefail
cd "$(dirname "$0")/.."
V=${VHDKIT:-$PWD/target/release/vhdkit}
REPS=${REPS:-5}
command -v qemu-img >/dev/null || { echo "qemu-img not installed: skipped" >&2; exit 0; }
[ -x "$V" ] || cargo build --release --quiet
work=$(realpath "$(mktemp -d -p "${BENCH_DIR:-/tmp}" vhdkit-convert.XXXX)")
trap 'rm -rf "$work"' EXIT
cd "$work"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed NAME CMD...: flushes what the last run left dirty, then times CMD
timed() { local n=$1; shift; sync; local s; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc >> "$n.times"; }
row() { # row TITLE OURS PEER
  local a b; a=$(median < "$2.times"); b=$(median < "$3.times")
  printf '| %s | %.2f | %.2f | %.2f |\n' "$1" "$a" "$b" "$(echo "$a / $b" | bc -l)"
}

pair() { # pair NAME INPUT
  local name=$1 in=$2
  cat "$in" > /dev/null
  for _ in $(seq "$REPS"); do
    timed "$name-qemu" qemu-img convert -f raw -O vpc -o subformat=dynamic "$in" q.vhd
    rm -f q.vhd
    timed "$name-nosync" "$V" convert "$in" v.vhd --to dynamic --no-sync -q
    rm -f v.vhd
    timed "$name-sync" "$V" convert "$in" v.vhd --to dynamic -q
    rm -f v.vhd
  done
  row "$name: vhdkit --no-sync / qemu-img" "$name-nosync" "$name-qemu"
  row "$name: vhdkit (synced) / qemu-img" "$name-sync" "$name-qemu"
}

echo "building the inputs..." >&2
head -c "${DENSE:-2G}" /dev/urandom > dense.raw
truncate -s "${SPARSE:-8G}" sparse.raw
blocks=$(( $(stat -c %s sparse.raw) / (2 << 20) ))
for b in $(seq 0 "$((blocks - 1))" | shuf --random-source=<(yes) | head -n $((blocks * 3 / 10))); do
  head -c 2M /dev/urandom | dd of=sparse.raw bs=2M seek="$b" conv=notrunc status=none
done

echo "| pair | vhdkit s | qemu-img s | ratio (< 1: vhdkit faster) |"
echo "|---|---:|---:|---:|"
pair "dense ${DENSE:-2G}" dense.raw
pair "sparse ${SPARSE:-8G} (30%)" sparse.raw
