#!/usr/bin/env bash
# Make sure the programs voxbench's tests and demo drive are installed.
# As root on Debian/Ubuntu, missing packages are installed with apt; elsewhere the script
# lists what is missing and fails, so nothing is half-installed silently.
set -euo pipefail

# command-or-file  package
REQUIRED=(
  "dockerd docker.io"
  "ffmpeg ffmpeg"
  "sox sox"
  "espeak-ng espeak-ng"
  "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1|/usr/lib/aarch64-linux-gnu/libespeak-ng.so.1 libespeak-ng1"
  "flite flite"
  "text2wave festival"
  "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts festvox-us-slt-hts"
  "tmux tmux"
  "git-lfs git-lfs"
  "debootstrap debootstrap"
  "docker-registry docker-registry"
  "chromium chromium"
  "chromedriver chromium-driver"
  "iptables iptables"
  "nsenter util-linux"
)

present() {
  local probe alt
  probe=$1
  IFS='|' read -ra alts <<<"$probe"
  for alt in "${alts[@]}"; do
    if [[ $alt == /* ]]; then [[ -e $alt ]] && return 0
    else command -v "$alt" >/dev/null 2>&1 && return 0
    fi
  done
  return 1
}

missing=()
for entry in "${REQUIRED[@]}"; do
  read -r probe package <<<"$entry"
  present "$probe" || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing missing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "Missing system packages: ${missing[*]}" >&2
echo "Install them with your package manager (as root on Debian/Ubuntu: apt-get install ${missing[*]})." >&2
exit 1
