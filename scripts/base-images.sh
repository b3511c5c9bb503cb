#!/usr/bin/env bash
# Idempotent: make local stand-ins for the base images the Dockerfile names.
#
# No registry is reachable from this machine, so `FROM debian:bookworm-slim`
# and `FROM rust:1.95-slim-bookworm` cannot be pulled. This script builds
# equivalents from Debian's own packages (debootstrap, minbase variant) and
# `docker import`s them under exactly those tags; the Dockerfile stays what a
# user with a registry builds. A tag that already exists is left alone.
#
# The rust stand-in mirrors the official image's layout: toolchain under
# /usr/local/rustup, cargo under /usr/local/cargo, gcc + libc6-dev +
# ca-certificates + wget from Debian. Its toolchain is copied from this
# machine's rustup (nothing can be downloaded from rustup's servers here).
#
# Env: TRAINERD_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      TRAINERD_RUSTUP_HOME (default $RUSTUP_HOME or ~/.rustup),
#      TRAINERD_CARGO_HOME (default $CARGO_HOME or ~/.cargo).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${TRAINERD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
rustup_home=${TRAINERD_RUSTUP_HOME:-${RUSTUP_HOME:-${HOME:-/root}/.rustup}}
cargo_home=${TRAINERD_CARGO_HOME:-${CARGO_HOME:-${HOME:-/root}/.cargo}}
cache=/var/cache/trainerd-debootstrap
suite=bookworm

say() { echo "base-images: $*" >&2; }

# The tags come from the Dockerfile itself, so the two cannot drift apart.
tags=$(awk 'toupper($1)=="FROM" {print $2}' "$root/Dockerfile" | sort -u)
debian_tag=debian:bookworm-slim
rust_tag=$(grep '^rust:' <<<"$tags" || true)
for t in $tags; do
    case $t in
        "$debian_tag" | "$rust_tag") ;;
        *) say "Dockerfile names $t, which this script cannot make"; exit 1 ;;
    esac
done

have() { docker image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d /var/tmp/trainerd-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

# debootstrap DIR [PACKAGES]: a minbase bookworm tree like the slim images.
bootstrap() {
    local dir=$1 include=${2:-}
    say "debootstrap $suite minbase ${include:+(+ $include) }into $dir"
    debootstrap --variant=minbase --cache-dir="$cache" ${include:+--include="$include"} \
        "$suite" "$dir" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        return 1
    }
    cat >"$dir/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
    # As in the published slim images: no docs, man pages or translations
    # (now or for later installs), no package lists, no cached .debs.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* \
        "$dir"/usr/share/lintian/* "$dir"/usr/share/groff/*
    # This machine reaches registries through a TLS-inspecting proxy whose
    # CA sits in /usr/local/share/ca-certificates; the stand-ins carry the
    # same local CAs so pip, cargo and apt inside builds trust what the host
    # trusts (a no-op where the host has none). ca-certificates' postinst
    # (here, or when a Dockerfile installs it) folds them into the bundle.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$dir/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
        if [ -x "$dir/usr/sbin/update-ca-certificates" ]; then
            chroot "$dir" update-ca-certificates >/dev/null 2>&1
        fi
        # pip ships its own CA bundle; point it at the system one, as here.
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$dir/etc/pip.conf"
    fi
    # Package lists and caches go too.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb \
        "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log "$dir"/var/log/apt/*
}

import() {
    local dir=$1 tag=$2
    shift 2
    tar --numeric-owner -C "$dir" -c . | docker import "$@" - "$tag" >/dev/null
    say "imported $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

if have "$debian_tag"; then
    say "$debian_tag exists, skipped"
else
    bootstrap "$work/debian"
    import "$work/debian" "$debian_tag" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]'
    rm -rf "$work/debian"
fi

if [ -n "$rust_tag" ]; then
    if have "$rust_tag"; then
        say "$rust_tag exists, skipped"
    else
        # rust:1.95-slim-bookworm -> toolchain 1.95; take the newest installed
        # toolchain whose rustc reports that minor version.
        want=$(echo "$rust_tag" | sed -E 's/^rust:([0-9]+\.[0-9]+).*/\1/')
        src=""
        for tc in "$rustup_home"/toolchains/*-x86_64-unknown-linux-gnu; do
            [ -x "$tc/bin/rustc" ] || continue
            v=$("$tc/bin/rustc" --version | awk '{print $2}')
            case $v in "$want".*) src=$(readlink -f "$tc"); full=$v ;; esac
        done
        [ -n "$src" ] || { say "no local rust $want toolchain under $rustup_home"; exit 1; }
        bootstrap "$work/rust" ca-certificates,gcc,libc6-dev,wget
        tc_name="$full-x86_64-unknown-linux-gnu"
        dest="$work/rust/usr/local/rustup/toolchains/$tc_name"
        mkdir -p "$dest" "$work/rust/usr/local/cargo/bin"
        say "copying toolchain $full from $src"
        (cd "$src" && tar --exclude=./share/doc -c .) | tar -C "$dest" -x
        cp "$cargo_home/bin/rustup" "$work/rust/usr/local/cargo/bin/rustup"
        for p in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
            [ -e "$dest/bin/$p" ] && ln -sf rustup "$work/rust/usr/local/cargo/bin/$p"
        done
        printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$tc_name" \
            >"$work/rust/usr/local/rustup/settings.toml"
        chmod -R a+w "$work/rust/usr/local/rustup" "$work/rust/usr/local/cargo"
        import "$work/rust" "$rust_tag" \
            --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
            --change 'ENV CARGO_HOME=/usr/local/cargo' \
            --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change "ENV RUST_VERSION=$full" \
            --change 'CMD ["bash"]'
        rm -rf "$work/rust"
    fi
fi
say "ok"
