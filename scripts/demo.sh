#!/usr/bin/env bash
# `make demo`: the whole reg_success flow on this machine, with real services.
#   1. RabbitMQ + pouchdb-server (installed and started if needed)
#   2. pusherd (release build) consuming the shared queue
#   3. a User-Agents rule set with pusherctl, exactly as an operator would with sup
#   4. an account and a device document
#   5. the Kamailio-captured reg_success replayed onto the `registrar` exchange
#   6. the device's `push` object before and after
# Stops pusherd and the services it started when done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

say "Building (release)"
cargo build --release --quiet --bins

had_state=0
[[ -s .run/services.state ]] && had_state=1
eval "$(scripts/services.sh up)"
mkdir -p .run/demo
PUSHERD_PID=
cleanup() {
    local rc=$?
    if [[ -n $PUSHERD_PID ]] && kill -0 "$PUSHERD_PID" 2>/dev/null; then
        kill -TERM "$PUSHERD_PID" 2>/dev/null || true
        wait "$PUSHERD_PID" 2>/dev/null || true
    fi
    [[ $had_state == 0 ]] && scripts/services.sh down || true
    exit "$rc"
}
trap cleanup EXIT

export PUSHER_AMQP_URI=$PUSHER_TEST_AMQP_URI
export PUSHER_COUCH_URL=$PUSHER_TEST_COUCH_URL
export PUSHER_HTTP_ADDR=127.0.0.1:${PUSHER_DEMO_HTTP_PORT:-18099}
export PUSHER_NODE=pusher@demo
COUCH=$PUSHER_COUCH_URL
ACCOUNT_ID=3c1e6a2f9b7d4e0a8c5b1d2e3f405162
ACCOUNT_DB=account%2F3c%2F1e%2F6a2f9b7d4e0a8c5b1d2e3f405162
DEVICE_ID=d3v1ce0000000000000000000000demo

say "Starting pusherd (log: .run/demo/pusherd.log)"
started=$(date +%s%N)
target/release/pusherd >.run/demo/pusherd.log 2>&1 &
PUSHERD_PID=$!
for _ in $(seq 1 200); do
    curl -sf "http://$PUSHER_HTTP_ADDR/ready" >/dev/null 2>&1 && break
    kill -0 "$PUSHERD_PID" 2>/dev/null || { cat .run/demo/pusherd.log >&2; die "pusherd exited"; }
    sleep 0.05
done
curl -sf "http://$PUSHER_HTTP_ADDR/ready" >/dev/null || die "pusherd not ready"
echo "ready in $(( ($(date +%s%N) - started) / 1000000 )) ms: $(curl -s "http://$PUSHER_HTTP_ADDR/ready")"

say "Operator sets a User-Agents rule (sup kapps_config set_json → pusherctl)"
echo "\$ pusherctl kapps_config set_json pusher User-Agents.Harness '{\"regex\":\"^Linphone-Harness\",...}'"
target/release/pusherctl kapps_config set_json pusher User-Agents.Harness \
    '{"regex":"^Linphone-Harness","properties":{"Token-App":"app-id","Token-Type":"pn-type","Token-ID":"pn-tok"}}'

say "Account database and device document"
curl -sf -X PUT "$COUCH/$ACCOUNT_DB" >/dev/null || true
rev=$(curl -sf "$COUCH/$ACCOUNT_DB/$DEVICE_ID" 2>/dev/null | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p' || true)
doc='{"_id":"'$DEVICE_ID'","pvt_type":"device","name":"Alice iPhone","sip":{"username":"2001"}'
[[ -n $rev ]] && doc+=',"_rev":"'$rev'"'
curl -sf -X PUT "$COUCH/$ACCOUNT_DB/$DEVICE_ID" -H 'Content-Type: application/json' -d "$doc}" >/dev/null
echo "device $DEVICE_ID in account $ACCOUNT_ID"

show_push() {
    curl -sf "$COUCH/$ACCOUNT_DB/$DEVICE_ID" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps({"_rev": d["_rev"], "name": d.get("name"), "push": d.get("push")}, indent=2))'
}
say "Device BEFORE the registration"
show_push
# The rule reaches pusherd through the system_config _changes feed: wait for its revision.
config_rev=$(curl -sf "$COUCH/system_config/pusher" | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p')
for _ in $(seq 1 100); do
    curl -sf "http://$PUSHER_HTTP_ADDR/ready" | grep -q "\"$config_rev\"" && break
    sleep 0.05
done
echo "pusherd runs config revision: $(curl -sf "http://$PUSHER_HTTP_ADDR/ready")"

say "Kamailio publishes reg_success (replaying the real capture, CCVs added)"
target/release/pusher-replay --fixture ../shared/fixtures/kamailio-captured.jsonl \
    --event reg_success --index 0 \
    --set "Custom-Channel-Vars={\"Account-ID\":\"$ACCOUNT_ID\",\"Authorizing-ID\":\"$DEVICE_ID\"}" \
    --set 'Proxy-URI="sip:203.0.113.10:5060;transport=udp"'

for _ in $(seq 1 100); do
    curl -sf "$COUCH/$ACCOUNT_DB/$DEVICE_ID" | grep -q '"push"' && break
    sleep 0.05
done
say "Device AFTER the registration"
show_push
curl -sf "$COUCH/$ACCOUNT_DB/$DEVICE_ID" | grep -q '"push"' || die "push object was not written"

say "pusherd log"
tail -n 8 .run/demo/pusherd.log
