#!/usr/bin/env bash
# Builds the C library this package links (libingest.a) and copies it to lib/.
#
#   ./build-lib.sh            release build (profile release-ffi: optimised, unwinding)
#   ./build-lib.sh --debug    dev build (quicker to compile; what the tests use)
#
# Needs the Rust toolchain and what librdkafka's build needs (cmake, a C compiler,
# libssl, libsasl2, libcurl and zlib headers); see bindings/c/README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
profile=release-ffi dir=release-ffi
case "${1:-}" in
  "") ;;
  --debug) profile=dev dir=debug ;;
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
esac
cd "$here/../.."
cargo build --profile "$profile" -p ingest-ffi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$here/lib"
cp "$target/$dir/libingest.a" "$here/lib/libingest.a.tmp"
mv "$here/lib/libingest.a.tmp" "$here/lib/libingest.a"
echo "bindings/go/lib/libingest.a: $profile build of $(cargo pkgid -p ingest-ffi | sed 's/.*#//')"
