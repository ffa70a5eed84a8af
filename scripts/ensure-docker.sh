#!/usr/bin/env bash
# Make sure a Docker daemon answers; start one in the background when root and none does.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v dockerd >/dev/null 2>&1; then
  echo "The Docker daemon does not answer (docker info failed). Start it (systemctl start docker) and retry." >&2
  exit 1
fi
log=${DOCKERD_LOG:-/var/log/voxbench-dockerd.log}
echo "Starting the Docker daemon (log: $log)"
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >"$log" 2>&1 &
fi
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "The Docker daemon did not answer within 60 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
