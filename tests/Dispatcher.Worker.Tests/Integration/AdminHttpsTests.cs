using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Dispatcher.Worker.Tests.Infrastructure;

namespace Dispatcher.Worker.Tests.Integration;

/// <summary>The worker's host is the slim one, which sets HTTPS up only on request: an https admin URL must still work.</summary>
[Collection(IntegrationCollection.Name)]
public sealed class AdminHttpsTests(ServicesFixture services)
{
    [Fact]
    public async Task An_https_admin_url_with_a_configured_certificate_serves_health_and_metrics()
    {
        await using var s = await Scenario.StartAsync(services, startWorker: false);
        var certificate = Path.Combine(Path.GetTempPath(), $"dispatcher-admin-{Guid.NewGuid():N}.pfx");
        using (var key = RSA.Create(2048))
        {
            var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            var san = new SubjectAlternativeNameBuilder();
            san.AddIpAddress(System.Net.IPAddress.Loopback);
            request.CertificateExtensions.Add(san.Build());
            using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
            await File.WriteAllBytesAsync(certificate, cert.Export(X509ContentType.Pfx, "test"));
        }
        try
        {
            var settings = new Dictionary<string, string>(s.Settings)
            {
                ["Kestrel:Certificates:Default:Path"] = certificate,
                ["Kestrel:Certificates:Default:Password"] = "test",
            };
            using var trustTestCertificate = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true };
            await using var worker = await WorkerProcess.StartAsync(settings, "https", trustTestCertificate);

            Assert.StartsWith("https://", worker.AdminUrl, StringComparison.Ordinal);
            using var http = new HttpClient(trustTestCertificate, disposeHandler: false);
            Assert.True((await http.GetAsync($"{worker.AdminUrl}/health/live")).IsSuccessStatusCode);
            Assert.Contains("dispatcher_", await http.GetStringAsync($"{worker.AdminUrl}/metrics"), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(certificate);
        }
    }
}
