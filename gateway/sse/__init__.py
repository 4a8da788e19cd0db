"""Server-Sent Events: ``GET /event-stores/{store}/events/sse`` (contract section 9), one live
subscription per response, served by the pod's one fan-out like a WebSocket subscription."""
