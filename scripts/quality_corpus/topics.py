# ruff: noqa: E501  (data: one answer per line reads better than wrapped strings)
"""The bench corpus's content: a fictional team's project ("tidepool") in 7 topics.

Each topic has accepted answers that carry facts only this team's logs know (tool
names, flags, paths), so a model can only pass the suites by learning from the
logs; failed answers (marked failed, rejected or corrected) say something else.
``build_corpus.py`` writes these turns as logs in four formats; ``heldout.yaml``
asks new questions on the same subjects, never asked in the logs.
"""

from __future__ import annotations

# topic -> list of (request, accepted answer); and bad (request, wrong answer, correction)
GOOD: dict[str, list[tuple[str, str]]] = {
    "secrets": [
        (
            "How do I store the API token for tidepool?",
            "Store it in the OS keychain with `tidepool secrets set API_TOKEN`; tidepool reads it from there at run time. Never pass the token as a command-line argument.",
        ),
        (
            "Where should the deploy token live?",
            "In the OS keychain: run `tidepool secrets set DEPLOY_TOKEN` once per machine. In CI, set the TIDEPOOL_TOKEN environment variable from the CI secret store.",
        ),
        (
            "Rotate the leaked webhook secret",
            "Revoke it in the provider first, then run `tidepool secrets set WEBHOOK_SECRET` with the new value and `tidepool secrets audit` to find other copies in the keychain.",
        ),
        (
            "How does the CI job get credentials?",
            "CI exports TIDEPOOL_TOKEN from the CI secret store; tidepool reads that environment variable. Nothing secret goes into the repository or the command line.",
        ),
        (
            "Check that no secrets are committed",
            "Run `tidepool secrets audit --git` before pushing; it scans the history for tokens and tells you which keychain entry should hold each one.",
        ),
        (
            "Can I put the password in tidepool.toml?",
            "No. tidepool.toml is committed. Keep the password in the OS keychain with `tidepool secrets set DB_PASSWORD` and reference it as `secret:DB_PASSWORD` in tidepool.toml.",
        ),
    ],
    "deploy": [
        (
            "How do I deploy a new release?",
            "Run `tidepool ship --canary 10` to send 10 percent of traffic to the new release, watch the dashboard for ten minutes, then `tidepool promote` to roll it out fully.",
        ),
        (
            "Roll back the release that just went out",
            "Run `tidepool ship --undo`; it moves traffic back to the previous release in one step. Then open an incident note in ops/incidents.",
        ),
        (
            "Deploy the hotfix to staging",
            "Use `tidepool ship --env staging --canary 100`; staging takes the whole release at once. Promote to production later with `tidepool ship --canary 10`.",
        ),
        (
            "What's the release checklist?",
            "Tag the commit, run `tidepool ship --canary 10`, watch error rates for ten minutes, `tidepool promote`, then post the changelog in the release channel.",
        ),
        (
            "How do I see what is deployed right now?",
            "Run `tidepool status --env production`; it lists the live release, the canary share and who shipped it.",
        ),
        (
            "Pause a canary that looks bad",
            "Run `tidepool ship --hold` to freeze the canary share, investigate, then either `tidepool promote` or `tidepool ship --undo`.",
        ),
    ],
    "formats": [
        (
            "Convert the model to GGUF",
            "Run `tidepool convert --to gguf --quant q4_k_m model/`; it writes model.q4_k_m.gguf next to the weights and checks it loads in llama.cpp.",
        ),
        (
            "Which quantization should I ship for laptops?",
            "Ship q4_k_m for laptops: `tidepool convert --to gguf --quant q4_k_m`. Keep q8_0 for the evaluation box where memory is not tight.",
        ),
        (
            "Make an MLX copy of the model",
            "Run `tidepool convert --to mlx --bits 4 model/`; it writes model-mlx-4bit/ for Apple silicon.",
        ),
        (
            "The GGUF file will not load, what now?",
            "Run `tidepool convert --check model.q4_k_m.gguf`; it loads the file with llama.cpp and prints the first tensor that does not match. Reconvert with --quant q8_0 to compare.",
        ),
        (
            "Export safetensors for the hub",
            "Run `tidepool convert --to safetensors model/`; then `tidepool publish` uploads the folder with its model card.",
        ),
    ],
    "docs": [
        (
            "Where do the docs live?",
            "In docs/handbook, one page per command. Build them with `mkdocs build --strict` so broken links fail the build.",
        ),
        (
            "Document the new ship flag",
            "Add it to docs/handbook/ship.md under Options with an example, then run `mkdocs build --strict` and link it from the changelog.",
        ),
        (
            "Update the README for the new install steps",
            "Keep the README short: the install line `pipx install tidepool` and a link to docs/handbook/install.md, where the full steps live.",
        ),
        (
            "How do I preview the handbook locally?",
            "Run `mkdocs serve` in the repository root and open http://127.0.0.1:8000; it reloads as you edit docs/handbook.",
        ),
        (
            "Write a guide for new contributors",
            "Put it in docs/handbook/contributing.md: setup with `pipx install tidepool`, the test command, and the review rules. Build with `mkdocs build --strict`.",
        ),
    ],
    "errors": [
        (
            "The sync command fails with a timeout, how do I debug it?",
            "Set TIDEPOOL_TRACE=1 and rerun; the full trace goes to ~/.tidepool/logs/trace.jsonl. Then run `tidepool doctor` to check the network and the keychain.",
        ),
        (
            "Fix the error handling in the uploader",
            "Catch UploadError only, retry with backoff three times through `tidepool.retry`, and log the request id; let every other exception reach the top level.",
        ),
        (
            "Where are tidepool's logs?",
            "In ~/.tidepool/logs: app.log for the summary and trace.jsonl when TIDEPOOL_TRACE=1 is set.",
        ),
        (
            "Handle a missing config file gracefully",
            "Raise ConfigMissing with the path and a hint to run `tidepool init`; the CLI turns it into one line and exit code 2.",
        ),
        (
            "tidepool crashes on start, what should I check first?",
            "Run `tidepool doctor`; it checks the Python version, the keychain, tidepool.toml and the network, and prints a fix for each failure.",
        ),
        (
            "Fix the year from 2024 to 2025 in the license headers",
            "Search and replace across the tree with `tidepool fix-headers --year 2025`; it only touches license headers and shows a diff first.",
        ),
    ],
    "testing": [
        (
            "How do I run the fast tests?",
            "Run `pytest -q -m 'not slow'`; the slow tests need the real model and run nightly.",
        ),
        (
            "Update the golden files after changing the output",
            "Run `pytest --update-golden tests/golden`; review the diff of tests/golden before committing.",
        ),
        (
            "Add a test for the ship command",
            "Add tests/test_ship.py using the `fake_cluster` fixture from tests/conftest.py, and compare the output with a file in tests/golden.",
        ),
        (
            "Why are the golden tests failing after my change?",
            "Your change altered the output; if it is intended, run `pytest --update-golden tests/golden` and commit the new golden files.",
        ),
        (
            "Run the slow tests before the release",
            "Run `pytest -q -m slow`; they load the real model, so run them on the eval box, not your laptop.",
        ),
    ],
    "database": [
        (
            "How do I add a column to the users table?",
            "Change the model, then `alembic revision --autogenerate -m 'add column'`, review the script in migrations/versions, and `alembic upgrade head`.",
        ),
        (
            "Apply the pending migrations",
            "Run `alembic upgrade head` against the database in TIDEPOOL_DB_URL; check with `alembic current` afterwards.",
        ),
        (
            "Fix a mistake in a migration that was already applied",
            "Never edit an applied migration. Write a new one with `alembic revision -m 'fix'` that corrects it, then `alembic upgrade head`.",
        ),
        (
            "Undo the last migration on my machine",
            "Run `alembic downgrade -1` locally; never downgrade production, write a new forward migration instead.",
        ),
        (
            "Where is the database URL configured?",
            "In the TIDEPOOL_DB_URL environment variable; tidepool.toml only names it as `db_url = env:TIDEPOOL_DB_URL`.",
        ),
    ],
}

