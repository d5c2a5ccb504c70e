"""`mlx-rsi serve`: an OpenAI-compatible local server for the current version (or an A/B split)."""

from __future__ import annotations

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command()
@click.argument("version", required=False)
@click.option("--host", default=None, help="Address to bind (default serve.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default serve.port, 8800).")
@click.option(
    "--engine",
    type=click.Choice(["auto", "transformers", "mlx", "gguf"]),
    default=None,
    help="auto: MLX on Apple silicon, else transformers; gguf: llama.cpp on the GGUF export.",
)
@click.option("--ab", default=None, help="A/B split, e.g. v1.1:0.5,v1.2:0.5 (sticky per client).")
@pass_app
def serve(
    app: AppContext,
    version: str | None,
    host: str | None,
    port: int | None,
    engine: str | None,
    ab: str | None,
) -> None:
    """Serve VERSION (default: the current one) at /v1/chat/completions.

    Endpoints: /v1/chat/completions (streaming or not), /v1/models, /v1/feedback
    (request_id + rating up|down), /health. Every answer and its feedback is
    recorded under sessions/serve-<date>/ for the next cycle. Binding to a
    non-loopback address needs $MLX_RSI_SERVE_TOKEN (bearer token).

    \b
    Example:
      mlx-rsi serve --port 8800
      mlx-rsi serve --ab v1.1:0.5,v1.2:0.5
    """
    import uvicorn

    from mlx_rsi.serve.app import ServeState, create_app
    from mlx_rsi.serve.server import bind_token, load_engines, plan_models, recorder_for

    cfg = app.config()
    ws = app.workspace
    host = host or cfg.serve.host
    port = port or cfg.serve.port
    token = bind_token(host)  # refuse a public bind without a token before loading anything
    if ab and version:
        raise click.UsageError("give either VERSION or --ab, not both")
    conn = ws.store()
    try:
        served, router = plan_models(ws, conn, cfg, version, ab, engine or cfg.serve.engine)
    finally:
        conn.close()
    ui = UI(app.quiet)
    engines = load_engines(served, cfg, ui.line)
    state = ServeState(
        engines=engines,
        default_version=served[0].version,
        recorder=recorder_for(ws, cfg),
        model_name=cfg.model.name,
        max_tokens=cfg.serve.max_tokens,
        max_prompt_tokens=cfg.serve.max_prompt_tokens,
        router=router,
        token=token,
    )
    ui.line(f"serving {', '.join(engines)} at http://{host}:{port}/v1 (Ctrl-C stops)")
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
