"""Streaming plumbing shared by the notifications (SSE) and chat (WebSocket) apps."""
