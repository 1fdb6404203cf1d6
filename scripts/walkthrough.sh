#!/usr/bin/env bash
# scripts/walkthrough.sh: the README's five-minute walkthrough, run for real.
#
# Builds keybound, starts it on a free loopback port with a fresh data
# directory, registers a machine identity, gets DPoP-bound tokens with raw
# curl and with `keybound token`, checks one by introspection, suspends the
# identity and shows that the token endpoint and introspection then refuse
# it. Exits non-zero with a message naming the failed step. the README walkthrough
# holds the same commands for people.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
for tool in go curl; do
  command -v "$tool" >/dev/null || { echo "walkthrough: $tool is required" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keybound-walkthrough.XXXXXX")
SERVER_PID=
STEP="setup"
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    echo "walkthrough: FAILED at step: $STEP" >&2
    if [ -s "$WORK/serve.log" ]; then
      echo "--- last lines of the server log:" >&2
      tail -n 20 "$WORK/serve.log" >&2
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "walkthrough: $*" >&2; exit 1; }
step() { STEP=$*; echo "== $*"; }

step "build keybound"
(cd "$REPO" && go build -o "$WORK/bin/keybound" ./cmd/keybound)
export PATH="$WORK/bin:$PATH"
cd "$WORK"

# A free loopback port: ask the kernel when python3 is here, else pick one.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 30000)))

# ---- the walkthrough, as in the README walkthrough (port 8443 there) ----

step "start the server"
export KEYBOUND_DATA_DIR=$PWD/keybound-data
KB=https://127.0.0.1:$PORT
CA=$KEYBOUND_DATA_DIR/tls/ca.pem
keybound serve --data-dir "$KEYBOUND_DATA_DIR" --addr "127.0.0.1:$PORT" >serve.log 2>&1 &
SERVER_PID=$!

step "wait for $KB/readyz"
for _ in $(seq 1 150); do
  if curl -fsS --cacert "$CA" "$KB/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || fail "keybound serve exited early (port $PORT taken?)"
  sleep 0.1
done
curl -fsS --cacert "$CA" "$KB/readyz" | grep -q ready || fail "server not ready after 15 s"

step "generate the service's key pair and a DPoP key"
keybound keygen --key svc.key --jwks svc.jwks.json
keybound keygen --key dpop.key
[ "$(stat -c %a svc.key 2>/dev/null || stat -f %Lp svc.key)" = 600 ] || fail "svc.key is not mode 0600"
! grep -q '"d"' svc.jwks.json || fail "svc.jwks.json holds private key material"

step "register the machine identity"
keybound client create --name billing-sync --owner team-billing@example.com \
  --purpose "nightly invoice export" --environment prod --expires-in 30d \
  --scope "invoices:read" --jwks-file svc.jwks.json --dpop -o json | tee client.json
ID=$(sed -n 's/^ *"client_id": *"\([^"]*\)".*/\1/p' client.json)
[ -n "$ID" ] || fail "no client_id in the output of client create"
grep -Eq '"status": *"active"' client.json || fail "new client is not active"

step "get a DPoP-bound token with raw curl (private_key_jwt + DPoP proof)"
curl -sS --cacert "$CA" "$KB/oauth2/token" \
  -H "DPoP: $(keybound dpop-proof --key dpop.key --method POST --url "$KB/oauth2/token")" \
  -d grant_type=client_credentials -d client_id="$ID" -d scope=invoices:read \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  --data-urlencode client_assertion="$(keybound assertion --key svc.key --client-id "$ID" --aud "$KB/oauth2/token")" |
  tee token.json
echo
grep -Eq '"token_type": *"DPoP"' token.json || fail "token endpoint did not issue a DPoP token"
grep -q '"access_token"' token.json || fail "no access_token in the token response"

step "get a token with keybound token"
keybound token --client-id "$ID" --key svc.key --dpop-key dpop.key --scope invoices:read -o json | tee token2.json
grep -Eq '"token_type": *"DPoP"' token2.json || fail "keybound token did not get a DPoP token"
TOKEN=$(sed -n 's/^ *"access_token": *"\([^"]*\)".*/\1/p' token2.json)
[ -n "$TOKEN" ] || fail "no access_token in the output of keybound token"

step "register a resource server that may introspect tokens"
keybound keygen --key api.key --jwks api.jwks.json
API_ID=$(keybound client create --name invoices-api --owner team-billing@example.com \
  --purpose "invoice API: checks incoming tokens" --environment prod --expires-in 30d \
  --scope keybound:introspect --jwks-file api.jwks.json -o json |
  sed -n 's/^ *"client_id": *"\([^"]*\)".*/\1/p')
[ -n "$API_ID" ] || fail "could not register the resource server"

step "introspect the token as the resource server"
introspect() {
  curl -sS --cacert "$CA" "$KB/oauth2/introspect" -d token="$TOKEN" -d client_id="$API_ID" \
    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
    --data-urlencode client_assertion="$(keybound assertion --key api.key --client-id "$API_ID" --aud "$KB/oauth2/introspect")"
}
introspect | tee introspect.json
echo
grep -Eq '"active": *true' introspect.json || fail "a fresh token is not active"

step "suspend the identity"
keybound client suspend "$ID" --reason "walkthrough: key may have leaked"
keybound client show "$ID"

step "the token endpoint now refuses the identity"
curl -sS --cacert "$CA" -o refused.json -w '%{http_code}\n' "$KB/oauth2/token" \
  -H "DPoP: $(keybound dpop-proof --key dpop.key --method POST --url "$KB/oauth2/token")" \
  -d grant_type=client_credentials -d client_id="$ID" -d scope=invoices:read \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  --data-urlencode client_assertion="$(keybound assertion --key svc.key --client-id "$ID" --aud "$KB/oauth2/token")" |
  tee status.txt
cat refused.json
echo
[ "$(cat status.txt)" = 401 ] || fail "token endpoint answered $(cat status.txt) for a suspended client, want 401"
grep -Eq '"error": *"invalid_client"' refused.json || fail "token endpoint did not answer invalid_client"
if keybound token --client-id "$ID" --key svc.key --dpop-key dpop.key 2>refused.txt; then
  fail "keybound token got a token for a suspended client"
fi
cat refused.txt
grep -q invalid_client refused.txt || fail "keybound token did not report invalid_client"

step "the token already issued is no longer active"
introspect | tee introspect.json
echo
grep -Eq '"active": *false' introspect.json || fail "a suspended client's token is still active"

step "the admin log shows who did what"
keybound admin-log | tee admin-log.txt
for action in client.create client.suspend; do
  grep -q "$action.*$ID" admin-log.txt || fail "admin log lacks $action for $ID"
done

step "stop the server"
kill "$SERVER_PID"
wait "$SERVER_PID" || fail "keybound serve exited with status $? on SIGTERM"
SERVER_PID=
grep -q "shutting down" serve.log || fail "the server log does not show a graceful shutdown"

STEP=done
echo "walkthrough: OK"
