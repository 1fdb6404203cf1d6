#!/usr/bin/env bash
# scripts/test.sh: the whole test suite, from a fresh machine.
# Installs what the tests need (Debian packages, Go modules), then runs
# go vet and every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v gcc >/dev/null || need_pkgs+=(gcc) # the race detector needs cgo
command -v git >/dev/null || need_pkgs+=(git) # keybound scan reads git history
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  fi
fi

# The HTML posture report is checked in headless Chromium (Debian's package).
# Chromium is large and optional: if it cannot be installed the suite still
# runs, that test skips and says so loudly; once it is here, its absence is
# a failure (KEYBOUND_REQUIRE_CHROMIUM).
if ! command -v chromium >/dev/null; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  { $as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    echo "!!!!!!!! WARNING: chromium could not be installed: the HTML posture report will NOT be checked in a browser" >&2
fi
if command -v chromium >/dev/null; then
  export KEYBOUND_REQUIRE_CHROMIUM=1
fi

go mod download
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 "$@" ./...
