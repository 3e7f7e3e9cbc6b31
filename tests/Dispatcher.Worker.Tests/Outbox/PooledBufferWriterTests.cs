using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using Dispatcher.Worker.Outbox;

namespace Dispatcher.Worker.Tests.Outbox;

public sealed class PooledBufferWriterTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(100_000)]
    public void Holds_exactly_what_a_writer_wrote_however_often_it_had_to_grow(int initialSize)
    {
        // Multi-byte UTF-8 and a body far larger than the first rent: the writer grows several times.
        var body = string.Concat(Enumerable.Range(0, 20_000).Select(i => i % 3 == 0 ? "é" : i % 3 == 1 ? "中" : "a"));
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var expected = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(expected, options))
            Write(writer, body);

        var pooled = new PooledBufferWriter(initialSize);
        using (var writer = new Utf8JsonWriter(pooled, options))
            Write(writer, body);

        Assert.Equal(expected.WrittenSpan.ToArray(), pooled.Written.ToArray());
        pooled.Return();
        pooled.Return(); // once only: the array is not given back twice
        Assert.Equal(0, pooled.Written.Length);
    }

    [Fact]
    public void Refuses_to_advance_past_what_it_handed_out()
    {
        var pooled = new PooledBufferWriter(16);
        var length = pooled.GetSpan(8).Length;
        Assert.Throws<ArgumentOutOfRangeException>(() => pooled.Advance(length + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pooled.Advance(-1));
        pooled.Advance(length);
        Assert.Equal(length, pooled.Written.Length);
    }

    private static void Write(Utf8JsonWriter writer, string body)
    {
        writer.WriteStartObject();
        writer.WriteString("messageId", Guid.Empty);
        writer.WritePropertyName("message");
        writer.WriteRawValue(JsonSerializer.Serialize(new { body }), skipInputValidation: true);
        writer.WriteEndObject();
    }
}
