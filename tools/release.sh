#!/usr/bin/env bash
# Packs what `make dist` built for each architecture into dist/release (run by `make release`):
#   flb-fanout-<version>-linux-<arch>.tar.gz   the three artifacts, the Fluent Bit configs, the
#                                              deployment manifests, LICENSE, README, CHANGELOG,
#                                              and a CycloneDX SBOM per artifact (from Cargo.lock)
#   SHA256SUMS                                 of the tarballs
# Reproducible: file times, owners and order are fixed, and the SBOMs' timestamps come from
# the last commit (SOURCE_DATE_EPOCH).
set -euo pipefail
version=$1
shift
cd "$(dirname "$0")/.."
out=dist/release
rm -rf "$out"
mkdir -p "$out"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

# cargo-cyclonedx writes one file beside every workspace member's Cargo.toml: made in a
# scratch copy of the manifests would lose the lock, so they are made in place, moved out at
# once, and the rest removed.
sbom() { # <rust target> <member dir> <artifact name> <destination dir>
  local name="flb-fanout-sbom-$$"
  cargo cyclonedx -q --format json --spec-version 1.5 --no-build-deps --target "$1" \
    --override-filename "$name"
  mv "$2/$name.json" "$4/$3.cdx.json"
  find . -name "$name.json" -not -path './target/*' -delete
}

for arch in "$@"; do
  case "$arch" in
    x86_64 | aarch64) ;;
    *) echo "release: no build for $arch" >&2; exit 2 ;;
  esac
  if [ "$arch" = "$(uname -m)" ]; then built=dist; else built=dist/$arch; fi
  name=flb-fanout-$version-linux-$arch
  stage=$out/$name
  mkdir -p "$stage/sbom"
  for file in fanout.so k8s-metadata.wasm job-wrapper; do
    [ -f "$built/$file" ] || { echo "release: no $built/$file (make dist ARCH=$arch)" >&2; exit 1; }
    cp "$built/$file" "$stage/"
  done
  cp -r fluent-bit-conf deploy "$stage/"
  cp LICENSE README.md CHANGELOG.md "$stage/"
  sbom "$arch-unknown-linux-gnu" plugin fanout "$stage/sbom"
  sbom "$arch-unknown-linux-musl" job-wrapper job-wrapper "$stage/sbom"
  sbom wasm32-wasip1 wasm-filter k8s-metadata "$stage/sbom"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$out" -cf - "$name" | gzip -n -9 > "$out/$name.tar.gz"
  rm -rf "$stage"
done
(cd "$out" && sha256sum -- *.tar.gz > SHA256SUMS)
ls -l "$out"
