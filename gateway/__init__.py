"""deltagate's gateway: the FastAPI app (REST, WebSocket, auth, metrics) and the CLI."""
