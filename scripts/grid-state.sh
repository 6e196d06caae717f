#!/usr/bin/env bash
# Carries the finished cells of a long grid from one machine to the next, without their weights.
#
#   scripts/grid-state.sh save    OUT STATE -- <reproduce arguments>
#   scripts/grid-state.sh restore STATE OUT
#
# `save` asks `lpft reproduce <arguments> -o OUT --dry-run` which cells are finished (every stage
# done), and copies each one's run directory into STATE, leaving out `model/` (the fine-tuned
# weights, 438 MB for MPNet) and `checkpoint/` (absent once a cell is finished), with the grid's
# caches (`cache/`: the LP fits and the pretrained features). Unfinished cells are not copied: they
# start again on the next machine. What stays is what the grid's later steps and `lpft report`
# read (metrics, histories, predictions, heads, adapters, analyses, calibration, the eNTK's
# kernels), so `lpft reproduce` on OUT after `restore` skips those cells and can still compute
# the LoRA/FT alignments and the report. A restored cell cannot be re-analysed with new stages
# (its weights are gone): rerun it with its folder removed.
#
# `restore` copies STATE into OUT, leaving every cell OUT already has as it is.
#
# Why: the grids of issue 16 (MPNet on CB, about 10 hours on 2 cores) outlast the development
# machines they run on; the committed state under grid-state/ lets the next machine continue.
# LPFT names the binary (default: lpft on PATH, else target/release/lpft).
set -euo pipefail

die() {
    echo "grid-state.sh: $*" >&2
    exit 2
}

lpft_bin() {
    if [[ -n "${LPFT:-}" ]]; then
        echo "$LPFT"
    elif command -v lpft >/dev/null; then
        echo lpft
    elif [[ -x target/release/lpft ]]; then
        echo target/release/lpft
    else
        die "no lpft binary: set LPFT, put lpft on PATH or run cargo build --release"
    fi
}

save() {
    local out=$1 state=$2
    shift 2
    [[ "${1:-}" == "--" ]] || die "save: give the reproduce arguments after --"
    shift
    [[ -d "$out/runs" ]] || die "save: $out/runs does not exist"
    local listing
    listing=$("$(lpft_bin)" reproduce "$@" -o "$out" --dry-run)
    local n=0
    while read -r _ rel status _; do
        [[ "$status" == finished ]] || continue
        local src="$out/runs/$rel" dst="$state/runs/$rel"
        [[ -f "$src/metrics.json" ]] || die "save: $src is listed as finished but has no metrics.json"
        rm -rf "$dst.tmp"
        mkdir -p "$dst.tmp"
        tar -C "$src" --exclude=./model --exclude=./checkpoint -cf - . | tar -C "$dst.tmp" -xf -
        rm -rf "$dst"
        mv "$dst.tmp" "$dst"
        n=$((n + 1))
    done <<<"$listing"
    if [[ -d "$out/cache" ]]; then
        mkdir -p "$state/cache"
        tar -C "$out/cache" -cf - . | tar -C "$state/cache" -xf -
    fi
    echo "saved $n finished cells of $out into $state ($(du -sh "$state" | cut -f1))"
}

restore() {
    local state=$1 out=$2
    [[ -d "$state/runs" ]] || die "restore: $state/runs does not exist"
    mkdir -p "$out/runs"
    local n=0 dir rel
    while IFS= read -r dir; do
        rel=${dir#"$state/runs/"}
        rel=${rel%/metrics.json}
        if [[ -e "$out/runs/$rel" ]]; then
            echo "kept $out/runs/$rel (already there)"
            continue
        fi
        mkdir -p "$out/runs/$rel"
        tar -C "$state/runs/$rel" -cf - . | tar -C "$out/runs/$rel" -xf -
        n=$((n + 1))
    done < <(find "$state/runs" -name metrics.json | sort)
    if [[ -d "$state/cache" ]]; then
        mkdir -p "$out/cache"
        tar -C "$state/cache" -cf - . | tar -C "$out/cache" --skip-old-files -xf -
    fi
    echo "restored $n cells into $out"
}

case "${1:-}" in
save)
    [[ $# -ge 4 ]] || die "usage: grid-state.sh save OUT STATE -- <reproduce arguments>"
    shift
    save "$@"
    ;;
restore)
    [[ $# -eq 3 ]] || die "usage: grid-state.sh restore STATE OUT"
    restore "$2" "$3"
    ;;
*) die "usage: grid-state.sh save OUT STATE -- <reproduce arguments> | restore STATE OUT" ;;
esac
