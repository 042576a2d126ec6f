#!/usr/bin/env bash
# `vhdkit sparsify` against the pipeline users run today, side by side in one
# run, alternating, medians of REPS (default 3):
#
#   pipeline: qemu-img convert -O raw IN.vhd work.raw
#             zerofree on the partition (a loop device when losetup works,
#             else the partition extracted with dd and put back)
#             qemu-img convert -O vpc -o subformat=dynamic work.raw OUT.vhd
#   vhdkit:   vhdkit sparsify IN.vhd OUT.vhd
#   virt-sparsify IN.vhd OUT.vhd, when installed and its appliance starts.
#
# The input: a dynamic VHD of a 4 GiB MBR + ext4 disk holding ~1 GiB of live
# files and ~1.5 GiB of deleted-file garbage (made once, kept in
# BENCH_DIR/sparsify-input.vhd). Printed: wall seconds, the output's
# allocated bytes (du) and peak RSS (/usr/bin/time), and the ratios.
#
# Env: VHDKIT (binary, default target/release/vhdkit), BENCH_DIR (default .),
# REPS, LIVE_MB (default 1024), GARBAGE_MB (default 1536).
set -euo pipefail
cd "$(dirname "$0")/.."
V=${VHDKIT:-$PWD/target/release/vhdkit}
REPS=${REPS:-3}
LIVE_MB=${LIVE_MB:-1024}
GARBAGE_MB=${GARBAGE_MB:-1536}
[ -x "$V" ] || cargo build --release --quiet
dir=$(cd "${BENCH_DIR:-.}" && pwd)
input=$dir/sparsify-input.vhd
work=$(mktemp -d -p "$dir" .vhdkit-sparsify.XXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

random() { if command -v openssl >/dev/null; then openssl rand -out "$1" "$2"; else head -c "$2" /dev/urandom > "$1"; fi; }

make_input() {
  echo "building $input: 4 GiB MBR + ext4, ${LIVE_MB} MB live, ${GARBAGE_MB} MB deleted..." >&2
  mkdir -p files/live files/doomed
  for i in $(seq 1 $((LIVE_MB / 64))); do random "files/live/f$i" $((64 << 20)); done
  for i in $(seq 1 $((GARBAGE_MB / 64))); do random "files/doomed/g$i" $((64 << 20)); done
  truncate -s 4G disk.raw
  echo 'start=2048, type=83, bootable' | sfdisk -q disk.raw
  truncate -s $(((4096 - 1) << 20)) fs.img
  mkfs.ext4 -q -F -d files fs.img
  debugfs -w -R "rm /doomed" fs.img >/dev/null 2>&1 || true
  for i in $(seq 1 $((GARBAGE_MB / 64))); do debugfs -w -R "rm /doomed/g$i" fs.img >/dev/null 2>&1; done
  debugfs -w -R "rmdir /doomed" fs.img >/dev/null 2>&1
  e2fsck -fy fs.img >/dev/null 2>&1 || true
  dd if=fs.img of=disk.raw bs=1M seek=1 conv=notrunc,sparse status=none
  rm -rf fs.img files
  "$V" convert disk.raw "$input" --to dynamic -q >/dev/null
  rm -f disk.raw
}
[ -f "$input" ] || make_input

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed NAME OUT CMD...: runs CMD (then, unless NAME ends in -nosync,
# syncs OUT: equal durability), records wall time, peak RSS (KiB, the
# largest of the steps) and OUT's allocated bytes.
timed() {
  local n=$1 out=$2; shift 2
  sync; local s; s=$(now)
  "$@"
  case $n in *-nosync) ;; *) sync -f "$out" ;; esac
  echo "$(now) - $s" | bc >> "$n.times"
  du -B1 "$out" | cut -f1 > "${n%-nosync}.alloc"
}
# rss NAME CMD...: runs one step under /usr/bin/time, keeps the peak RSS.
rss() {
  local n=$1; shift
  /usr/bin/time -f %M -o "$n.rss1" "$@" >/dev/null 2>&1
  local m; m=$(cat "$n.rss1"); local old; old=$(cat "$n.rss" 2>/dev/null || echo 0)
  [ "$m" -gt "$old" ] && echo "$m" > "$n.rss" || true
}

