#!/usr/bin/env bash
# Fails fast, in one line, when the filesystem holding DIR has less than GIB
# GiB free for WHAT, instead of a deep "No space left on device" minutes in.
#   scripts/need-space.sh DIR GIB WHAT
# DIR may not exist yet: its nearest existing parent is measured.
# Exit code 28 (ENOSPC) when short.
set -euo pipefail
dir=$1 need_gib=$2 what=$3
while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
free_kib=$(df -Pk -- "$dir" | awk 'NR == 2 { print $4 }')
free_gib=$((free_kib / 1024 / 1024))
if [ "$free_gib" -lt "$need_gib" ]; then
    echo "error: $dir has ${free_gib} GiB free; $what needs about ${need_gib} GiB: free space there (old clones, build folders, 'docker system prune') and rerun" >&2
    exit 28
fi
