"""Using the model: an OpenAI-compatible server, A/B routing, a terminal chat, task runs.

Every answer given here is recorded in the collector format under
``sessions/serve-<date>/`` with its version, latency and request id, and the
feedback people give (``/v1/feedback``, the chat's y/n) is recorded beside it, so
the next ``ingest`` + ``curate`` learn from real use: the loop closes here.

Modules: ``engines`` (load a version and generate, streaming), ``models`` (which
files a version name means), ``recorder`` (append-only interaction log),
``abtest`` (weighted sticky routing and the A/B report), ``app`` (the FastAPI
app), ``chat`` (the terminal chat), ``tasks`` (run a task list and score it).
Frameworks (torch, mlx, llama_cpp, fastapi) are imported only when used.
"""
