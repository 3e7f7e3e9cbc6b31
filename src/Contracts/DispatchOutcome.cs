using System.Text.Json.Serialization;

namespace Dispatcher.Contracts;

/// <summary>How a dispatch ended. Serialized as its name.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DispatchOutcome>))]
public enum DispatchOutcome
{
    Succeeded,
    DeadLettered,
}
