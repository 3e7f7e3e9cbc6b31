# The Dispatcher worker image: `dotnet Dispatcher.Worker.dll <command>` (default `run`).
#
#   docker build -t dispatcher-worker .
#   docker run --rm dispatcher-worker --help
#
# Configuration comes from environment variables (ConnectionStrings__Postgres, ConnectionStrings__RabbitMq,
# Dispatcher__...) and/or `--config FILE` (see README.md). docker-compose.yml runs it with the whole stack.

# ---------------------------------------------------------------- build
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    DOTNET_NOLOGO=1 \
    DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
WORKDIR /source

# Restore first, from the files that decide the package graph only, so that a source change does not
# invalidate the restored packages layer. Directory.Build.props adds the banned-API analyzer to the
# projects under src/ (BannedSymbols.txt); .editorconfig sets analyzer severities (warnings are errors).
COPY global.json Directory.Build.props Directory.Packages.props BannedSymbols.txt .editorconfig ./
COPY src/Contracts/Dispatcher.Contracts.csproj src/Contracts/
COPY src/Persistence/Dispatcher.Persistence.csproj src/Persistence/
COPY src/Worker/Dispatcher.Worker.csproj src/Worker/
RUN dotnet restore src/Worker/Dispatcher.Worker.csproj

COPY src/ src/
RUN dotnet publish src/Worker -c Release -o /app --no-restore -p:UseAppHost=false

# -------------------------------------------------------------- runtime
FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app ./

# Health, readiness and metrics (Dispatcher:Admin:Urls) on every interface of the container.
# ASPNETCORE_HTTP_PORTS (8080 in the base image) is cleared: the worker binds Dispatcher:Admin:Urls only.
ENV Dispatcher__Admin__Urls=http://0.0.0.0:5080 \
    Dispatcher__Logging__Format=json \
    ASPNETCORE_HTTP_PORTS="" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
EXPOSE 5080

# The non-root user the .NET images ship (APP_UID=1654). /app stays owned by root: the worker writes nothing there.
USER $APP_UID

# No HEALTHCHECK: the aspnet image has neither curl nor wget. Probe GET /health/live and /health/ready on
# port 5080 from the orchestrator (Kubernetes httpGet probes, or Prometheus' `up` in docker-compose.yml).
ENTRYPOINT ["dotnet", "Dispatcher.Worker.dll"]
CMD ["run"]
