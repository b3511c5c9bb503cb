#!/usr/bin/env bash
# Build the trainerd image from the unchanged Dockerfile.
#
#   scripts/docker-build.sh [extra docker build args...]
#   TRAINERD_IMAGE=trainerd:cuda scripts/docker-build.sh --build-arg FEATURES=cuda
#
# Makes the base-image stand-ins first (scripts/base-images.sh), then runs
# `docker build --network host` (builds here never use a bridge network; pip
# and cargo reach PyPI and crates.io through the host's network). The images
# a rebuild replaces are removed, so repeated builds do not fill the disk.
# Env: TRAINERD_IMAGE (default trainerd:latest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${TRAINERD_IMAGE:-trainerd:latest}
cd "$root"

# A first build (stand-ins, builder stage, runtime) writes about 11 GiB; a
# rebuild on the cached dependency layers about 4 (the compiled crate, the
# staged libraries, the runtime layer). When short, the images no tag names
# (what failed or interrupted builds leave) and the build cache go first.
docker_root=$(docker info -f '{{.DockerRootDir}}')
need_gib=5 what="a rebuild of $image"
docker image inspect "$image" >/dev/null 2>&1 || need_gib=12 what="a first build of $image"
if ! "$root/scripts/need-space.sh" "$docker_root" "$need_gib" "$what" 2>/dev/null; then
    echo "docker-build: under $need_gib GiB free at $docker_root: removing untagged images and the build cache" >&2
    docker image prune -f >/dev/null 2>&1 || true
    docker builder prune -f >/dev/null 2>&1 || true
    "$root/scripts/need-space.sh" "$docker_root" "$need_gib" "$what"
fi
"$root/scripts/base-images.sh"

version=$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The builder stage is tagged too ($image-builder): it is the cache of the
# next build, and a rebuild leaves the images it replaces untagged, which are
# removed below (only these two, never another project's images);
# --force-rm removes the containers of failed steps too.
builder="$image-builder"
id_of() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
old_ids="$(id_of "$builder") $(id_of "$image")"
start=$(date +%s)
echo "docker-build: building $image (version $version, revision $revision)" >&2
docker build --network host --force-rm --target builder -t "$builder" "$@" .
docker build --network host --force-rm \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$image" "$@" .
end=$(date +%s)
new_ids="$(id_of "$builder") $(id_of "$image")"
for old in $old_ids; do
    case " $new_ids " in *" $old "*) continue ;; esac
    # In use by a container: kept, and docker says nothing fatal.
    docker rmi "$old" >/dev/null 2>&1 && echo "docker-build: removed the replaced image ${old#sha256:}" >&2 || true
done
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "docker-build: $image built in $((end - start)) s, size $((size / 1000000)) MB" >&2