pipeline() {
  rm -f work.raw out-pipeline.vhd
  rss pipeline qemu-img convert -f vpc -O raw "$input" work.raw
  if loop=$(losetup --find --show --offset $((2048 * 512)) work.raw 2>/dev/null); then
    rss pipeline zerofree "$loop"; losetup -d "$loop"
  else
    dd if=work.raw of=part.img bs=1M skip=1 conv=sparse status=none
    rss pipeline zerofree part.img
    dd if=part.img of=work.raw bs=1M seek=1 conv=notrunc,sparse status=none
    rm -f part.img
  fi
  rss pipeline qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on work.raw out-pipeline.vhd
  rm -f work.raw
}
ours() { rm -f out-vhdkit.vhd; rss vhdkit "$V" sparsify "$input" out-vhdkit.vhd -q "$@"; }
virt() { rm -f out-virt.vhd; rss virt virt-sparsify -q "$input" --convert vpc out-virt.vhd; }

have_virt=no
if command -v virt-sparsify >/dev/null && virt-sparsify -q "$input" --convert vpc probe.vhd >/dev/null 2>&1; then
  have_virt=yes
fi
rm -f probe.vhd
for r in $(seq 1 "$REPS"); do
  echo "run $r/$REPS" >&2
  timed vhdkit out-vhdkit.vhd ours
  timed pipeline out-pipeline.vhd pipeline
  timed vhdkit-nosync out-vhdkit.vhd ours --no-sync
  timed pipeline-nosync out-pipeline.vhd pipeline
  [ $have_virt = yes ] && timed virt out-virt.vhd virt
  # The floor: the disk writing the output's own bytes (holes kept), synced.
  timed floor floor.vhd dd if=out-vhdkit.vhd of=floor.vhd bs=4M conv=sparse,fsync status=none
  rm -f floor.vhd
done

"$V" sparsify "$input" --dry-run | tail -3
row() { # row NAME LABEL
  printf '| %s | %.2f | %d | %.1f |\n' "$2" "$(median < "$1.times")" "$(cat "$1.alloc")" \
    "$(echo "$(cat "$1.rss") / 1024" | bc -l)"
}
echo
echo "| tool | wall s (median of $REPS) | output allocated bytes | peak RSS MiB |"
echo "|---|---:|---:|---:|"
row vhdkit "vhdkit sparsify (fsync)"
row pipeline "qemu-img convert + zerofree + qemu-img convert -O vpc, then sync"
row_nosync() { printf '| %s | %.2f | | |\n' "$2" "$(median < "$1.times")"; }
row_nosync vhdkit-nosync "vhdkit sparsify --no-sync"
row_nosync pipeline-nosync "the same pipeline as is (no sync)"
[ $have_virt = yes ] && row virt "virt-sparsify --convert vpc"
a=$(median < vhdkit.times); b=$(median < pipeline.times)
echo
printf 'speed: vhdkit sparsify is %.1f× faster than the pipeline, both synced (target ≥ 10×)\n' "$(echo "$b / $a" | bc -l)"
a=$(median < vhdkit-nosync.times); b=$(median < pipeline-nosync.times)
printf 'speed: vhdkit sparsify --no-sync is %.1f× faster than the pipeline as is (target ≥ 10×)\n' "$(echo "$b / $a" | bc -l)"
f=$(median < floor.times); b=$(median < pipeline.times)
printf 'floor: writing the output'"'"'s bytes with dd conv=fsync takes %.2f s: no tool can be more than %.1f× faster than the pipeline here (10× needs %.2f s)\n' \
  "$f" "$(echo "$b / $f" | bc -l)" "$(echo "$b / 10" | bc -l)"
printf 'size: vhdkit output allocated / pipeline output allocated = %.3f (target ≤ 1)\n' \
  "$(echo "$(cat vhdkit.alloc) / $(cat pipeline.alloc)" | bc -l)"
printf 'memory: vhdkit peak RSS %.1f MiB (target ≤ 64 MiB)\n' "$(echo "$(cat vhdkit.rss) / 1024" | bc -l)"
if [ $have_virt = no ]; then
  if command -v virt-sparsify >/dev/null; then
    echo "virt-sparsify: installed, but its appliance did not start here"
  else
    echo "virt-sparsify: not installed here (libguestfs-tools), not measured; on this machine's kind"
    echo "  apt cannot install it: it needs qemu-system 7.2, which Breaks the qemu-utils 10 the tests use"
  fi
fi