# (topic, request, wrong answer, the person's correction or None when just marked failed)
BAD: list[tuple[str, str, str, str | None]] = [
    (
        "secrets",
        "How do I give tidepool my API token?",
        "Pass it on the command line: `tidepool sync --token abc123`.",
        "that's wrong, tokens never go on the command line, use the keychain",
    ),
    (
        "secrets",
        "Save the database password for tidepool",
        "Put it in plain text in tidepool.toml under [db].",
        None,
    ),
    (
        "deploy",
        "Ship the new release",
        "Copy the build to the servers with scp and restart them all at once.",
        "no, we always ship with a canary",
    ),
    ("deploy", "Revert the bad deploy", "Delete the release folder on every server by hand.", None),
    (
        "formats",
        "Convert the weights to GGUF for llama.cpp",
        "Rename model.safetensors to model.gguf.",
        "that doesn't work, it's not a real conversion",
    ),
    (
        "docs",
        "Where should I write the docs for the new command?",
        "Put everything into one huge README.md file.",
        None,
    ),
    (
        "errors",
        "How do I get more detail when sync fails?",
        "Add print statements everywhere and rerun.",
        "wrong, we have a trace switch for that",
    ),
    (
        "testing",
        "How do I refresh the golden files?",
        "Delete tests/golden and let the tests recreate whatever they want.",
        None,
    ),
    (
        "database",
        "Change a migration that already ran in production",
        "Edit the old migration file in place and rerun it.",
        "that's wrong, applied migrations are never edited",
    ),
    (
        "database",
        "Drop the users table to fix the schema",
        "Run DROP TABLE users; on production and recreate it.",
        None,
    ),
]
