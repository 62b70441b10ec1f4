#!/usr/bin/env bash
# Get an access token from the glewlwyd started by start.sh, with the
# client_credentials grant (client_secret_basic), and print the token
# response JSON on stdout.
#
# Usage: token.sh TOKEN_ENDPOINT [SCOPE] [RESOURCE]
#   SCOPE     space-separated scope list (default: mcp:read; "" = none sent)
#   RESOURCE  optional RFC 8707 resource indicator (becomes the token's aud;
#             it must be one of start.sh's GLEWLWYD_RESOURCES)
# Environment: GLEWLWYD_CLIENT_ID (mcp-client), GLEWLWYD_CLIENT_SECRET (mcp-secret)
#
# Exit status: 0 on HTTP 200; 1 otherwise (the error body is still printed).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 TOKEN_ENDPOINT [SCOPE] [RESOURCE]" >&2
  exit 2
fi
endpoint=$1
scope=${2-mcp:read}
resource=${3:-}
client_id=${GLEWLWYD_CLIENT_ID:-mcp-client}
client_secret=${GLEWLWYD_CLIENT_SECRET:-mcp-secret}

args=(-sS -m 15 --connect-timeout 3 -u "$client_id:$client_secret"
      --data-urlencode grant_type=client_credentials -w '\n%{http_code}')
if [ -n "$scope" ]; then args+=(--data-urlencode "scope=$scope"); fi
if [ -n "$resource" ]; then args+=(--data-urlencode "resource=$resource"); fi

out=$(curl "${args[@]}" "$endpoint") || { echo "token.sh: request to $endpoint failed" >&2; exit 1; }
code=${out##*$'\n'}
body=${out%$'\n'*}
printf '%s\n' "$body"
if [ "$code" != 200 ]; then
  echo "token.sh: HTTP $code from $endpoint" >&2
  exit 1
fi
