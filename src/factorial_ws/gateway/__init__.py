"""The gateway's I/O around the sans-I/O protocol: the WebSocket server and its sessions, the
result hub (Redis pub/sub), the producer (Celery messages into Redis) and the HTTP routes."""
