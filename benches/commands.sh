#!/usr/bin/env bash
# Whole-command benchmarks that need a shell pipeline as the peer, side by
# side in one run, alternating runs, medians of REPS (default 3), ratios printed.
#
#   benches/commands.sh expand     # vhdkit expand vs the qemu-img/sfdisk/resize2fs pipeline
#   benches/commands.sh preflight  # vhdkit preflight vs md5sum on a dense 2 GiB VHD
#   benches/commands.sh catalog    # vhdkit catalog add vs md5sum on a dense 2 GiB VHD
#   benches/commands.sh all
#
# Env: VHDKIT (binary, default target/release/vhdkit), BENCH_DIR (work folder
# parent, default .), REPS. The expand pipeline uses a loop device for
# resize2fs when losetup works (root), else extracts the partition with dd.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${VHDKIT:-$PWD/target/release/vhdkit}
REPS=${REPS:-3}
[ -x "$V" ] || cargo build --release --quiet
work=$(realpath "$(mktemp -d -p "${BENCH_DIR:-.}" .vhdkit-commands.XXXX)")
trap 'rm -rf "$work"' EXIT
cd "$work"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed NAME CMD...: runs CMD, appends its wall time to NAME.times
timed() { local n=$1; shift; sync; local s; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc >> "$n.times"; }
report() { # report TITLE OURS PEER TARGET_TEXT
  local a b; a=$(median < "$2.times"); b=$(median < "$3.times")
  printf '| %s | %.2f | %.2f | %.2f× faster | %s |\n' "$1" "$a" "$b" "$(echo "$b / $a" | bc -l)" "$4"
}

bench_expand() {
  echo "building a 1 GiB MBR + ext4 disk with ~300 MB of files..." >&2
  mkdir -p files
  for i in $(seq 1 30); do head -c 10M /dev/urandom > "files/f$i"; done
  truncate -s 1G disk.raw
  echo 'start=2048, type=83, bootable' | sfdisk -q disk.raw
  truncate -s 1023M fs.img
  mkfs.ext4 -q -F -d files fs.img
  dd if=fs.img of=disk.raw bs=1M seek=1 conv=notrunc,sparse status=none
  rm -rf fs.img files
  "$V" convert disk.raw in.vhd --to dynamic -q >/dev/null
  rm -f disk.raw
  pipeline() {
    rm -f work.raw out-pipeline.vhd
    qemu-img convert -f vpc -O raw in.vhd work.raw
    qemu-img resize -f raw work.raw 40G
    echo ', +' | sfdisk -q -N 1 work.raw
    if loop=$(losetup --find --show --offset $((2048 * 512)) work.raw 2>/dev/null); then
      e2fsck -f -y "$loop"; resize2fs "$loop"; losetup -d "$loop"
    else
      dd if=work.raw of=part.img bs=1M skip=1 conv=sparse status=none
      e2fsck -f -y part.img; resize2fs part.img
      dd if=part.img of=work.raw bs=1M seek=1 conv=notrunc,sparse status=none
      rm -f part.img
    fi
    qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on work.raw out-pipeline.vhd
    sync -f out-pipeline.vhd
    rm -f work.raw
  }
  ours() { rm -f out-vhdkit.vhd; "$V" expand in.vhd out-vhdkit.vhd --size 40G -q; }
  child() { rm -f out-child.vhd; "$V" expand in.vhd out-child.vhd --size 40G --as-child -q; }
  for _ in $(seq "$REPS"); do timed vhdkit-expand ours; timed pipeline pipeline; timed vhdkit-child child; done
  report "expand 1 GiB MBR+ext4 → 40 GiB (full copy) vs qemu-img+sfdisk+resize2fs pipeline" vhdkit-expand pipeline "≥ 10×"
  report "expand --as-child (only changed blocks) vs the same pipeline" vhdkit-child pipeline "≥ 10×"
}

# dense.vhd: a 2 GiB dynamic VHD of random data, in the page cache.
make_dense() {
  echo "building a dense 2 GiB dynamic VHD..." >&2
  head -c 2G /dev/urandom > dense.raw
  "$V" convert dense.raw dense.vhd --to dynamic -q >/dev/null
  rm -f dense.raw
  cat dense.vhd > /dev/null
}

bench_preflight() {
  make_dense
  for _ in $(seq "$REPS"); do
    timed vhdkit-preflight "$V" preflight dense.vhd --json -q
    timed md5sum md5sum dense.vhd
  done
  local a b; a=$(median < vhdkit-preflight.times); b=$(median < md5sum.times)
  printf '| preflight dense 2 GiB VHD vs md5sum | %.2f | %.2f | %.2f× md5sum | ≤ 1.1× |\n' "$a" "$b" "$(echo "$a / $b" | bc -l)"
}

bench_catalog() {
  make_dense
  # A new catalog each run: the store copy is made every time, and synced.
  add() { "$V" catalog add dense.vhd --catalog "cat-$1/catalog.db" --json; }
  for i in $(seq "$REPS"); do
    rm -rf cat-*
    timed vhdkit-catalog-add add "$i"
    timed md5sum md5sum dense.vhd
  done
  local how; how=$("$V" catalog add dense.vhd --catalog cat-x/catalog.db --json | sed -n 's/.*"method": "\(.*\)".*/\1/p')
  local a b; a=$(median < vhdkit-catalog-add.times); b=$(median < md5sum.times)
  printf '| catalog add dense 2 GiB VHD (store: %s) vs md5sum | %.2f | %.2f | %.2f× md5sum | ≤ 1.1× |\n' "$how" "$a" "$b" "$(echo "$a / $b" | bc -l)"
}

echo "| pair | vhdkit s | peer s | ratio | target |"
echo "|---|---:|---:|---:|---|"
case ${1:-all} in
  expand) bench_expand ;;
  preflight) bench_preflight ;;
  catalog) bench_catalog ;;
  all) bench_expand; bench_preflight; bench_catalog ;;
  *) echo "usage: $0 expand|preflight|catalog|all" >&2; exit 2 ;;
esac
