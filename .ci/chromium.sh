#!/usr/bin/env bash
# Installs Debian's Chromium for the admin page's browser test
# (axeshttp/browsertest), only when it is missing. Idempotent.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "chromium.sh: /usr/bin/chromium is missing and installing it needs root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
test -x /usr/bin/chromium
