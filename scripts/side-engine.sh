# shellcheck shell=bash
# A second dockerd beside the host's, for engines set up in ways the host's is not (user
# namespace remapping, a storage driver that limits containers' size), with `berth serve` on it.
# Both run in a network namespace of their own, so the engine's bridges and Berth's firewall
# rules stay off the host's. Sourced by scripts/test-userns and scripts/test-disk-quota after
# lib.sh; SIDE names the namespace and /run/$SIDE holds the sockets, pids and logs.
#   side_engine_up DATA_ROOT [dockerd flags...]   starts the engine, loads berth/tiny into it
#   side_engine ARGS...                           the docker CLI against it
#   side_berth_up PORT CONFIG                     `berth serve` with CONFIG (TOML) on it
#   side_berth ARGS...                            the berth CLI against that server, as admin
#   side_fail MESSAGE                             says why, shows the server's log, exits 1
#   side_down                                     removes everything the above made

SIDE_BERTH=${BERTH_BIN:-$ROOT/target/debug/berth}
side_run() { echo "/run/$SIDE"; }
side_in_ns() { nsenter --net="/run/netns/$SIDE" "$@"; }
side_engine() { docker -H "unix://$(side_run)/docker.sock" "$@"; }

side_engine_up() {
  local data=$1 run
  shift
  # nsenter (util-linux) and curl, which side_berth_up polls readiness with.
  apt_install util-linux curl
  run=$(side_run)
  mkdir -p "$run" "$data"
  ip netns add "$SIDE"
  ip -n "$SIDE" link set lo up
  log "starting a second dockerd $* (log: $run/dockerd.log)"
  nohup nsenter --net="/run/netns/$SIDE" dockerd "$@" \
    --data-root "$data" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
    -H "unix://$run/docker.sock" --containerd-namespace "$SIDE" \
    --containerd-plugins-namespace "$SIDE-plugins" >"$run/dockerd.log" 2>&1 &
  for _ in $(seq 120); do side_engine info >/dev/null 2>&1 && break; sleep 0.5; done
  if ! side_engine info >/dev/null 2>&1; then
    echo "the second dockerd did not come up; its log ends:" >&2
    tail -n 20 "$run/dockerd.log" >&2
    exit 1
  fi
  docker save berth/tiny:latest | side_engine load -q >/dev/null
}

side_berth_up() {
  local port=$1 config=$2 run
  run=$(side_run)
  mkdir -p "$run/berth"
  printf '%s\n' "$config" >"$run/berth.toml"
  # nsenter itself, not side_in_ns: a function in the background is a subshell, and its pid
  # would not be the server's.
  nsenter --net="/run/netns/$SIDE" "$SIDE_BERTH" serve --listen "127.0.0.1:$port" \
    --config "$run/berth.toml" --data-dir "$run/berth" >"$run/berth.log" 2>&1 &
  echo $! >"$run/berth.pid"
  for _ in $(seq 100); do
    side_in_ns curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  SIDE_URL="http://127.0.0.1:$port"
}

side_berth() {
  side_in_ns env BERTH_URL="$SIDE_URL" BERTH_TOKEN="$(cat "$(side_run)/berth/admin-token")" \
    "$SIDE_BERTH" "$@"
}

side_fail() {
  echo "$SIDE: $*; berth serve's log ends:" >&2
  tail -n 30 "$(side_run)/berth.log" >&2
  exit 1
}

side_down() {
  local run
  run=$(side_run)
  if [ -f "$run/berth.pid" ]; then
    local berth_pid
    berth_pid=$(cat "$run/berth.pid")
    kill "$berth_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$berth_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ -f "$run/docker.pid" ]; then
    local left
    left=$(side_engine ps -aq 2>/dev/null || true)
    [ -z "$left" ] || side_engine rm -f $left >/dev/null 2>&1 || true
    kill "$(cat "$run/docker.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "$run/docker.pid" ] || break; sleep 0.2; done
  fi
  ip netns del "$SIDE" 2>/dev/null || true
  rm -rf "$run"
}
