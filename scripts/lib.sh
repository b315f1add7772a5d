# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; it defines functions only.

# log MESSAGE: progress on stderr, so stdout stays for results.
log() { printf '==> %s\n' "$*" >&2; }

# ensure_build_deps [--no-kafka]: installs the system packages the Rust build needs
# (librdkafka is built from source with TLS, SASL PLAIN/SCRAM/OAUTHBEARER, zstd and zlib)
# and, unless --no-kafka, the JDK and Maven that scripts/kafka needs, when they are
# missing and apt-get can be used.
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  command -v cc >/dev/null || missing+=(build-essential)
  if [ "${1:-}" != --no-kafka ]; then
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
  fi
  local header pkg
  for pair in openssl/ssl.h:libssl-dev curl/curl.h:libcurl4-openssl-dev zlib.h:zlib1g-dev; do
    header=${pair%%:*}
    pkg=${pair##*:}
    [ -e "/usr/include/$header" ] || [ -e "/usr/include/$(uname -m)-linux-gnu/$header" ] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "missing build dependencies: ${missing[*]} (install them, then run again)"
    return 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_rust: cargo must be on PATH (rustup's default location is tried too).
ensure_rust() {
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; return 1; }
}

# ensure_c_tools: the C compiler and valgrind that scripts/test-bindings needs, installed
# from Debian packages when missing and apt-get can be used.
ensure_c_tools() {
  local missing=()
  command -v gcc >/dev/null || missing+=(gcc)
  command -v valgrind >/dev/null || missing+=(valgrind)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "missing: ${missing[*]} (install them, then run again)"
    return 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
