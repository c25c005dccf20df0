#!/usr/bin/env bash
# Installs the Debian packages hutch and its test suite need, if any is missing.
# Idempotent and quiet when everything is present.
set -euo pipefail

PACKAGES=(
  nftables          # NAT and host isolation for sandboxes with internet access
  iproute2          # `ip`, used by tests and for diagnostics
  procps            # ps/pgrep inside sandboxes (the built-in template is the host's /usr)
  python3 python3-venv python3-pip  # the Python kernel; the SDK compatibility venv
  python3-matplotlib python3-pandas # rich output (PNG figures, DataFrames)
  python3-flask     # web apps in sandboxes (the MCP start_web_app tool and its tests)
  nodejs            # the JavaScript kernel
  golang-go         # Go execution
  bubblewrap        # the reference in `hutch bench`
  mmdebstrap        # template builds: Debian roots from the apt mirror
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "hutch needs these Debian packages: ${missing[*]} — run as root (or install them)" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
