#!/usr/bin/env bash
# Debian packages the tests and the builder need, beyond Node 20 and Java 17 (run as root):
# Maven resolves the Kafka broker's jars; apt's lists let the builder resolve and fetch Debian's
# kernel headers; gcc-12, make, libelf, libssl, zlib and pahole are what the cloud kernels'
# kbuild trees use to compile a livepatch module; bubblewrap is the sandbox it compiles in (ADR 0013). qemu-system-x86, busybox-static and cpio boot those kernels
# for the kernel test tier (libs/kernel-lab). chromium runs the console's browser tests (playwright-core). prometheus scrapes the services in the CLI's e2e test
# (metrics, ADR 0019). flex, bison, bc, libelf-dev, libssl-dev, libxxhash-dev (objtool's klp
# subcommand), patchutils and gawk build the lab kernel profile and run klp-build (issue 18); its
# source comes from trixie-backports through a private apt configuration (libs/kernel-toolchain).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends maven make gcc-12 libelf1 libssl3 zlib1g pahole bubblewrap \
  qemu-system-x86 busybox-static cpio chromium systemd prometheus \
  flex bison bc libelf-dev libssl-dev libxxhash-dev patchutils gawk openssl >/dev/null
echo "setup-debian: maven, make, gcc-12, libelf1, libssl3, zlib1g, pahole, bubblewrap, qemu-system-x86, busybox-static, cpio, chromium, systemd (systemd-analyze verify for deploy/systemd), prometheus, the kernel build tools (flex, bison, bc, libelf-dev, libssl-dev, libxxhash-dev, patchutils, gawk) installed; apt lists fresh"
