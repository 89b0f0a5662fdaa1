"""cellbench-web: a station's dashboard and HTTP API (FastAPI served by uvicorn), live over
WebSocket; also ``cellbench web --db URL``, read-only over a station or central database."""
