using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Dispatcher.Persistence;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a running worker.</summary>
internal sealed class DesignTimeDbContextFactory : IDesignTimeDbContextFactory<DispatcherDbContext>
{
    public DispatcherDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<DispatcherDbContext>()
            .UseNpgsql("Host=127.0.0.1;Database=dispatcher_design;Username=postgres")
            .Options);
}
