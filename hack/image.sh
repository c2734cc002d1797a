#!/usr/bin/env bash
# Builds keyward's OCI image without a container daemon (`make image`), with umoci and
# skopeo, into Cargo's target directory:
#
#   target/image/oci                         OCI layout, tag = the Cargo version
#   target/image/keyward-<version>.oci.tar   the same image as an oci-archive, for
#                                            `skopeo copy oci-archive:... docker://...`
#
# The image has one layer holding only what the release binary needs to run: the binary
# at /usr/local/bin/keyward, the shared libraries `ldd` names for it (the dynamic loader
# included) at the paths ldd gives, and an /etc/passwd and /etc/group with the user and
# group keyward (65532). No shell, no package manager, no CA bundle: the in-cluster API
# client trusts the ServiceAccount's ca.crt only, and Vault over https is trusted through
# --vault-ca-cert (docs/image.md). The config runs `keyward run` as 65532:65532 from /;
# its OCI labels carry the version, the HEAD commit and that commit's time, and the file
# times in the layer are that commit time too, so two builds of one commit from the same
# binary give the same digest.
#
# The layer is made with `umoci unpack` + `umoci repack`: `umoci insert` of Debian's
# umoci 0.4.7 writes a layer whose tar stream stops without its end-of-archive blocks.
#
# Before replacing target/image, the image is checked: the archive is copied back into a
# layout, unpacked, its file list compared with what was put in, `keyward --version` and
# `keyward crd` are run from the unpacked rootfs with chroot as 65532:65532 (the second
# must print crds/keyward.yaml byte for byte), and the config must say user 65532.
#
# Needs root (apt-get, chroot). Installs umoci, skopeo and jq with apt-get when missing.
# The release build takes about 8 minutes on 2 cores from nothing, seconds when Cargo has
# it; the image itself takes a few seconds.
set -euo pipefail

IMAGE_REPO=ghcr.io/keyward/keyward
SOURCE_URL=https://github.com/keyward/keyward
KEYWARD_ID=65532

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT_DIR"
umask 022

die() { echo "image: $*" >&2; exit 1; }
say() { echo "image: $*"; }

