using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Dispatcher.Worker.Configuration;
using Microsoft.Extensions.Configuration;
using Xunit.Abstractions;

namespace Dispatcher.Worker.Tests.Deployment;

/// <summary>
/// Static checks of the deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/): no Docker engine
/// is needed. YAML is read by <see cref="MiniYaml"/>, a strict reader of the block-style subset these files use (it
/// refuses anchors, tags, block scalars and flow mappings rather than misread them); when python3 with PyYAML is
/// installed, every YAML file is also parsed by PyYAML and both readings must agree.
/// </summary>
public sealed class DeploymentFilesTests(ITestOutputHelper output)
{
    private static readonly string Root = FindRepositoryRoot();

    // Each YAML file is read (and cross-checked) once per test run; tests only read the model.
    private static readonly ConcurrentDictionary<string, (object? Parsed, string Note)> YamlFiles = new(StringComparer.Ordinal);

    private static readonly string[] StackServices = ["rabbitmq", "postgres", "migrate", "worker", "prometheus", "grafana"];

    // ------------------------------------------------------------------ docker-compose.yml

    [Fact]
    public void Compose_file_parses_and_defines_the_whole_stack()
    {
        var services = ComposeServices();

        foreach (var name in StackServices)
            Assert.True(services.ContainsKey(name), $"docker-compose.yml has no service '{name}'.");

        var migrate = Map(services["migrate"], "services.migrate");
        Assert.Equal("migrate", Strings(migrate["command"], "services.migrate.command")[0]);
        Assert.Equal("no", Str(migrate["restart"], "services.migrate.restart"));
        Assert.Equal("service_healthy", DependsOnCondition(migrate, "postgres"));

        var worker = Map(services["worker"], "services.worker");
        Assert.Equal("service_completed_successfully", DependsOnCondition(worker, "migrate"));
        Assert.Equal("service_healthy", DependsOnCondition(worker, "rabbitmq"));
        Assert.Equal(Str(migrate["image"], "services.migrate.image"), Str(worker["image"], "services.worker.image"));
    }

    [Fact]
    public void Worker_runs_several_replicas_with_the_mounted_config_and_the_compose_network_addresses()
    {
        var services = ComposeServices();
        var worker = Map(services["worker"], "services.worker");

        var replicas = int.Parse(Str(Map(worker["deploy"], "services.worker.deploy")["replicas"], "deploy.replicas"), CultureInfo.InvariantCulture);
        Assert.True(replicas > 1, $"the worker runs {replicas} replica(s); the stack shows several.");

        var command = Strings(worker["command"], "services.worker.command");
        Assert.Equal("run", command[0]);
        var configAt = command.IndexOf("--config");
        Assert.True(configAt > 0 && configAt + 1 < command.Count, "the worker command passes --config FILE.");
        var containerConfig = command[configAt + 1];

        var mounts = Strings(worker["volumes"], "services.worker.volumes").Select(v => v.Split(':')).ToList();
        var mount = Assert.Single(mounts, m => m.Length >= 2 && m[1] == containerConfig);
        Assert.Equal("./deploy/dispatcher.json", mount[0]);
        Assert.True(File.Exists(Path.Combine(Root, "deploy", "dispatcher.json")));

        var env = Map(worker["environment"], "services.worker.environment");
        var postgres = Str(env["ConnectionStrings__Postgres"], "ConnectionStrings__Postgres");
        var rabbit = Str(env["ConnectionStrings__RabbitMq"], "ConnectionStrings__RabbitMq");
        Assert.Contains("Host=postgres;", postgres, StringComparison.Ordinal);
        Assert.Contains("Port=5432;", postgres, StringComparison.Ordinal);
        Assert.StartsWith("amqp://guest:guest@rabbitmq:5672/", rabbit, StringComparison.Ordinal);
    }

