#!/bin/sh
# Loads Tessera's index template into Elasticsearch and its saved objects into Kibana, and sets
# the kibana_system user's password. Idempotent: run it again after changing either file.
#   ELASTICSEARCH_URL (default http://elasticsearch:9200), ELASTIC_PASSWORD (the elastic user),
#   KIBANA_URL (default http://kibana:5601), KIBANA_SYSTEM_PASSWORD (optional: only when this
#   script runs the bundled stack, whose Kibana signs in as kibana_system).
set -eu
here=$(dirname "$0")
es=${ELASTICSEARCH_URL:-http://elasticsearch:9200}
kibana=${KIBANA_URL:-http://kibana:5601}
auth="elastic:${ELASTIC_PASSWORD:?set ELASTIC_PASSWORD}"

until curl -fsS -u "$auth" "$es/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; do
  echo "waiting for Elasticsearch at $es"; sleep 5
done
if [ -n "${KIBANA_SYSTEM_PASSWORD:-}" ]; then
  curl -fsS -u "$auth" -H 'Content-Type: application/json' -X POST \
    "$es/_security/user/kibana_system/_password" -d "{\"password\":\"$KIBANA_SYSTEM_PASSWORD\"}"
  echo
fi
curl -fsS -u "$auth" -H 'Content-Type: application/json' -X PUT \
  "$es/_index_template/tessera" --data-binary "@$here/index-template.json"
echo
until curl -fsS -u "$auth" "$kibana/api/status" >/dev/null; do
  echo "waiting for Kibana at $kibana"; sleep 5
done
curl -fsS -u "$auth" -H 'kbn-xsrf: tessera' -X POST "$kibana/api/saved_objects/_import?overwrite=true" \
  --form "file=@$here/kibana/tessera.ndjson"
echo
