using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Dispatcher.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class RateLimitWindow : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<int[]>(
                name: "window_counts",
                table: "rate_limit_buckets",
                type: "integer[]",
                nullable: false,
                defaultValueSql: "'{}'");

            migrationBuilder.AddColumn<long[]>(
                name: "window_slots",
                table: "rate_limit_buckets",
                type: "bigint[]",
                nullable: false,
                defaultValueSql: "'{}'");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "window_counts",
                table: "rate_limit_buckets");

            migrationBuilder.DropColumn(
                name: "window_slots",
                table: "rate_limit_buckets");
        }
    }
}
