using System.Buffers;

namespace Dispatcher.Worker.Outbox;

/// <summary>
/// Bytes written into an array rented from the shared pool (grown by renting a larger one); <see cref="Return"/>
/// gives it back once nothing reads <see cref="Written"/> any more. Not returning it only leaves it to the collector.
/// </summary>
internal sealed class PooledBufferWriter(int size) : IBufferWriter<byte>
{
    private byte[] _array = ArrayPool<byte>.Shared.Rent(size);
    private int _written;

    public ReadOnlyMemory<byte> Written => _array.AsMemory(0, _written);

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _array.Length - _written);
        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0) => Ensure(sizeHint).AsMemory(_written);

    public Span<byte> GetSpan(int sizeHint = 0) => Ensure(sizeHint).AsSpan(_written);

    /// <summary>Gives the array back (once); the writer is empty and unusable afterwards.</summary>
    public void Return()
    {
        var array = _array;
        _array = [];
        _written = 0;
        if (array.Length > 0)
            ArrayPool<byte>.Shared.Return(array);
    }

    private byte[] Ensure(int sizeHint)
    {
        if (_array.Length - _written >= Math.Max(sizeHint, 1))
            return _array;
        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_array.Length * 2, _written + Math.Max(sizeHint, 1)));
        _array.AsSpan(0, _written).CopyTo(bigger);
        if (_array.Length > 0)
            ArrayPool<byte>.Shared.Return(_array);
        return _array = bigger;
    }
}
