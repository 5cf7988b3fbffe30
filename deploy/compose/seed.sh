#!/bin/sh
# One-shot set-up of the development cluster (deploy/compose/compose.yaml):
#   - CouchDB 3 single-node system databases, and `system_config`;
#   - system_config/pusher pointing at the mock providers that `mocks` started:
#     an Apple app (bundle id from /mock/mock.json, client certificate, mock APNs host),
#     a Firebase app (the mock's project id, its service account whose token_uri is the
#     mock OAuth endpoint), and the User-Agents rule of the captured Linphone REGISTER.
# POSIX sh + curl + awk/sed only (it runs in the curl image). Re-runnable.
set -eu

C=${COUCH_URL:?COUCH_URL must be set}
M=${MOCK_JSON:-/mock/mock.json}

[ -s "$M" ] || {
    echo "seed: $M missing (is the mocks service up?)" >&2
    exit 1
}

for db in _users _replicator system_config; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$C/$db")
    case $code in
    201 | 202 | 412) ;;
    *)
        echo "seed: PUT /$db answered HTTP $code" >&2
        exit 1
        ;;
    esac
done

# A top-level string field of mock.json (pretty-printed, one key per line).
val() {
    sed -n "s/^ *\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$M" | head -n 1
}
# A file's text as the inside of a JSON string.
json_text() {
    awk '{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "%s\\n", $0 }' "$1"
}

apns_url=$(val apns_url)
bundle_id=$(val bundle_id)
project_id=$(val project_id)
sa_file=$(val service_account_file)
pem_file=$(sed -n 's/^ *"pkcs8": "\(.*\)",\{0,1\}$/\1/p' "$M" | head -n 1)
for v in apns_url bundle_id project_id sa_file pem_file; do
    eval "[ -n \"\$$v\" ]" || {
        echo "seed: $v not found in $M" >&2
        exit 1
    }
done

rev=$(curl -sf "$C/system_config/pusher" | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p' || true)
rev_field=""
[ -n "$rev" ] && rev_field="\"_rev\": \"$rev\","

doc=$(
    cat <<JSON
{
  "_id": "pusher", $rev_field
  "pvt_type": "config",
  "default": {
    "rfc8599": true,
    "User-Agents": {
      "Harness": {
        "regex": "^Linphone-Harness",
        "properties": {"Token-App": "app-id", "Token-Type": "pn-type", "Token-ID": "pn-tok"}
      }
    }
  },
  "$bundle_id": {
    "apple": {"host": "$apns_url", "certificate": "$(json_text "$pem_file")"}
  },
  "$project_id": {
    "firebase_v1": {"service_account": $(cat "$sa_file")}
  }
}
JSON
)

code=$(curl -s -o /tmp/seed.out -w '%{http_code}' -X PUT "$C/system_config/pusher" \
    -H 'Content-Type: application/json' --data-binary "$doc")
case $code in
201 | 202) echo "seed: system_config/pusher written (apple app $bundle_id, firebase app $project_id)" ;;
*)
    echo "seed: PUT system_config/pusher answered HTTP $code: $(cat /tmp/seed.out)" >&2
    exit 1
    ;;
esac