    [Fact]
    public void Published_host_ports_are_exactly_rabbitmq_postgres_prometheus_and_grafana()
    {
        var published = PublishedPorts();

        var expected = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["grafana"] = "3000",
            ["postgres"] = "55432",
            ["prometheus"] = "9090",
            ["rabbitmq"] = "15672,5672",
        };
        Assert.Equal(expected, published.ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.Order(StringComparer.Ordinal))));
    }

    [Fact]
    public void Every_published_host_port_is_mentioned_in_the_README()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));

        var missing = PublishedPorts()
            .SelectMany(kv => kv.Value.Select(port => (Service: kv.Key, Port: port)))
            .Where(p => !Regex.IsMatch(readme, $@"(?<![0-9]){p.Port}(?![0-9])"))
            .Select(p => $"{p.Service} {p.Port}")
            .ToList();
        Assert.True(missing.Count == 0, $"README.md does not mention these published ports: {string.Join(", ", missing)}.");
    }

    [Fact]
    public void Backing_services_stay_what_scripts_services_sh_expects()
    {
        var services = ComposeServices();
        var script = File.ReadAllText(Path.Combine(Root, "scripts", "services.sh"));

        // Every service the script starts, stops, kills or execs into exists.
        var named = Regex.Matches(script, @"compose\s+(?:up\s+-d|stop|start|restart|kill)\s+([a-z0-9_-]+(?:[ ]+[a-z0-9_-]+)*)")
            .SelectMany(m => m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Concat(Regex.Matches(script, @"compose\s+exec\s+-T\s+([a-z0-9_-]+)").Select(m => m.Groups[1].Value))
            .ToHashSet(StringComparer.Ordinal);
        Assert.Contains("rabbitmq", named);
        Assert.Contains("postgres", named);
        foreach (var name in named)
            Assert.True(services.ContainsKey(name), $"scripts/services.sh uses compose service '{name}', which docker-compose.yml lacks.");

        // PostgreSQL: the script's port variable and default, its database, trust auth, a healthcheck.
        var pgPort = Regex.Match(script, @"PG_PORT=""\$\{(\w+):-(\d+)\}""");
        Assert.True(pgPort.Success, "scripts/services.sh no longer sets PG_PORT=\"${VAR:-default}\".");
        var postgres = Map(services["postgres"], "services.postgres");
        var pgPorts = Strings(postgres["ports"], "services.postgres.ports");
        Assert.Contains($"${{{pgPort.Groups[1].Value}:-{pgPort.Groups[2].Value}}}:5432", pgPorts);
        var pgEnv = Map(postgres["environment"], "services.postgres.environment");
        Assert.Equal(Regex.Match(script, @"PG_DB=(\w+)").Groups[1].Value, Str(pgEnv["POSTGRES_DB"], "POSTGRES_DB"));
        Assert.Equal("trust", Str(pgEnv["POSTGRES_HOST_AUTH_METHOD"], "POSTGRES_HOST_AUTH_METHOD"));
        Assert.StartsWith("postgres:15", Str(postgres["image"], "services.postgres.image"), StringComparison.Ordinal);
        Assert.True(postgres.ContainsKey("healthcheck"), "postgres has a healthcheck (the migrate service waits for it).");

        // RabbitMQ: the management image, the script's AMQP port, the management UI, a healthcheck.
        var rabbit = Map(services["rabbitmq"], "services.rabbitmq");
        Assert.StartsWith("rabbitmq:3.13-management", Str(rabbit["image"], "services.rabbitmq.image"), StringComparison.Ordinal);
        var amqp = Regex.Match(script, @"RABBIT_PORT=(\d+)").Groups[1].Value;
        Assert.Contains($"{amqp}:5672", Strings(rabbit["ports"], "services.rabbitmq.ports"));
        Assert.Contains("15672:15672", Strings(rabbit["ports"], "services.rabbitmq.ports"));
        Assert.True(rabbit.ContainsKey("healthcheck"), "rabbitmq has a healthcheck (the workers wait for it).");
    }

    [Fact]
    public void Deploy_config_is_valid_and_its_destinations_are_compose_services()
    {
        var services = ComposeServices();
        var config = new ConfigurationBuilder().AddJsonFile(Path.Combine(Root, "deploy", "dispatcher.json"), optional: false).Build();
        var options = new DispatcherOptions();
        config.GetSection(DispatcherOptions.SectionName).Bind(options);

        Assert.Empty(DispatcherOptionsValidator.Collect(options));
        Assert.NotEmpty(options.Destinations);
        foreach (var (name, destination) in options.Destinations)
        {
            var host = destination.BaseUrl!.Host;
            Assert.True(services.ContainsKey(host), $"destination '{name}' calls '{host}', which is not a compose service.");
            var service = Map(services[host], $"services.{host}");
            var ports = service.TryGetValue("expose", out var expose) ? Strings(expose, $"services.{host}.expose") : [];
            Assert.Contains(destination.BaseUrl.Port.ToString(CultureInfo.InvariantCulture), ports);
        }
    }

    // ------------------------------------------------------------------ Prometheus and Grafana

    [Fact]
    public void Prometheus_scrapes_the_admin_port_of_every_worker_replica()
    {
        var prometheus = Map(LoadYaml("deploy/prometheus/prometheus.yml"), "prometheus.yml");
        var adminPort = DockerfileAdminPort();
        Assert.Equal("5080", adminPort);

        var jobs = Seq(prometheus["scrape_configs"], "scrape_configs").Select(j => Map(j, "scrape_config")).ToList();
        var workerJob = Assert.Single(jobs, j => j.TryGetValue("dns_sd_configs", out var sd)
            && Seq(sd, "dns_sd_configs").Select(c => Map(c, "dns_sd_config"))
                .Any(c => Strings(c["names"], "names").Contains("worker") && Str(c["port"], "port") == adminPort
                          && Str(c["type"], "type") == "A"));
        Assert.Equal("/metrics", workerJob.TryGetValue("metrics_path", out var path) ? Str(path, "metrics_path") : "/metrics");

        var global = Map(prometheus["global"], "global");
        Assert.Equal("5s", Str(workerJob.TryGetValue("scrape_interval", out var own) ? own : global["scrape_interval"], "scrape_interval"));

        // The compose service it resolves is the worker, listening on that port on every interface.
        var worker = Map(ComposeServices()["worker"], "services.worker");
        Assert.Equal($"http://0.0.0.0:{adminPort}", Str(Map(worker["environment"], "environment")["Dispatcher__Admin__Urls"], "Dispatcher__Admin__Urls"));
        var mounts = Strings(Map(ComposeServices()["prometheus"], "services.prometheus")["volumes"], "services.prometheus.volumes");
        Assert.Contains("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro", mounts);
    }

    [Fact]
    public void Grafana_provisions_the_compose_prometheus_and_the_dispatcher_dashboard()
    {
        var services = ComposeServices();
        var (datasourceUid, datasourceUrl) = ProvisionedPrometheus();
        Assert.Equal("http://prometheus:9090", datasourceUrl);
        Assert.Contains("9090:9090", Strings(Map(services["prometheus"], "services.prometheus")["ports"], "services.prometheus.ports"));
        Assert.False(string.IsNullOrEmpty(datasourceUid));

        var grafana = Map(services["grafana"], "services.grafana");
        var mounts = Strings(grafana["volumes"], "services.grafana.volumes").Select(v => v.Split(':')).ToList();
        Assert.Contains(mounts, m => m[0] == "./deploy/grafana/provisioning" && m[1] == "/etc/grafana/provisioning");
        var dashboardsMount = Assert.Single(mounts, m => m[0] == "./deploy/grafana/dashboards");

        var providers = Seq(Map(LoadYaml("deploy/grafana/provisioning/dashboards/dispatcher.yml"), "dashboards provider")["providers"], "providers");
        var provider = Map(Assert.Single(providers), "provider");
        Assert.Equal("file", Str(provider["type"], "type"));
        Assert.Equal(dashboardsMount[1], Str(Map(provider["options"], "options")["path"], "options.path"));

        var env = Map(grafana["environment"], "services.grafana.environment");
        Assert.Equal("true", Str(env["GF_AUTH_ANONYMOUS_ENABLED"], "GF_AUTH_ANONYMOUS_ENABLED"));
        Assert.Equal("Viewer", Str(env["GF_AUTH_ANONYMOUS_ORG_ROLE"], "GF_AUTH_ANONYMOUS_ORG_ROLE"));
    }

    [Fact]
    public void Dashboard_parses_and_has_a_panel_for_every_operational_signal()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "deploy", "grafana", "dashboards", "dispatcher.json")));
        var root = dashboard.RootElement;
        Assert.Equal("dispatcher", root.GetProperty("uid").GetString());
        Assert.InRange(root.GetProperty("schemaVersion").GetInt32(), 36, 45);

        var (datasourceUid, _) = ProvisionedPrometheus();
        var panels = root.GetProperty("panels").EnumerateArray().ToList();
        Assert.Equal(panels.Count, panels.Select(p => p.GetProperty("id").GetInt32()).Distinct().Count());
        var queryPanels = panels.Where(p => p.GetProperty("type").GetString() != "row").ToList();
        foreach (var panel in queryPanels)
        {
            var title = panel.GetProperty("title").GetString();
            Assert.True(panel.TryGetProperty("gridPos", out _), $"panel '{title}' has no gridPos.");
            Assert.Equal(datasourceUid, panel.GetProperty("datasource").GetProperty("uid").GetString());
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
                Assert.Equal(datasourceUid, target.GetProperty("datasource").GetProperty("uid").GetString());
        }

        var exprs = queryPanels.SelectMany(p => p.GetProperty("targets").EnumerateArray())
            .Select(t => t.GetProperty("expr").GetString() ?? "").ToList();
        string[] signals =
        [
            "dispatcher_dispatches_total", "dispatcher_attempts_total", "dispatcher_circuit_state", "dispatcher_dead_letters",
            "dispatcher_queue_depth", "dispatcher_inflight", "dispatcher_retries_scheduled_total", "dispatcher_outbox_pending",
            "dispatcher_parked_total",
        ];
        foreach (var signal in signals)
            Assert.True(exprs.Any(e => Regex.IsMatch(e, $@"\b{signal}\b")), $"no panel queries {signal}.");
        foreach (var histogram in new[] { "dispatcher_attempt_duration_seconds_bucket", "dispatcher_end_to_end_seconds_bucket" })
        {
            foreach (var quantile in new[] { "0.5", "0.95", "0.99" })
                Assert.True(exprs.Any(e => e.Contains($"histogram_quantile({quantile},", StringComparison.Ordinal) && e.Contains(histogram, StringComparison.Ordinal)),
                    $"no p{quantile} panel query over {histogram}.");
        }
    }

    [Fact]
    public void Every_metric_the_dashboard_queries_is_declared_in_DispatcherMetrics()
    {
        var declared = DeclaredMetrics();
        Assert.True(declared.Count >= 10, $"only {declared.Count} metrics found in DispatcherMetrics.cs: has the declaration style changed?");

        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "deploy", "grafana", "dashboards", "dispatcher.json")));
        var queries = new List<string>();
        CollectQueries(dashboard.RootElement, queries);
        var referenced = queries.SelectMany(q => Regex.Matches(q, @"\bdispatcher_[a-z0-9_]+").Select(m => m.Value))
            .ToHashSet(StringComparer.Ordinal);
        Assert.True(referenced.Count >= 10, $"the dashboard queries only {referenced.Count} Dispatcher metrics.");

        var unknown = referenced.Where(name => !IsDeclared(name, declared)).Order(StringComparer.Ordinal).ToList();
        Assert.True(unknown.Count == 0,
            $"the dashboard queries metrics DispatcherMetrics.cs does not declare: {string.Join(", ", unknown)} " +
            $"(declared: {string.Join(", ", declared.Keys.Order(StringComparer.Ordinal))}).");
    }

    // ------------------------------------------------------------------ Dockerfile and .dockerignore

    [Fact]
    public void Dockerfile_publishes_the_worker_and_its_entrypoint_runs_the_worker_dll()
    {
        var instructions = DockerfileInstructions();
        var froms = instructions.Where(i => i.Keyword == "FROM").Select(i => i.Args).ToList();
        Assert.Equal(2, froms.Count);
        Assert.StartsWith("mcr.microsoft.com/dotnet/sdk:10.0", froms[0], StringComparison.Ordinal);
        Assert.StartsWith("mcr.microsoft.com/dotnet/aspnet:10.0", froms[1], StringComparison.Ordinal);

        var publish = Assert.Single(instructions, i => i.Keyword == "RUN" && i.Args.Contains("dotnet publish", StringComparison.Ordinal));
        Assert.Matches(@"dotnet publish src/Worker(/Dispatcher\.Worker\.csproj)?\s", publish.Args);
        Assert.Matches(@"\s-c Release\s", publish.Args);
        Assert.Matches(@"\s-o /app(\s|$)", publish.Args);

        var assemblyName = XDocument.Load(Path.Combine(Root, "src", "Worker", "Dispatcher.Worker.csproj"))
            .Descendants("AssemblyName").Select(e => e.Value).SingleOrDefault() ?? "Dispatcher.Worker";
        var runtime = instructions.SkipWhile(i => i.Args != froms[1] || i.Keyword != "FROM").ToList();
        Assert.Equal(["dotnet", $"{assemblyName}.dll"], JsonArray(Assert.Single(runtime, i => i.Keyword == "ENTRYPOINT").Args));
        Assert.Equal(["run"], JsonArray(Assert.Single(runtime, i => i.Keyword == "CMD").Args));

        var user = Assert.Single(runtime, i => i.Keyword == "USER").Args;
        Assert.DoesNotMatch(@"^(root|0)(:|$)", user);
        Assert.Contains(runtime, i => i.Keyword == "EXPOSE" && i.Args.Split(' ').Contains(DockerfileAdminPort()));
        Assert.Contains(runtime, i => i.Keyword == "ENV" && i.Args.Contains("Dispatcher__Logging__Format=json", StringComparison.Ordinal));
    }

    [Fact]
    public void Dockerfile_restores_from_every_file_that_decides_the_package_graph_before_copying_the_sources()
    {
        var instructions = DockerfileInstructions();
        var restoreAt = instructions.FindIndex(i => i.Keyword == "RUN" && i.Args.Contains("dotnet restore", StringComparison.Ordinal));
        Assert.True(restoreAt > 0, "the Dockerfile has no separate `dotnet restore` step.");
        var beforeRestore = instructions.Take(restoreAt).Where(i => i.Keyword == "COPY").SelectMany(CopySources).ToHashSet(StringComparer.Ordinal);
        var sourcesAt = instructions.FindIndex(i => i.Keyword == "COPY" && CopySources(i).Contains("src/"));
        Assert.True(sourcesAt > restoreAt, "the sources are copied after the restore step (layer caching).");

        // The worker project and everything it references.
        var projects = new SortedSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([Path.Combine(Root, "src", "Worker", "Dispatcher.Worker.csproj")]);
        while (pending.Count > 0)
        {
            var project = Path.GetFullPath(pending.Pop());
            if (!projects.Add(Relative(project)))
                continue;
            foreach (var reference in XDocument.Load(project).Descendants("ProjectReference"))
                pending.Push(Path.Combine(Path.GetDirectoryName(project)!, reference.Attribute("Include")!.Value.Replace('\\', '/')));
        }
        Assert.Contains("src/Worker/Dispatcher.Worker.csproj", projects);

        // The repository-wide MSBuild and SDK inputs, and the files Directory.Build.props pulls in.
        var buildProps = File.ReadAllText(Path.Combine(Root, "Directory.Build.props"));
        var rootInputs = Directory.EnumerateFiles(Root)
            .Select(Path.GetFileName)
            .Where(f => f is "global.json" or ".editorconfig" || f!.StartsWith("Directory.", StringComparison.Ordinal)
                        || f.Equals("nuget.config", StringComparison.OrdinalIgnoreCase))
            .Concat(Regex.Matches(buildProps, @"\$\(MSBuildThisFileDirectory\)([^""';)]+)").Select(m => m.Groups[1].Value))
            .Select(f => f!);

        var missing = projects.Concat(rootInputs).Where(f => !beforeRestore.Contains(f)).ToList();
        Assert.True(missing.Count == 0, $"not copied before `dotnet restore`: {string.Join(", ", missing)}.");
        foreach (var source in beforeRestore)
            Assert.True(File.Exists(Path.Combine(Root, source)), $"the Dockerfile copies '{source}', which does not exist.");
    }

    [Fact]
    public void Dockerignore_keeps_build_outputs_out_and_what_the_Dockerfile_copies_in()
    {
        var patterns = File.ReadAllLines(Path.Combine(Root, ".dockerignore"))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        Assert.DoesNotContain(patterns, p => p.StartsWith('!'));   // the matcher below does not model exceptions
        var ignore = patterns.Select(DockerignoreRegex).ToList();
        bool Ignored(string path) => Ancestry(path).Any(p => ignore.Any(r => r.IsMatch(p)));

        foreach (var path in new[] { "src/Worker/bin/Release/net10.0/Dispatcher.Worker.dll", "src/Worker/obj/project.assets.json", ".git/HEAD",
                     "TestResults/tests.trx", "tests/Dispatcher.Worker.Tests/bin/Debug/x.dll" })
            Assert.True(Ignored(path), $".dockerignore lets '{path}' into the build context.");

        var copied = DockerfileInstructions().Where(i => i.Keyword == "COPY" && !i.Args.StartsWith("--from", StringComparison.Ordinal))
            .SelectMany(CopySources).Select(s => s.TrimEnd('/'))
            .Concat(Directory.EnumerateFiles(Path.Combine(Root, "src"), "*.cs", SearchOption.AllDirectories).Select(Relative)
                .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal)))
            .ToList();
        var lost = copied.Where(Ignored).ToList();
        Assert.True(lost.Count == 0, $".dockerignore excludes what the Dockerfile needs: {string.Join(", ", lost.Take(10))}.");
    }

    // ------------------------------------------------------------------ helpers: files

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Dispatcher.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"no Dispatcher.sln above {AppContext.BaseDirectory}.");
    }

    private static string Relative(string path) => Path.GetRelativePath(Root, path).Replace('\\', '/');

    private object? LoadYaml(string relativePath)
    {
        var (parsed, note) = YamlFiles.GetOrAdd(relativePath, static relative =>
        {
            var path = Path.Combine(Root, relative);
            var parsed = MiniYaml.Parse(File.ReadAllText(path));
            var pyYaml = PyYaml.TryLoad(path);
            if (pyYaml is null)
                return (parsed, "read with the built-in reader only (python3 with PyYAML is not installed: no cross-check)");
            var (theirs, ours) = (MiniYaml.Canonical(pyYaml), MiniYaml.Canonical(parsed));
            if (theirs != ours)
            {
                var at = Enumerable.Range(0, Math.Min(theirs.Length, ours.Length)).FirstOrDefault(k => theirs[k] != ours[k]);
                var from = Math.Max(0, at - 60);
                throw new Xunit.Sdk.XunitException(
                    $"{relative}: PyYAML and the built-in reader disagree (quote the value?)\n" +
                    $"  PyYAML:   ...{theirs[from..Math.Min(theirs.Length, at + 60)]}...\n" +
                    $"  built-in: ...{ours[from..Math.Min(ours.Length, at + 60)]}...");
            }
            return (parsed, "the built-in reader agrees with PyYAML");
        });
        output.WriteLine($"{relativePath}: {note}.");
        return parsed;
    }

    private Dictionary<string, object?> ComposeServices()
    {
        var compose = Map(LoadYaml("docker-compose.yml"), "docker-compose.yml");
        return Map(compose["services"], "services");
    }

    /// <summary>Host ports by service, <c>${VAR:-default}</c> taken at its default.</summary>
    private SortedDictionary<string, List<string>> PublishedPorts()
    {
        var result = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (name, service) in ComposeServices())
        {
            var map = Map(service, $"services.{name}");
            if (!map.TryGetValue("ports", out var ports) || ports is null)
                continue;
            result[name] = Strings(ports, $"services.{name}.ports").Select(PublishedPort).ToList();
        }
        return result;
    }

    private static string PublishedPort(string spec)
    {
        var expanded = Regex.Replace(spec, @"\$\{(\w+)(:?-)([^}]*)\}", m => m.Groups[3].Value);
        Assert.DoesNotContain("$", expanded, StringComparison.Ordinal);
        var parts = expanded.Split('/')[0].Split(':');
        return parts.Length >= 2 ? parts[^2] : $"(an ephemeral host port for {parts[0]})";
    }

    private static string DependsOnCondition(Dictionary<string, object?> service, string dependency)
    {
        var dependsOn = Map(service["depends_on"], "depends_on");
        Assert.True(dependsOn.ContainsKey(dependency), $"no depends_on '{dependency}'.");
        return Str(Map(dependsOn[dependency], $"depends_on.{dependency}")["condition"], "condition");
    }

    private (string Uid, string Url) ProvisionedPrometheus()
    {
        var file = Map(LoadYaml("deploy/grafana/provisioning/datasources/prometheus.yml"), "datasources file");
        var datasource = Map(Assert.Single(Seq(file["datasources"], "datasources"),
            d => Map(d, "datasource").TryGetValue("type", out var t) && t as string == "prometheus"), "datasource");
        return (Str(datasource["uid"], "uid"), Str(datasource["url"], "url"));
    }

    /// <summary>Metric names and kinds from the <c>Metrics.Create...("name"</c> calls of DispatcherMetrics.cs.</summary>
    private static Dictionary<string, string> DeclaredMetrics()
    {
        var source = File.ReadAllText(Path.Combine(Root, "src", "Worker", "Observability", "DispatcherMetrics.cs"));
        return Regex.Matches(source, @"Metrics\.Create(Counter|Gauge|Histogram|Summary)\s*\(\s*""([a-zA-Z_:][a-zA-Z0-9_:]*)""")
            .ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value, StringComparer.Ordinal);
    }

    private static bool IsDeclared(string name, Dictionary<string, string> declared)
    {
        if (declared.ContainsKey(name))
            return true;
        var suffix = Regex.Match(name, "^(.+)_(bucket|sum|count)$");
        return suffix.Success && declared.TryGetValue(suffix.Groups[1].Value, out var kind)
            && (kind == "Histogram" || (kind == "Summary" && suffix.Groups[2].Value != "bucket"));
    }

    /// <summary>Every PromQL string of the dashboard: panel targets, variables.</summary>
    private static void CollectQueries(JsonElement element, List<string> queries)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (property.Name is "expr" or "query" or "definition" && property.Value.ValueKind == JsonValueKind.String)
                        queries.Add(property.Value.GetString()!);
                    else
                        CollectQueries(property.Value, queries);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                    CollectQueries(item, queries);
                break;
        }
    }

    private sealed record Instruction(string Keyword, string Args);

    /// <summary>Dockerfile instructions, continuation lines joined, comments dropped.</summary>
    private static List<Instruction> DockerfileInstructions()
    {
        var result = new List<Instruction>();
        var current = new StringBuilder();
        foreach (var raw in File.ReadAllLines(Path.Combine(Root, "Dockerfile")))
        {
            var line = raw.Trim();
            if (line.StartsWith('#') || (line.Length == 0 && current.Length == 0))
                continue;
            var continued = line.EndsWith('\\');
            current.Append(continued ? line[..^1] : line).Append(' ');
            if (continued)
                continue;
            var text = Regex.Replace(current.ToString().Trim(), @"\s+", " ");
            current.Clear();
            if (text.Length == 0)
                continue;
            var space = text.IndexOf(' ', StringComparison.Ordinal);
            result.Add(space < 0 ? new(text.ToUpperInvariant(), "") : new(text[..space].ToUpperInvariant(), text[(space + 1)..]));
        }
        return result;
    }

    private static List<string> CopySources(Instruction copy)
    {
        var tokens = copy.Args.Split(' ').Where(t => !t.StartsWith("--", StringComparison.Ordinal)).ToList();
        return tokens.Take(tokens.Count - 1).ToList();
    }

    private static string DockerfileAdminPort()
    {
        var env = string.Join(" ", DockerfileInstructions().Where(i => i.Keyword == "ENV").Select(i => i.Args));
        var match = Regex.Match(env, @"Dispatcher__Admin__Urls=http://0\.0\.0\.0:(\d+)");
        Assert.True(match.Success, "the Dockerfile sets no Dispatcher__Admin__Urls=http://0.0.0.0:PORT.");
        return match.Groups[1].Value;
    }

    private static List<string?> JsonArray(string json) =>
        JsonSerializer.Deserialize<List<string?>>(json) ?? throw new FormatException($"not a JSON array: {json}");

    /// <summary>A .dockerignore pattern as a regex over context-relative paths (Go filepath.Match plus <c>**</c>).</summary>
    private static Regex DockerignoreRegex(string pattern)
    {
        var p = pattern.Trim('/');
        var sb = new StringBuilder("^");
        for (var i = 0; i < p.Length; i++)
        {
            if (p[i] == '*' && i + 1 < p.Length && p[i + 1] == '*')
            {
                var slash = i + 2 < p.Length && p[i + 2] == '/';
                sb.Append(slash ? "(.*/)?" : ".*");
                i += slash ? 2 : 1;
            }
            else
            {
                sb.Append(p[i] switch { '*' => "[^/]*", '?' => "[^/]", _ => Regex.Escape(new string(p[i], 1)) });
            }
        }
        return new Regex(sb.Append('$').ToString(), RegexOptions.CultureInvariant);
    }

    private static IEnumerable<string> Ancestry(string path)
    {
        var parts = path.Split('/');
        for (var n = 1; n <= parts.Length; n++)
            yield return string.Join('/', parts.Take(n));
    }

    // ------------------------------------------------------------------ helpers: YAML model

    private static Dictionary<string, object?> Map(object? node, string what) =>
        node as Dictionary<string, object?> ?? throw new Xunit.Sdk.XunitException($"{what} is not a mapping.");

    private static List<object?> Seq(object? node, string what) =>
        node as List<object?> ?? throw new Xunit.Sdk.XunitException($"{what} is not a sequence.");

    private static string Str(object? node, string what) =>
        node as string ?? throw new Xunit.Sdk.XunitException($"{what} is not a scalar.");

    private static List<string> Strings(object? node, string what) => Seq(node, what).Select(n => Str(n, what)).ToList();

    /// <summary>
    /// A strict reader of block-style YAML: mappings, sequences (of scalars or of mappings), plain, single- and
    /// double-quoted scalars, one-line flow sequences of scalars, comments. Anything else (anchors, aliases, tags,
    /// block scalars, flow mappings, multi-line scalars, duplicate keys) is an error, never a guess. Scalars stay
    /// strings (null for an empty value, <c>null</c> or <c>~</c>).
    /// </summary>
    private static class MiniYaml
    {
        private sealed record Line(int Number, int Indent, string Text);

        public static object? Parse(string yaml)
        {
            var lines = Tokenize(yaml);
            if (lines.Count == 0)
                return null;
            var i = 0;
            var root = ParseBlock(lines, ref i, lines[0].Indent);
            if (i < lines.Count)
                throw Error(lines[i], "unexpected indentation");
            return root;
        }

        /// <summary>JSON text with sorted keys and every scalar as a string: comparable across readers.</summary>
        public static string Canonical(object? node) => node switch
        {
            null => "null",
            string s => JsonSerializer.Serialize(s),
            List<object?> list => "[" + string.Join(",", list.Select(Canonical)) + "]",
            Dictionary<string, object?> map => "{" + string.Join(",", map.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Select(kv => JsonSerializer.Serialize(kv.Key) + ":" + Canonical(kv.Value))) + "}",
            _ => throw new ArgumentException($"unexpected node {node.GetType()}", nameof(node)),
        };

        private static List<Line> Tokenize(string yaml)
        {
            var result = new List<Line>();
            var raw = yaml.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
            for (var n = 0; n < raw.Length; n++)
            {
                var line = StripComment(raw[n]).TrimEnd();
                if (line.Trim().Length == 0)
                    continue;
                var indent = 0;
                while (line[indent] == ' ')
                    indent++;
                if (line[indent] == '\t')
                    throw new FormatException($"YAML line {n + 1}: a tab in the indentation.");
                var text = line[indent..];
                if (text.StartsWith("---", StringComparison.Ordinal) || text.StartsWith("...", StringComparison.Ordinal) || text.StartsWith('%'))
                    throw new NotSupportedException($"YAML line {n + 1}: documents and directives are not supported.");
                result.Add(new Line(n + 1, indent, text));
            }
            return result;
        }

        private static string StripComment(string line)
        {
            var quote = '\0';
            for (var i = 0; i < line.Length; i++)
            {
                var c = line[i];
                if (quote == '"')
                {
                    if (c == '\\')
                        i++;
                    else if (c == '"')
                        quote = '\0';
                }
                else if (quote == '\'')
                {
                    if (c == '\'' && i + 1 < line.Length && line[i + 1] == '\'')
                        i++;
                    else if (c == '\'')
                        quote = '\0';
                }
                else if (c == '#' && (i == 0 || char.IsWhiteSpace(line[i - 1])))
                {
                    return line[..i];
                }
                else if (c is '"' or '\'' && StartsScalar(line, i))
                {
                    quote = c;
                }
            }
            if (quote != '\0')
                throw new FormatException($"YAML: unterminated or multi-line quoted scalar in '{line.Trim()}'.");
            return line;
        }

        // A quote opens a quoted scalar only where a scalar starts: first on the line, or after ": ", "- ", "[" or ",".
        private static bool StartsScalar(string line, int at)
        {
            var j = at - 1;
            while (j >= 0 && line[j] == ' ')
                j--;
            return j < 0 || line[j] is ':' or '-' or '[' or ',' or '?';
        }

        private static bool IsSequenceItem(string text) => text == "-" || text.StartsWith("- ", StringComparison.Ordinal);

        private static object? ParseBlock(List<Line> lines, ref int i, int indent) =>
            IsSequenceItem(lines[i].Text) ? ParseSequence(lines, ref i, indent) : ParseMapping(lines, ref i, indent);

        private static List<object?> ParseSequence(List<Line> lines, ref int i, int indent)
        {
            var list = new List<object?>();
            while (i < lines.Count && lines[i].Indent == indent && IsSequenceItem(lines[i].Text))
            {
                var line = lines[i];
                var offset = 1;
                while (offset < line.Text.Length && line.Text[offset] == ' ')
                    offset++;
                var rest = line.Text[offset..];
                if (rest.Length == 0)
                {
                    i++;
                    list.Add(i < lines.Count && lines[i].Indent > indent ? ParseBlock(lines, ref i, lines[i].Indent) : null);
                }
                else if (IsSequenceItem(rest) || SplitKey(rest, line) is not null)
                {
                    // A block that starts on the dash line: read this line again at the column of its content.
                    lines[i] = new Line(line.Number, indent + offset, rest);
                    list.Add(ParseBlock(lines, ref i, indent + offset));
                }
                else
                {
                    list.Add(ParseScalar(rest, line));
                    i++;
                }
            }
            if (i < lines.Count && lines[i].Indent > indent)
                throw Error(lines[i], "unexpected indentation in a sequence");
            return list;
        }

        private static Dictionary<string, object?> ParseMapping(List<Line> lines, ref int i, int indent)
        {
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (i < lines.Count && lines[i].Indent == indent)
            {
                var line = lines[i];
                if (IsSequenceItem(line.Text))
                    throw Error(line, "a sequence item where a mapping key was expected");
                var (key, value) = SplitKey(line.Text, line) ?? throw Error(line, "expected 'key: value'");
                if (key == "<<")
                    throw new NotSupportedException($"YAML line {line.Number}: merge keys are not supported.");
                if (!map.TryAdd(key, null))
                    throw Error(line, $"duplicate key '{key}'");
                i++;
                if (value.Length > 0)
                    map[key] = ParseScalar(value, line);
                else if (i < lines.Count && lines[i].Indent > indent)
                    map[key] = ParseBlock(lines, ref i, lines[i].Indent);
                else if (i < lines.Count && lines[i].Indent == indent && IsSequenceItem(lines[i].Text))
                    map[key] = ParseSequence(lines, ref i, indent);
            }
            if (i < lines.Count && lines[i].Indent > indent)
                throw Error(lines[i], "unexpected indentation in a mapping");
            return map;
        }

        /// <summary>(key, value) when the text is a mapping entry, null when it is a scalar.</summary>
        private static (string Key, string Value)? SplitKey(string text, Line line)
        {
            if (text[0] is '[' or '{')
                return null;
            if (text[0] is '"' or '\'')
            {
                var close = ClosingQuote(text, line);
                var after = text[(close + 1)..].TrimStart();
                if (after.Length == 0 || after[0] != ':')
                    return null;
                return ((string)ParseScalar(text[..(close + 1)], line)!, after[1..].Trim());
            }
            for (var i = 0; i < text.Length; i++)
            {
                if (text[i] == ':' && (i + 1 == text.Length || text[i + 1] == ' '))
                    return (text[..i].TrimEnd(), text[(i + 1)..].Trim());
            }
            return null;
        }

        private static int ClosingQuote(string text, Line line)
        {
            var quote = text[0];
            for (var i = 1; i < text.Length; i++)
            {
                if (quote == '"' && text[i] == '\\')
                    i++;
                else if (quote == '\'' && text[i] == '\'' && i + 1 < text.Length && text[i + 1] == '\'')
                    i++;
                else if (text[i] == quote)
                    return i;
            }
            throw Error(line, "unterminated quoted scalar");
        }

        private static object? ParseScalar(string value, Line line)
        {
            switch (value[0])
            {
                case '[':
                    if (value[^1] != ']')
                        throw new NotSupportedException($"YAML line {line.Number}: multi-line flow sequences are not supported.");
                    return SplitFlow(value[1..^1], line).Select(item => item[0] is '[' or '{'
                        ? throw new NotSupportedException($"YAML line {line.Number}: nested flow collections are not supported.")
                        : ParseScalar(item, line)).ToList();
                case '{':
                    throw new NotSupportedException($"YAML line {line.Number}: flow mappings are not supported.");
                case '"':
                    if (ClosingQuote(value, line) != value.Length - 1)
                        throw Error(line, "text after a quoted scalar");
                    return Regex.Replace(value[1..^1], @"\\(.)", m => m.Groups[1].Value switch
                    {
                        "\\" => "\\", "\"" => "\"", "/" => "/", "n" => "\n", "t" => "\t",
                        var other => throw new NotSupportedException($"YAML line {line.Number}: escape \\{other} is not supported."),
                    });
                case '\'':
                    if (ClosingQuote(value, line) != value.Length - 1)
                        throw Error(line, "text after a quoted scalar");
                    return value[1..^1].Replace("''", "'", StringComparison.Ordinal);
                case '&' or '*' or '!' or '|' or '>' or '%' or '@' or '`':
                    throw new NotSupportedException($"YAML line {line.Number}: '{value[0]}' (anchors, aliases, tags, block scalars) is not supported.");
                default:
                    if (value.Contains(": ", StringComparison.Ordinal) || value.EndsWith(':'))
                        throw Error(line, "a mapping entry where a scalar was expected");
                    return value is "null" or "Null" or "NULL" or "~" ? null : value;
            }
        }

        private static List<string> SplitFlow(string inner, Line line)
        {
            var items = new List<string>();
            var start = 0;
            var quote = '\0';
            for (var i = 0; i <= inner.Length; i++)
            {
                if (i < inner.Length && quote != '\0')
                {
                    if (quote == '"' && inner[i] == '\\')
                        i++;
                    else if (inner[i] == quote)
                        quote = '\0';
                }
                else if (i < inner.Length && inner[i] is '"' or '\'')
                {
                    quote = inner[i];
                }
                else if (i == inner.Length || inner[i] == ',')
                {
                    var item = inner[start..i].Trim();
                    if (item.Length > 0)
                        items.Add(item);
                    else if (i < inner.Length)
                        throw Error(line, "empty item in a flow sequence");
                    start = i + 1;
                }
            }
            return items;
        }

        private static FormatException Error(Line line, string message) => new($"YAML line {line.Number}: {message}: '{line.Text}'.");
    }

    /// <summary>PyYAML's reading of a file (as the same model), when python3 with PyYAML is installed.</summary>
    private static class PyYaml
    {
        private const string Script =
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)";

        public static object? TryLoad(string path)
        {
            var start = new ProcessStartInfo("python3")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(Script);
            start.ArgumentList.Add(path);
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new InvalidOperationException("python3 did not start.");
            }
            catch (Win32Exception)
            {
                return null;   // no python3
            }
            using (process)
            {
                var stdout = process.StandardOutput.ReadToEndAsync();
                var stderr = process.StandardError.ReadToEndAsync();
                if (!process.WaitForExit(30_000))
                {
                    process.Kill(entireProcessTree: true);
                    throw new TimeoutException("python3 did not parse the YAML within 30 s.");
                }
                if (process.ExitCode != 0)
                {
                    var error = stderr.GetAwaiter().GetResult();
                    if (error.Contains("No module named 'yaml'", StringComparison.Ordinal))
                        return null;   // python3 without PyYAML
                    throw new Xunit.Sdk.XunitException($"PyYAML cannot read {path}:\n{error}");
                }
                using var json = JsonDocument.Parse(stdout.GetAwaiter().GetResult());
                return FromJson(json.RootElement);
            }
        }

        private static object? FromJson(JsonElement element) => element.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => element.GetString(),
            JsonValueKind.Number => element.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            JsonValueKind.Array => element.EnumerateArray().Select(FromJson).ToList(),
            JsonValueKind.Object => element.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value), StringComparer.Ordinal),
            _ => throw new FormatException($"unexpected JSON {element.ValueKind}"),
        };
    }
}
