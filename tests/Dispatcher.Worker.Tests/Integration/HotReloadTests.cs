using Dispatcher.Worker.Destinations;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

[Collection(IntegrationCollection.Name)]
public sealed class HotReloadTests(ServicesFixture services)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_rate_changed_in_the_config_file_takes_effect_on_a_running_worker_and_an_invalid_change_keeps_the_previous_rate()
    {
        await using var s = await Scenario.StartAsync(services, startWorker: false);
        s.Downstream.Handler = context =>
        {
            context.Response.StatusCode = 200;
            return Task.CompletedTask;
        };
        var directory = Directory.CreateTempSubdirectory("dispatcher-hot-reload-");
        try
        {
            var file = Path.Combine(directory.FullName, "dispatcher.json");
            WriteConfig(file, s, permitsPerSecond: "5");
            // Overrides win over the file: the destination lives in the file only.
            var settings = s.Settings
                .Where(kv => !kv.Key.StartsWith("Dispatcher:Destinations:", StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key, kv => kv.Value);
            await using var worker = await InProcessWorker.StartAsync(s.Postgres, s.RabbitMq, s.Queue, settings, file);
            var configuration = worker.Services.GetRequiredService<IConfiguration>();
            var registry = worker.Services.GetRequiredService<DestinationRegistry>();
            var rateKey = $"Dispatcher:Destinations:{s.Destination}:RateLimit:PermitsPerSecond";

            var requests = Enumerable.Range(0, 400).Select(i => s.NewRequest($"/orders/{i}")).ToList();
            foreach (var r in requests)
                await s.SendAsync(r);
            await Eventually.TrueAsync(() => !s.Downstream.Calls.IsEmpty, Timeout, "a first call");
            var start = s.Downstream.Calls.Min(c => c.At);

            // At 5/s (the first second, with the initial burst, left out).
            await CallSeenAtOrAfterAsync(s, start.AddSeconds(4));
            var before = CallsBetween(s, start.AddSeconds(1), start.AddSeconds(4)) / 3.0;
            // 5/s from the file, not the default 100/s (a stall of this process can bunch a few arrivals into the window).
            Assert.True(before is > 0 and <= 10, $"{before:0.0} calls/s under a limit of 5/s from the file");

            // An invalid value: the file is read again, the change is refused, 5/s stays.
            WriteConfig(file, s, permitsPerSecond: "-1");
            await Eventually.TrueAsync(() => configuration[rateKey] == "-1", Timeout, "the configuration to reload the invalid file");
            var refusedAt = DateTimeOffset.UtcNow;
            Assert.True(registry.TryGet(s.Destination, out var kept));
            Assert.Equal(5, kept.Options.RateLimit.PermitsPerSecond);
            await CallSeenAtOrAfterAsync(s, refusedAt.AddSeconds(3));
            var afterInvalid = CallsBetween(s, refusedAt.AddSeconds(1), refusedAt.AddSeconds(3));
            // 5/s for 2 s plus the burst is 15 (more only if a stall here bunched arrivals); the default 100/s, or no
            // limit, would give 200 and more.
            Assert.True(afterInvalid <= 30, $"{afterInvalid} calls in 2 s after an invalid PermitsPerSecond was refused; 5/s allows 15");

            // A valid change: 50/s within seconds.
            WriteConfig(file, s, permitsPerSecond: "50");
            var changedAt = DateTimeOffset.UtcNow;
            await CallSeenAtOrAfterAsync(s, changedAt.AddSeconds(4));
            var after = CallsBetween(s, changedAt.AddSeconds(2), changedAt.AddSeconds(4));
            Assert.True(after > 3 * before * 2,
                $"{after} calls in the 2 s window starting 2 s after PermitsPerSecond went from 5 to 50; before: {before:0.0}/s");
            Assert.True(registry.TryGet(s.Destination, out var changed));
            Assert.Equal(50, changed.Options.RateLimit.PermitsPerSecond);

            var ids = requests.Select(r => r.RequestId).ToList();
            await s.WaitForTerminalAsync(ids, Timeout);
            Assert.All((await s.StatesAsync()).Values, st => Assert.Equal("Succeeded", st.State));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static void WriteConfig(string file, Scenario s, string permitsPerSecond)
    {
        // Written aside and moved into place: the watcher never sees a half-written file.
        var json = $$"""
            {
              "Dispatcher": {
                "Destinations": {
                  "{{s.Destination}}": {
                    "BaseUrl": "{{s.Downstream.BaseUrl}}",
                    "MaxConcurrency": 64,
                    "RateLimit": { "PermitsPerSecond": {{permitsPerSecond}} }
                  }
                }
              }
            }
            """;
        var temporary = file + ".new";
        File.WriteAllText(temporary, json);
        File.Move(temporary, file, overwrite: true);
    }

    /// <summary>Waits until the downstream has seen a call at or after <paramref name="at"/> (the measured window is complete).</summary>
    private static Task CallSeenAtOrAfterAsync(Scenario s, DateTimeOffset at) =>
        Eventually.TrueAsync(() => s.Downstream.Calls.Any(c => c.At >= at), Timeout, $"a call at or after {at:HH:mm:ss.fff}");

    private static int CallsBetween(Scenario s, DateTimeOffset from, DateTimeOffset to) =>
        s.Downstream.Calls.Count(c => c.At >= from && c.At < to);
}