[[ $# -eq 0 ]] || die "usage: $0"
[[ $(id -u) -eq 0 ]] || die "run as root (apt-get installs the tools, chroot runs the image's binary)"

# --- tools -------------------------------------------------------------------------------
missing=()
for tool in umoci skopeo jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
fi

# --- what is built -----------------------------------------------------------------------
metadata=$(cargo metadata --no-deps --format-version 1) || die "cargo metadata failed"
VERSION=$(jq -r '.packages[] | select(.name == "keyward") | .version' <<<"$metadata")
DESCRIPTION=$(jq -r '.packages[] | select(.name == "keyward") | .description' <<<"$metadata")
TARGET_DIR=$(jq -r '.target_directory' <<<"$metadata")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "no version for the package keyward in cargo metadata"
IMAGE_REF=$IMAGE_REPO:$VERSION
OUT_DIR=$TARGET_DIR/image
LAYOUT=$OUT_DIR/oci
ARCHIVE=$OUT_DIR/keyward-$VERSION.oci.tar
BIN=$TARGET_DIR/release/keyward

REVISION=$(git rev-parse --verify HEAD) || die "not a git checkout: the labels need the HEAD commit"
EPOCH=$(git show -s --format=%ct HEAD)
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
if [[ -n $(git status --porcelain --untracked-files=normal -- Cargo.toml Cargo.lock src crds) ]]; then
  echo "image: warning: Cargo.toml, Cargo.lock, src/ or crds/ differ from HEAD; the image is" \
    "labelled with HEAD ($REVISION) but holds the working tree's build" >&2
fi

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
if ! flock -n 9; then
  echo "image: another build holds $OUT_DIR/.lock; waiting" >&2
  flock 9
fi
rm -rf "$OUT_DIR"/.work.*
work=$(mktemp -d "$OUT_DIR/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start=$(date +%s)

# --- the binary --------------------------------------------------------------------------
say "cargo build --locked --release --bin keyward"
nice -n 10 cargo build --locked --release --bin keyward || die "cargo build failed"
[[ -x $BIN ]] || die "cargo build left no $BIN"
built=$(date +%s)

# --- the rootfs --------------------------------------------------------------------------
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$VERSION"
umoci unpack --image "$work/oci:$VERSION" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs

install -D -m 0755 "$BIN" "$rootfs/usr/local/bin/keyward"

# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" for a library,
# "/lib64/ld-linux-x86-64.so.2 (0x...)" for the loader, "linux-vdso.so.1 (0x...)" for the
# kernel's vDSO (no file). Each file is copied, symlinks resolved, to the path ldd names.
ldd_out=$(LC_ALL=C ldd "$BIN" 2>&1) || [[ $ldd_out == *"not a dynamic executable"* ]] \
  || die "ldd $BIN failed: $ldd_out"
! grep -q 'not found' <<<"$ldd_out" || die "a library of $BIN is missing: $ldd_out"
libs=()
while read -r lib; do
  [[ -n $lib ]] && libs+=("$lib")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
for lib in "${libs[@]}"; do
  [[ -f $lib ]] || die "ldd names $lib, which is not a file"
  install -D -m "$(stat -L -c %a "$lib")" "$lib" "$rootfs$lib"
done

install -d -m 0755 "$rootfs/etc"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  "keyward:x:$KEYWARD_ID:$KEYWARD_ID:keyward:/nonexistent:/sbin/nologin" >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' "keyward:x:$KEYWARD_ID:" >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
chown -R 0:0 "$rootfs"
find "$rootfs" -exec touch -h -d "@$EPOCH" {} +
# What the image must hold, entry by entry: type, mode, owner, path.
expected=$(cd "$rootfs" && find . -mindepth 1 -printf '%y %m %U:%G %p\n' | sort)

# --- the image ---------------------------------------------------------------------------
umoci repack --image "$work/oci:$VERSION" \
  --history.created "$CREATED" --history.created_by "hack/image.sh" \
  --history.comment "keyward $VERSION, its shared libraries, /etc/passwd, /etc/group" \
  "$work/bundle" >/dev/null
umoci config --image "$work/oci:$VERSION" --no-history \
  --created "$CREATED" \
  --config.user "$KEYWARD_ID:$KEYWARD_ID" \
  --config.entrypoint /usr/local/bin/keyward \
  --config.cmd run \
  --config.workingdir / \
  --config.label "org.opencontainers.image.title=keyward" \
  --config.label "org.opencontainers.image.description=$DESCRIPTION" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.source=$SOURCE_URL" \
  --config.label "org.opencontainers.image.revision=$REVISION" \
  --config.label "org.opencontainers.image.created=$CREATED"
umoci gc --layout "$work/oci"
skopeo copy --quiet "oci:$work/oci:$VERSION" "oci-archive:$work/archive.tar:$VERSION"

# --- the checks --------------------------------------------------------------------------
# Everything below reads the archive, i.e. what `skopeo copy` would push.
skopeo copy --quiet "oci-archive:$work/archive.tar" "oci:$work/check:$VERSION"
digest=$(jq -r '.manifests[0].digest' "$work/oci/index.json")
[[ $(jq -r '.manifests[0].digest' "$work/check/index.json") == "$digest" ]] \
  || die "the archive's manifest differs from the layout's ($digest)"

config=$(skopeo inspect --config "oci-archive:$work/archive.tar")
check_config() { # jq filter, expected value
  local got
  got=$(jq -c "$1" <<<"$config")
  [[ $got == "$2" ]] || die "image config: $1 is $got, expected $2"
}
check_config .config.User "\"$KEYWARD_ID:$KEYWARD_ID\""
check_config .config.Entrypoint '["/usr/local/bin/keyward"]'
check_config .config.Cmd '["run"]'
check_config .config.WorkingDir '"/"'
check_config '.config.Labels["org.opencontainers.image.version"]' "\"$VERSION\""
check_config '.config.Labels["org.opencontainers.image.revision"]' "\"$REVISION\""
check_config '.config.Labels["org.opencontainers.image.created"]' "\"$CREATED\""
check_config '.rootfs.diff_ids | length' 1

umoci unpack --image "$work/check:$VERSION" "$work/unpacked" >/dev/null
got=$(cd "$work/unpacked/rootfs" && find . -mindepth 1 -printf '%y %m %U:%G %p\n' | sort)
if [[ $got != "$expected" ]]; then
  diff <(echo "$expected") <(echo "$got") >&2 || true
  die "the unpacked image does not hold exactly the files put in (- expected, + found)"
fi
[[ ! -e $work/unpacked/rootfs/bin/sh ]] || die "the image has a shell"

# An empty environment, so nothing of this shell's reaches the binary.
in_image=(env -i "$(command -v chroot)" --userspec="$KEYWARD_ID:$KEYWARD_ID" --groups="$KEYWARD_ID"
  "$work/unpacked/rootfs")
version_out=$("${in_image[@]}" /usr/local/bin/keyward --version 2>&1) \
  || die "keyward --version fails in the image: $version_out"
[[ $version_out == "keyward $VERSION" ]] \
  || die "keyward --version in the image prints '$version_out', expected 'keyward $VERSION'"
"${in_image[@]}" /usr/local/bin/keyward crd >"$work/crd.yaml" || die "keyward crd fails in the image"
cmp -s "$work/crd.yaml" crds/keyward.yaml \
  || die "keyward crd in the image differs from crds/keyward.yaml (make crds?)"

# --- into place --------------------------------------------------------------------------
rm -rf "$LAYOUT"
mv "$work/oci" "$LAYOUT"
mv -f "$work/archive.tar" "$ARCHIVE"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
layer_bytes=$(jq '[.layers[].size] | add' "$LAYOUT/blobs/sha256/${digest#sha256:}")
rootfs_bytes=$(du -sb "$work/unpacked/rootfs" | cut -f1)
say "checked: user $KEYWARD_ID:$KEYWARD_ID; keyward --version and keyward crd run in the image as $KEYWARD_ID"
say "files: /usr/local/bin/keyward /etc/passwd /etc/group ${libs[*]}"
say "image   $IMAGE_REF ($digest)"
say "layout  $LAYOUT (tag $VERSION)"
say "archive $ARCHIVE ($(mib "$(stat -c %s "$ARCHIVE")"))"
say "size    $(mib "$layer_bytes") compressed, $(mib "$rootfs_bytes") unpacked"
say "cargo build $((built - start))s, image $(($(date +%s) - built))s"
