# Shared by scripts/run, scripts/test and scripts/build-images. Every function is idempotent:
# it checks first and only installs, starts or builds what is missing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AGENT_TARGET=x86_64-unknown-linux-gnu
# A packaged Berth (the .deb) brings the agent built: BERTH_AGENT_BIN names it.
AGENT_BIN=${BERTH_AGENT_BIN:-"$ROOT/target/$AGENT_TARGET/agent/berth-agent"}
DOCKERD_LOG=${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}
# The legacy builder works on every engine without the buildx plugin and offline.
export DOCKER_BUILDKIT=0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian packages)"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Docker engine that answers: installs Debian's docker.io if there is no dockerd, starts
# dockerd in the background if nothing answers.
ensure_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  if ! command -v docker >/dev/null 2>&1; then
    echo "docker client missing after installing docker.io" >&2
    return 1
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    # Open files unbounded, as Debian's docker.service has it (LimitNOFILE=infinity): the engine
    # keeps about ten open per container, so a login shell's limit stops it near 2,000.
    as_root sh -c "ulimit -n 1048576 2>/dev/null || true; nohup dockerd >'$DOCKERD_LOG' 2>&1 &"
    for _ in $(seq 1 120); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "dockerd did not come up; last lines of $DOCKERD_LOG:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    return 1
  fi
}

# What building images needs: debootstrap for the offline Debian rootfs, a static busybox for
# the tiny image.
ensure_image_tools() {
  apt_install debootstrap busybox-static
}

build_agent() {
  if [ -n "${BERTH_AGENT_BIN:-}" ]; then
    return 0
  fi
  log "building berth-agent (static)"
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --profile agent -p berth-agent --target "$AGENT_TARGET"
}

# Runs a command with its output held back, shown only if it fails (docker's legacy builder
# prints a deprecation notice on every build).
quietly() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

image_label() {
  docker image inspect -f '{{ index .Config.Labels "berth.content-hash" }}' "$1" 2>/dev/null || true
}

image_id() {
  docker image inspect -f '{{ .Id }}' "$1" 2>/dev/null || true
}

hash_of() {
  cat "$@" | sha256sum | cut -c1-16
}

# The web UI, which `cargo build` embeds from web/dist: the locked npm packages (installed
# again only when package-lock.json changed), then the Vite build. Node.js 20.19+ is needed
# (Vite 8); Debian's package is the fallback when there is none.
ensure_web() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local stamp="$ROOT/web/node_modules/.berth-lock-hash"
  local want
  want=$(hash_of "$ROOT/web/package-lock.json")
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing the web UI's npm packages (npm ci)"
    (cd "$ROOT/web" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
  log "building the web UI (web/dist)"
  (cd "$ROOT/web" && npm run --silent build >/dev/null)
}

# Debian's Chromium for the browser tests (playwright-core drives it; it downloads nothing).
ensure_browser() {
  apt_install chromium
}

# E2B's SDKs, pinned, for the E2B compatibility test (crates/berth-server/tests/e2b.rs), which
# runs E2B's quickstart with each: from PyPI the current SDK (the /v2 routes) in
# target/e2b-venv and one of the 2.4x line (the previous routes, keys that must look like E2B's)
# in target/e2b-venv-previous; from npm the JavaScript SDK in target/e2b-npm.
E2B_SDK_VERSION=2.63.0
E2B_SDK_PREVIOUS_VERSION=2.40.0
E2B_JS_SDK_VERSION=2.51.0
E2B_CODE_INTERPRETER_VERSION=2.11.5
ensure_e2b_sdk() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  e2b_venv "$ROOT/target/e2b-venv" "$E2B_SDK_VERSION"
  e2b_venv "$ROOT/target/e2b-venv-previous" "$E2B_SDK_PREVIOUS_VERSION"
  # The code interpreter's SDK (`e2b-code-interpreter`), beside the current SDK it builds on.
  if [ "$("$ROOT/target/e2b-venv/bin/python" -c 'import importlib.metadata as m; print(m.version("e2b-code-interpreter"))' 2>/dev/null)" != "$E2B_CODE_INTERPRETER_VERSION" ]; then
    log "installing e2b-code-interpreter==$E2B_CODE_INTERPRETER_VERSION (PyPI) into target/e2b-venv"
    "$ROOT/target/e2b-venv/bin/pip" install --quiet --disable-pip-version-check \
      "e2b-code-interpreter==$E2B_CODE_INTERPRETER_VERSION" "e2b==$E2B_SDK_VERSION"
  fi
  # The JavaScript SDK (npm's `e2b`).
  npm_package "$ROOT/target/e2b-npm" e2b "$E2B_JS_SDK_VERSION"
}
# The newest `e2b` from PyPI, unpinned, in target/e2b-venv-latest: scripts/test runs E2B's
# quickstart with it as an extra that does not fail the run (the pinned SDKs are the gate).
ensure_e2b_latest() {
  local venv="$ROOT/target/e2b-venv-latest"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade e2b
}
# Installs npm's PACKAGE@VERSION into DIR (an ES-module project of its own) unless it is there;
# tests copy their scripts next to its node_modules. Usage: npm_package DIR PACKAGE VERSION
npm_package() {
  local dir=$1 package=$2 version=$3 installed
  installed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$dir/node_modules/$package/package.json" 2>/dev/null || true)
  if [ "$installed" != "$version" ]; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    log "installing $package@$version (npm) into $dir"
    mkdir -p "$dir"
    echo '{"private": true, "type": "module"}' >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "$package@$version")
  fi
}
# Third-party clients of the seed-compatibility layer (docs/compat.md), in target/compat-npm for
# crates/berth-server/tests/compat.rs: the real socket.io-client from npm.
SOCKET_IO_CLIENT_VERSION=4.8.4
ensure_compat_clients() {
  npm_package "$ROOT/target/compat-npm" socket.io-client "$SOCKET_IO_CLIENT_VERSION"
}
# Berth's own Python client (clients/python): built as a wheel, as the README says, and
# installed with pytest into target/python-client-venv for crates/berth-server/tests/python_client.rs.
ensure_python_client() {
  local venv="$ROOT/target/python-client-venv" dist="$ROOT/target/python-dist"
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  if [ ! -x "$venv/bin/python" ]; then
    log "making $venv for the Python client's tests"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pytest>=8"
  fi
  log "building the Python client's wheel into $dist"
  rm -rf "$dist"
  "$venv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps -w "$dist" "$ROOT/clients/python"
  "$venv/bin/pip" uninstall --quiet --yes berth 2>/dev/null || true
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$dist"/berth-*.whl
}
e2b_venv() {
  local venv=$1 version=$2
  if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("e2b"))' 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  log "installing E2B's Python SDK e2b==$version (PyPI) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "e2b==$version"
}
