using System.Text.Json.Serialization;

namespace Dispatcher.Contracts;

/// <summary>Why a dispatch was dead-lettered. Serialized as its name.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DeadLetterReason>))]
public enum DeadLetterReason
{
    /// <summary>The downstream answered a status that retrying cannot fix (4xx except 408/429, 3xx, 501).</summary>
    NonRetriableStatus,

    /// <summary>Every allowed attempt failed with a retriable error.</summary>
    RetriesExhausted,

    /// <summary>The request's Deadline passed before an attempt could start.</summary>
    DeadlineExceeded,

    /// <summary>The Destination is not configured.</summary>
    UnknownDestination,

    /// <summary>The request is readable but invalid (missing RequestId, bad method, a Path that leaves the host...).</summary>
    InvalidRequest,
}
