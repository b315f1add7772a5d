# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; it defines functions only.

# log MESSAGE: progress on stderr, so stdout stays for results.
# Progress lines carry the wall-clock time, so that a CI log shows where its minutes go.
log() { printf '==> %(%H:%M:%S)T %s\n' -1 "$*" >&2; }

# The cargo features of a full test run: every test-selection feature and the optional
# sled engine. scripts/test passes the same list (and --workspace) to every cargo command,
# so that one set of artifacts serves them all: each different feature set rebuilds the
# crates it touches and their dependents, which cost minutes and gigabytes per set. The
# tests that need a run of their own (the broker outage, the 3-broker cluster) are
# targets with `test = false`, run by name.
TEST_FEATURES=ingest-core/kafka-tests,ingest-core/kafka-outage-tests,ingest-core/kafka-cluster-tests,ingest-core/sled-buffer,ingest-benches/sled-buffer,edge-agent/kafka-tests,processor/service-tests,ingest-core/registry-tests,edge-agent/registry-tests

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
    # scripts/registry builds the schema registry (a Quarkus build compiles a few classes).
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
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

# ensure_podman: podman, buildah and runc from Debian (and debootstrap for the base
# image), installed when missing, with a containers.conf that works on machines whose
# cgroups are in hybrid mode (crun refuses them, so runc; cgroupfs; events to a file, as
# there is no systemd journal) and whose root lacks CAP_SYS_RESOURCE (ulimits no higher
# than the current hard limits). Exports CONTAINERS_CONF unless the caller set it.
ensure_podman() {
  local missing=() tool
  for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
      log "missing: ${missing[*]} (install podman, buildah, runc and debootstrap, then run again)"
      return 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
  fi
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    local conf="$root/.cache/containers/containers.conf"
    mkdir -p "$(dirname "$conf")"
    cat >"$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    export CONTAINERS_CONF="$conf"
  fi
}

# debian_mirror: the Debian mirror apt is configured with (deb822 or one-line sources),
# else deb.debian.org.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }
         /^deb / && $3 !~ /security/ { print ($2 ~ /^\[/ ? $3 : $2); exit }')
  echo "${uri:-http://deb.debian.org/debian}"
}

# ensure_base_image NAME: a Debian bookworm slim image called NAME in podman's store,
# made from Debian's own packages (debootstrap --variant=minbase, trimmed like the
# official slim image: no docs, man pages, locales or apt lists), since no image
# registry may be reachable. The root file system is cached as a tarball in
# .cache/base-image, so a second run only imports it.
ensure_base_image() {
  local name=$1 cache="$root/.cache/base-image" tarball
  tarball="$cache/debian-bookworm-minbase.tar"
  podman image exists "$name" && return 0
  if [ ! -s "$tarball" ]; then
    local rootfs="$cache/rootfs" mirror
    mirror=$(debian_mirror)
    log "making the base image with debootstrap from $mirror (about a minute)"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -n 20 "$cache/debootstrap.log" >&2; log "debootstrap failed (log: $cache/debootstrap.log)"; return 1; }
    # The image's apt uses the same mirror; then trim what the official slim images leave out.
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import --change 'CMD ["bash"]' "$tarball" "$name" >/dev/null 2>&1 || { log "podman import of $tarball failed"; return 1; }
  log "base image $name imported from $tarball"
}

# ensure_cargo_deny: installs cargo-deny from crates.io (`cargo install --locked`) when
# `cargo deny` is not there yet. Building it takes minutes; it is done once per machine.
ensure_cargo_deny() {
  ensure_rust || return 1
  cargo deny --version >/dev/null 2>&1 && return 0
  log "installing cargo-deny (cargo install --locked cargo-deny)"
  # Its own build directory (cargo's temporary one): the workspace's target dir keeps
  # only the workspace. Unset, not empty: cargo refuses an empty CARGO_TARGET_DIR.
  env -u CARGO_TARGET_DIR cargo install --locked cargo-deny
}

# ensure_commands CMD:PACKAGE...: installs the Debian PACKAGE of each CMD missing from
# PATH, when apt-get can be used.
ensure_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "missing: ${missing[*]} (install them, then run again)"
    return 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_c_tools: the C compiler and valgrind that scripts/test-bindings needs.
ensure_c_tools() { ensure_commands gcc:gcc valgrind:valgrind; }

# ensure_python_venv DIR REQUIREMENT...: a Python virtual environment in DIR (under
# .cache/) holding the given PyPI requirements, installed with pip when the list
# changed since the last run (a stamp file in DIR remembers it). Python 3.9 or later and
# its venv module are needed; Debian's python3-venv is installed when missing.
ensure_python_venv() {
  local dir=$1
  shift
  command -v python3 >/dev/null || { log "python3 not found: install Python 3.9 or later"; return 1; }
  if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
      log "python3 lacks venv/ensurepip or is older than 3.9 (install python3-venv), then run again"
      return 1
    fi
    log "installing python3-venv"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  local wanted="$*"
  if [ "$(cat "$dir/.requirements" 2>/dev/null)" != "$wanted" ]; then
    log "installing $wanted into $dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    printf '%s' "$wanted" >"$dir/.requirements"
  fi
}

# ensure_node: Node.js with npm, and kcat (the Node.js binding's tests read back what
# reached Kafka with it), installed from Debian when missing. Building the binding needs
# Node.js 20.17 or later (@napi-rs/cli's declaration generator); older ones are refused
# with that message rather than failing inside npm.
ensure_node() {
  ensure_commands node:nodejs npm:npm kcat:kcat || return 1
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 17) ? 0 : 1)' ||
    { log "Node.js $(node --version) is too old: building the Node.js binding needs 20.17 or later (https://nodejs.org)"; return 1; }
}
