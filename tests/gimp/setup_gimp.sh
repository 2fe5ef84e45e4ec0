#!/usr/bin/env bash
# Provides a GIMP 3 that can run Python plug-ins headless, for the end-to-end tests.
#
# Debian 13 host: apt-get install gimp (GIMP 3 directly); prints "host".
# Debian 12 host: a Debian 13 (trixie) chroot under $IMPASTO_GIMP_ROOT holding GIMP 3,
#                 built with debootstrap; prints the chroot path.
# Both get python3-zmq, since the plug-in's batch bridge runs on GIMP's side and needs
# pyzmq there, and Xvfb: a virtual X screen where the plug-in's dialogs open for
# tests/gimp/screens.py (their size and screenshots). Re-running is cheap: each step is
# skipped once done, and a chroot made before a step existed gains it on the next run.
set -euo pipefail

ROOT=${IMPASTO_GIMP_ROOT:-/var/tmp/impasto-gimp/root}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PKGS="gimp python3-gi gir1.2-gimp-3.0 python3-zmq"
XPKGS="xvfb"  # the virtual screen (started directly: no xvfb-run, so no xauth)
say() { echo "[gimp-setup $(date +%T)] $*" >&2; }

host_major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)
if [ "$host_major" = "13" ] || grep -q trixie /etc/debian_version 2>/dev/null; then
    if ! command -v gimp-console-3.0 >/dev/null; then
        say "Debian 13 host: apt-get install $PKGS"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS >&2
    fi
    if ! command -v Xvfb >/dev/null; then
        say "Debian 13 host: apt-get install $XPKGS"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $XPKGS >&2
    fi
    echo host
    exit 0
fi

mounts_under() { awk -v r="$ROOT/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r; }
unmount_all() { for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" || true; done; }

if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
fi

if [ ! -e "$ROOT/.impasto-base-ok" ]; then
    if [ -e "$ROOT" ]; then
        unmount_all
        [ -z "$(mounts_under)" ] || { say "mounts left under $ROOT; not removing"; exit 1; }
        rm -rf --one-file-system "$ROOT"
    fi
    mkdir -p "$(dirname "$ROOT")"
    say "debootstrap trixie into $ROOT (about 35 s)"
    debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >&2
    touch "$ROOT/.impasto-base-ok"
fi

# apt-get install "$@" in the chroot, with proc, sys and dev mounted only meanwhile.
chroot_install() {
    trap unmount_all EXIT
    mount -t proc proc "$ROOT/proc"
    for d in sys dev dev/pts dev/shm; do mount --bind "/$d" "$ROOT/$d"; done
    CH=(chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    "${CH[@]}" apt-get update -q >&2
    "${CH[@]}" apt-get install -y -q --no-install-recommends "$@" >&2
    "${CH[@]}" apt-get clean
    unmount_all
    trap - EXIT
}

if [ ! -e "$ROOT/.impasto-pkgs-ok" ]; then
    say "installing $PKGS in the chroot (about 35 s)"
    chroot_install $PKGS
    touch "$ROOT/.impasto-pkgs-ok"
fi

if [ ! -e "$ROOT/.impasto-xvfb-ok" ]; then
    say "installing $XPKGS in the chroot (about 10 s)"
    chroot_install $XPKGS
    touch "$ROOT/.impasto-xvfb-ok"
fi
echo "$ROOT"
