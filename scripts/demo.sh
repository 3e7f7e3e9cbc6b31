#!/usr/bin/env bash
# Sets up and runs a worker with demo traffic: starts RabbitMQ and PostgreSQL (scripts/services.sh), builds,
# creates the schema, then runs `dispatcher demo`: a worker, a local demo downstream on loopback and mixed
# traffic (successes, 503 + Retry-After retried, 422 dead-lettered), ending with a summary of outcomes.
# Extra arguments go to the demo command (e.g. --count 1000).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
dotnet build src/Worker -c Release -v quiet -nologo
dotnet src/Worker/bin/Release/net10.0/Dispatcher.Worker.dll demo "$@"
