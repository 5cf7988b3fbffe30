#!/usr/bin/env bash
# `make demo`: the whole reg_success flow on this machine, with real services.
#   1. RabbitMQ + pouchdb-server (installed and started if needed)
#   2. pusherd (release build) consuming the shared queue
#   3. a User-Agents rule set with pusherctl, exactly as an operator would with sup
#   4. an account and a device document
#   5. the Kamailio-captured reg_success replayed onto the `registrar` exchange
#   6. the device's `push` object before and after
#   7. mock APNs (HTTP/2, mTLS) and mock FCM v1 + OAuth; an Apple app (certificate) and an
#      Android app (service account) added with pusherctl, as an operator would
#   8. Kamailio-shaped push_req for each device replayed onto `pushes`, and what the mock
#      providers received; then `pusherctl pusher_maintenance push` for the iPhone
# Stops pusherd, the mocks and the services it started when done.
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
MOCK_PID=
cleanup() {
    local rc=$?
    for pid in $PUSHERD_PID $MOCK_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ $had_state == 0 ]]; then scripts/services.sh down || true; fi
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
ANDROID_ID=d3v1ce00000000000000000android01
ANDROID_APP=com.example.android

say "Mock providers: APNs (HTTP/2 + TLS, client certificate checked) and FCM v1 + OAuth"
MOCK_DIR=.run/demo/mock
rm -f "$MOCK_DIR/mock.json"
target/release/pusher-mock --dir "$MOCK_DIR" --latency-ms 20 >.run/demo/mock.log 2>&1 &
MOCK_PID=$!
for _ in $(seq 1 200); do
    [[ -s $MOCK_DIR/mock.json ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat .run/demo/mock.log >&2; die "pusher-mock exited"; }
    sleep 0.05
done
[[ -s $MOCK_DIR/mock.json ]] || die "pusher-mock did not start"
mock() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v=v[k]
print(v)' "$MOCK_DIR/mock.json" "$@"; }
echo "APNs mock: $(mock apns_url)   FCM mock: $(mock fcm_url)   (20 ms added latency)"
# Our pusherd trusts the mocks' CA on top of the system roots, and sends FCM to the mock.
PUSHER_EXTRA_CA_FILE=$(mock ca_file)
PUSHER_FCM_URL=$(mock fcm_url)
export PUSHER_EXTRA_CA_FILE PUSHER_FCM_URL

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
# A fresh device doc (no push object), replacing one a previous demo run left.
put_device() {
    local id=$1 name=$2 rev doc
    rev=$(curl -sf "$COUCH/$ACCOUNT_DB/$id" 2>/dev/null | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p' || true)
    doc='{"_id":"'$id'","pvt_type":"device","name":"'$name'","sip":{"username":"2001"}'
    [[ -n $rev ]] && doc+=',"_rev":"'$rev'"'
    curl -sf -X PUT "$COUCH/$ACCOUNT_DB/$id" -H 'Content-Type: application/json' -d "$doc}" >/dev/null
    echo "device $id ($name) in account $ACCOUNT_ID"
}
put_device "$DEVICE_ID" "Alice iPhone"

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
target/release/pusher-replay --fixture tests/fixtures/kamailio-captured.jsonl \
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

say "Operator adds the apps (sup pusher_maintenance → pusherctl)"
echo "\$ pusherctl pusher_maintenance add_apple_app org.myorg.myapp client.pem $(mock apns_url)"
target/release/pusherctl pusher_maintenance add_apple_app org.myorg.myapp \
    "$(mock client_pem pkcs8)" "$(mock apns_url)"
echo "\$ pusherctl pusher_maintenance add_firebase_v1_app_from_service_account_file $ANDROID_APP service-account.json"
target/release/pusherctl pusher_maintenance add_firebase_v1_app_from_service_account_file \
    "$ANDROID_APP" "$(mock service_account_file)"

say "An Android phone registers too"
put_device "$ANDROID_ID" "Bob Android"
target/release/pusher-replay --fixture tests/fixtures/kamailio-captured.jsonl \
    --event reg_success --index 0 \
    --set "Custom-Channel-Vars={\"Account-ID\":\"$ACCOUNT_ID\",\"Authorizing-ID\":\"$ANDROID_ID\"}" \
    --set "Contact=\"<sip:2002@127.0.0.1:5076;transport=udp;app-id=$ANDROID_APP;pn-tok=fcm-demo-token-1;pn-type=firebase>\"" \
    --set 'User-Agent="Linphone-Harness/5.2.0 (Android) Android/14"'
for _ in $(seq 1 100); do
    curl -sf "$COUCH/$ACCOUNT_DB/$ANDROID_ID" | grep -q '"push"' && break
    sleep 0.05
done
DEVICE_ID=$ANDROID_ID show_push
curl -sf "$COUCH/$ACCOUNT_DB/$ANDROID_ID" | grep -q '"push"' || die "Android push object was not written"

# The apps reach pusherd through the _changes feed: wait for the new revision.
config_rev=$(curl -sf "$COUCH/system_config/pusher" | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p')
for _ in $(seq 1 100); do
    curl -sf "http://$PUSHER_HTTP_ADDR/ready" | grep -q "\"$config_rev\"" && break
    sleep 0.05
done

say "Calls arrive: Kamailio's PUSHER-ROLE publishes push_req for each sleeping phone"
push_fields() {
    curl -sf "$COUCH/$ACCOUNT_DB/$1" | python3 -c '
import json, sys
p = json.load(sys.stdin)["push"]
for k in ("Token-App", "Token-Type", "Token-ID"):
    print("--set"); print(k + "=" + json.dumps(p[k]))'
}
for dev in "$DEVICE_ID" "$ANDROID_ID"; do
    mapfile -t sets < <(push_fields "$dev")
    target/release/pusher-replay --fixture tests/fixtures/kamailio-captured.jsonl \
        --event push_req --index 0 "${sets[@]}" \
        --set "Msg-ID=\"$(python3 -c 'import uuid; print(uuid.uuid4())')\""
done
received() { curl -sf "$(mock admin_received_url)"; }
for _ in $(seq 1 200); do
    received | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["apns"] and r["fcm"] else 1)' && break
    sleep 0.05
done

say "What the mock providers received"
received | python3 -c '
import json, sys
r = json.load(sys.stdin)
for a in r["apns"]:
    h = dict(a["headers"]) if isinstance(a["headers"], list) else a["headers"]
    print("APNs  POST /3/device/%s  status %s  auth %s" % (a["token"], a["status"], json.dumps(a["auth"])))
    print("      apns-topic=%s apns-push-type=%s apns-priority=%s apns-id=%s" % tuple(
        h.get(k) for k in ("apns-topic", "apns-push-type", "apns-priority", "apns-id")))
    print("      " + json.dumps(a["body"]))
for f in r["fcm"]:
    print("FCM   POST /v1/projects/%s/messages:send  status %s  as %s" % (f["project"], f["status"], f.get("client_email")))
    print("      " + json.dumps(f["message"]))
if not (r["apns"] and r["fcm"]):
    sys.exit("demo: a push did not arrive")
'

say "Operator sends a test push to the iPhone (sup pusher_maintenance push → pusherctl)"
echo "\$ pusherctl pusher_maintenance push $ACCOUNT_ID $DEVICE_ID"
target/release/pusherctl pusher_maintenance push "$ACCOUNT_ID" "$DEVICE_ID"

say "What pusherd counted (curl http://$PUSHER_HTTP_ADDR/metrics, histogram buckets left out)"
metrics=$(curl -sf "http://$PUSHER_HTTP_ADDR/metrics") || die "no /metrics"
# (the expiry gauge of the demo's app only: a shared dev CouchDB may hold many apps)
grep -v -e '^#' -e '_bucket{' -e '^pusher_apns_certificate_expiry_seconds' <<<"$metrics"
grep '^pusher_apns_certificate_expiry_seconds{app="org.myorg.myapp"}' <<<"$metrics" || true

say "pusherd log"
tail -n 8 .run/demo/pusherd.log
