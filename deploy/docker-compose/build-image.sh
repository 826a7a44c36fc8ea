#!/usr/bin/env bash
# Builds the eggroll-rs image (one image for every role) from a local `eggroll` binary,
# without pulling anything: the image is `FROM scratch` with a root filesystem assembled here
# from the host (the binary, the shared libraries it links, a /tmp). No registry is needed.
#
#   deploy/docker-compose/build-image.sh [path/to/eggroll] [image tag]
#   default binary: target/release/eggroll of this repository; default tag: eggroll-rs:trial
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
binary="${1:-$repo/target/release/eggroll}"
tag="${2:-${EGGROLL_IMAGE:-eggroll-rs:trial}}"
# The uid the daemons run as inside the containers; owns their data and log dirs.
uid=10001

die() { echo "build-image: error: $*" >&2; exit 1; }
say() { echo "build-image: $*"; }

[ -x "$binary" ] || die "no executable eggroll binary at $binary; build it (cargo build --release -p eggroll) or pass its path"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a docker engine (docker info fails): start dockerd or check your permissions"
command -v ldd >/dev/null || die "ldd is missing (Debian/Ubuntu: apt-get install libc-bin)"
strip_cmd=""
if command -v objcopy >/dev/null; then strip_cmd="objcopy --strip-debug"
elif command -v strip >/dev/null; then strip_cmd="strip --strip-debug"
else die "neither objcopy nor strip found (Debian/Ubuntu: apt-get install binutils)"; fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/eggroll-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/etc" "$root/tmp" "$root/var/lib" "$root/var/log" "$ctx/data" "$ctx/logs"
chmod 1777 "$root/tmp"

# The release binary carries ~400 MB of line tables; the image does not need them.
say "copying $binary without debug info"
cp "$binary" "$root/eggroll"
$strip_cmd "$root/eggroll"
chmod 0755 "$root/eggroll"

# Every library the dynamic loader resolves for it, at the same path, plus the loader itself
# (glibc, libstdc++, libgcc_s, libm). glibc >= 2.34 has the NSS files/dns modules built in;
# older ones load libnss_* at run time, so copy those when they exist.
libs="$(ldd "$root/eggroll" | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}')"
[ -n "$libs" ] || die "ldd lists no libraries for $binary: is it a dynamically linked x86-64/arm64 ELF?"
for lib in $libs /lib/*-linux-gnu/libnss_files.so.2 /lib/*-linux-gnu/libnss_dns.so.2; do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
# Docker bind-mounts /etc/hosts and /etc/resolv.conf; name lookups go to them in this order.
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/eggroll\neggroll:x:%s:%s:eggroll:/var/lib/eggroll:/eggroll\n' "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\neggroll:x:%s:\n' "$uid" >"$root/etc/group"

cat >"$ctx/Dockerfile" <<DOCKERFILE
# Assembled by build-image.sh from the host; nothing is pulled.
FROM scratch
COPY rootfs/ /
# Named volumes mounted here start as copies of these dirs, owned by the eggroll user.
COPY --chown=$uid:$uid data/ /var/lib/eggroll/
COPY --chown=$uid:$uid logs/ /var/log/eggroll/
USER $uid:$uid
WORKDIR /var/lib/eggroll
ENTRYPOINT ["/eggroll"]
CMD ["--help"]
DOCKERFILE

say "building image $tag ($(du -sh "$root" | cut -f1) root filesystem)"
# The legacy builder and BuildKit both build FROM scratch offline; quiet output, errors shown.
if ! out="$(DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" 2>&1)"; then
    echo "$out" >&2
    die "docker build failed (output above)"
fi
docker run --rm "$tag" --version >/dev/null 2>&1 \
    || die "the image $tag was built but '/eggroll --version' fails in it; run: docker run --rm $tag --help"
say "built $tag: $(docker run --rm "$tag" --version)"
