#!/usr/bin/env bash
# An arm64 Debian root with Python, numpy and ai-edge-litert, for running whole .tflite models on AArch64 under
# qemu (scripts/arm_litert_parity.py). About 7 minutes; needs root, apt and the Debian mirror. Not part of CI.
#
#   sudo scripts/arm64_root.sh [ROOT]        (default ROOT: /opt/edgesr-arm64-root)
set -euo pipefail
ROOT=${1:-/opt/edgesr-arm64-root}
apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null
# Run AArch64 programs through qemu transparently (the second stage executes the root's own shell).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  if [ ! -d "$ROOT/debootstrap" ]; then
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$ROOT" http://deb.debian.org/debian
  fi
  cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
  chroot "$ROOT" /debootstrap/debootstrap --second-stage
fi
# cpuinfo (XNNPACK) must not see the host's x86 /sys: give it a two-CPU AArch64 view instead.
mkdir -p "$ROOT/sys/devices/system/cpu"
echo 0-1 > "$ROOT/sys/devices/system/cpu/possible"
echo 0-1 > "$ROOT/sys/devices/system/cpu/present"
# Wheels fetched on the host (the root has no CA bundle of its own), installed offline inside.
WHEELS="$ROOT/opt/wheels"
mkdir -p "$WHEELS"
pip download -q --only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
  --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311 -d "$WHEELS" \
  numpy ai-edge-litert==2.3.0
chroot "$ROOT" /bin/sh -c "python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /opt/wheels numpy ai-edge-litert==2.3.0"
echo "arm64 root ready: $ROOT (python: /opt/venv/bin/python inside)"
