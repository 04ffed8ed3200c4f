#!/usr/bin/env sh
# After the function app is deployed (azd's postdeploy hook; or by hand after `az deployment group
# create` + `func azure functionapp publish`, with the deployment outputs exported as below):
#   1. the identity's database user in Azure SQL and the admin store migrations (postdeploy_db.py);
#   2. the Event Grid subscription that feeds the retry blob trigger, once the Functions host has
#      created its blobs_extension system key (it does when it first indexes the Event Grid trigger).
# Needs: az (signed in), python with this project's requirements, ODBC Driver 18 for SQL Server.
# Settings: AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, AZURE_EVENTGRID_SYSTEM_TOPIC_NAME,
# AZURE_SQL_SERVER_FQDN, AZURE_SQL_DATABASE_NAME, AZURE_MANAGED_IDENTITY_NAME (azd outputs).
set -eu
cd "$(dirname "$0")/.."

if command -v azd >/dev/null 2>&1 && [ -z "${AZURE_FUNCTION_APP_NAME:-}" ]; then
    # Outside a hook run: load the azd environment's values.
    eval "$(azd env get-values | sed 's/^/export /')"
fi
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_SYSTEM_TOPIC_NAME \
            AZURE_SQL_SERVER_FQDN AZURE_SQL_DATABASE_NAME AZURE_MANAGED_IDENTITY_NAME; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        echo "postdeploy: $name is not set (deployment output)" >&2
        exit 2
    fi
done
command -v az >/dev/null 2>&1 || { echo "postdeploy: the Azure CLI (az) is required" >&2; exit 2; }

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

echo "== Azure SQL: database user for $AZURE_MANAGED_IDENTITY_NAME, admin store migrations"
"$PYTHON" scripts/postdeploy_db.py

# The retry blob trigger (function_app.py: retry_blobs, source=EventGrid) is reached through the
# blobs extension webhook with its system key.
FUNCTION_NAME="${DES_RETRY_FUNCTION_NAME:-retry_blobs}"
HOST_NAME="$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query defaultHostName -o tsv)"
echo "== Event Grid: waiting for the blobs_extension key of $AZURE_FUNCTION_APP_NAME"
KEY=""
tries=0
while [ -z "$KEY" ] && [ "$tries" -lt 30 ]; do
    # A request starts the host (Flex Consumption scales from zero), which creates the key.
    curl -fsS -o /dev/null "https://$HOST_NAME/health" 2>/dev/null || true
    KEY="$(az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
        --query "systemKeys.blobs_extension" -o tsv 2>/dev/null || true)"
    if [ -z "$KEY" ]; then
        tries=$((tries + 1))
        sleep 10
    fi
done
if [ -z "$KEY" ]; then
    echo "postdeploy: no blobs_extension key after 5 minutes; re-run scripts/postdeploy.sh once the app has started" >&2
    exit 1
fi

echo "== Event Grid: subscription retry/ -> $FUNCTION_NAME"
az eventgrid system-topic event-subscription create \
    --name "des-retry-blobs" \
    --resource-group "$AZURE_RESOURCE_GROUP" \
    --system-topic-name "$AZURE_EVENTGRID_SYSTEM_TOPIC_NAME" \
    --endpoint-type webhook \
    --endpoint "https://$HOST_NAME/runtime/webhooks/blobs?functionName=Host.Functions.$FUNCTION_NAME&code=$KEY" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "/blobServices/default/containers/retry/" \
    --max-delivery-attempts 30 \
    --event-ttl 1440 \
    --output none
echo "postdeploy: done"
