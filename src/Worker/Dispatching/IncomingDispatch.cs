using Dispatcher.Contracts;

namespace Dispatcher.Worker.Dispatching;

/// <summary>A request as it came off the queue, with what the transport says about the message.</summary>
/// <param name="MessageId">The transport MessageId (stable across redeliveries), when the producer set one.</param>
/// <param name="Redelivered">The broker delivered this message before (a consumer died or disconnected).</param>
internal sealed record IncomingDispatch(DispatchRequest Request, Guid? MessageId, bool Redelivered, string? TraceParent);
