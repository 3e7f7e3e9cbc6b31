#!/usr/bin/env bash
# Sets up and runs every test: starts RabbitMQ and PostgreSQL (scripts/services.sh), builds, runs the tests
# against them, and ends with one line "N passed, N failed, N skipped" counted from the TRX results.
# Exit code: non-zero when anything failed or no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! services="$(scripts/services.sh)"; then
  echo "scripts/services.sh failed: RabbitMQ and PostgreSQL are not available" >&2
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
eval "$services"

results="TestResults"
rm -rf "$results"
status=0
dotnet test Dispatcher.sln -c Release --logger "trx;LogFileName=tests.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "$@" || status=$?

passed=0; failed=0; skipped=0
for trx in $(find "$results" -name '*.trx' 2>/dev/null); do
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
  skipped=$((skipped + $(get notExecuted)))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1  # the run itself failed (build error, crashed host): count it
fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
