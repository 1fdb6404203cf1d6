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
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  fi
fi

go mod download
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 "$@" ./...
