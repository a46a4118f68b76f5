"""``mgfrec serve``: a trained agent (or a baseline) over HTTP, with a web page that shows it think, ground and
listen. ``work.py`` holds the engine-side machinery (batching, conversations), ``app.py`` the FastAPI app.
FastAPI and uvicorn are the optional extra ``serve``; nothing here is imported by training or evaluation."""
