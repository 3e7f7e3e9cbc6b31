using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Dispatcher.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class AttemptLeaseToken : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<Guid>(
                name: "lease_token",
                table: "dispatch_attempts",
                type: "uuid",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "ux_dispatch_attempts_lease_token",
                table: "dispatch_attempts",
                column: "lease_token",
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ux_dispatch_attempts_lease_token",
                table: "dispatch_attempts");

            migrationBuilder.DropColumn(
                name: "lease_token",
                table: "dispatch_attempts");
        }
    }
}
