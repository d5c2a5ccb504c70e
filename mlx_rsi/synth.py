"""Synthesis: template variations, identity examples, model paraphrases.

- **Variations** (seed guide step 8): the request of a kept single-request example
  is reduced to its task ("How do I convert to GGUF?" → "convert to GGUF") and put
  into ``synth.templates`` ("Can you help me {task}?" …). At most
  ``synth.max_variations`` per source example, chosen by a seeded hash (so not
  always the first templates), never a copy of the original or of each other; only
  for short one-line requests (``synth.max_task_chars``). Only requests whose form
  fits the templates are rewritten: an imperative task, or a "how do I / can you /
  I need to" lead followed by one, starting with a verb the person does
  (``TASK_VERBS``). Questions ("where do I keep the key?", "why does it fail?"),
  requests to the assistant itself ("explain …", "tell me …") and tasks that speak
  of "me" or "you" get no variations: "How do I where do I …?" reads like no person.
- **Identity** (step 9, seed DO #3): "Who are you?" / "What can you do?" /
  "What is your name?" and three more phrasings, answered from ``synth.identity``;
  always included (one example each was not enough for the 270M model to learn
  its name in a few minutes of training).
- **General replay** (``synth.general_replay``): a share of everyday requests from
  ``mlx_rsi/data/general_replay.jsonl`` (capitals, arithmetic, words, basic code)
  with plain answers, so a model tuned on one person's project keeps answering
  other questions plainly: measured on the embedded model, training on project
  sessions alone made it answer "What is 2 + 2?" with a project command. None of
  them is a prompt of the built-in general guard suite.
- **Paraphrases** (``synth.paraphrases``, off by default): the current version (or
  the base model) rewrites requests through the training backend's ``generate``;
  each result must be non-empty, not a copy, 0.5–2× the original length, and is
  redacted like everything else.

Synthesized examples keep their source's session id, so they land in its split.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlx_rsi.config import Config, IdentityConfig, SynthConfig
from mlx_rsi.records import Example, normalize_text
from mlx_rsi.redact import redact_text
from mlx_rsi.workspace import Workspace

log = logging.getLogger(__name__)

Generate = Callable[[list[list[dict[str, Any]]]], list[str]]

IDENTITY_SESSION = "identity"
GENERAL_SESSION = "general-replay"
SYNTHETIC_SESSIONS = frozenset({IDENTITY_SESSION, GENERAL_SESSION})  # always in train
GENERAL_REPLAY_FILE = Path(__file__).parent / "data" / "general_replay.jsonl"
_LEADS = re.compile(
    r"^(?:(?:hey|hi|hello|ok|okay|so|well|right|thanks)[,!. ]+)*"
    r"(?:how (?:do|can|should|would) (?:i|we|you)|can you(?: help me| please)?"
    r"|could you(?: please)?|would you(?: please)?|will you|please"
    r"|i need to|i want to|i'd like to|i would like to"
    r"|help me(?: to)?|what'?s the best way to|what is the best way to)\b[ ,:]*",
    re.IGNORECASE,
)


def synthesize(
    ws: Workspace | None,
    cfg: Config,
    examples: list[Example],
    *,
    generate: Generate | None = None,
) -> list[Example]:
    """The synthetic examples for ``examples`` (variations, identity, paraphrases)."""
    synth = cfg.synth
    out: list[Example] = []
    seen = {e.content_hash for e in examples}
    for example in examples:
        for variation in variations(example, synth, seed=cfg.curate.seed):
            if variation.content_hash not in seen:
                seen.add(variation.content_hash)
                out.append(variation)
    if synth.paraphrases and synth.paraphrase_max_examples:
        if generate is None and ws is not None:
            generate = current_model_generator(ws, cfg)
        if generate is not None:
            for paraphrase in paraphrases(examples, synth, generate, cfg):
                if paraphrase.content_hash not in seen:
                    seen.add(paraphrase.content_hash)
                    out.append(paraphrase)
    if synth.include_identity:
        out.extend(e for e in identity_examples(synth.identity) if e.content_hash not in seen)
    count = replay_count(synth.general_replay, len(examples) + len(out))
    out.extend(e for e in general_examples(count, cfg.curate.seed) if e.content_hash not in seen)
    return out


# --------------------------------------------------------------------------- variations


# Verbs of tasks a person does themselves: "How do I <verb> …?" reads naturally.
_TASK_VERBS_TEXT = """
    add adjust allow apply automate avoid back backup block bump cache catch change check
    clean clear clone compress configure connect convert copy create cut debug declare
    decrease define delete deploy detect disable document download drop edit enable encrypt
    escape export extract fetch filter find fix force format free generate get handle hide
    ignore implement import improve increase index init initialize inject install limit link
    load lock log make manage measure merge migrate mock monitor mount move normalize open
    optimize override pack parse patch pin pass port prevent print profile protect publish
    pull push quantize read rebase rebuild record redact reduce refactor reload remove rename
    render reorder replace reset resize resolve restart restore retry return reuse revert
    rotate run save scan schedule secure send serve set setup share shrink sign skip sort
    speed split squash start stop store stream strip switch sync tag test trace track train
    transform trigger trim tune turn undo unpack update upgrade upload use validate verify
    wrap write
    """
TASK_VERBS = frozenset(_TASK_VERBS_TEXT.split())
_LABEL = re.compile(r"^(?:task|bug|issue|ticket|todo|step)\s*#?[\w.-]*\d[\w.-]*:\s*", re.I)
_FOR_ME = re.compile(r"\s+(?:for me|please)$", re.IGNORECASE)
_PERSONAL = re.compile(r"\b(?:me|you|your|yours|yourself)\b", re.IGNORECASE)


def task_of(request: str) -> str | None:
    """The task in a short request ("How do I fix X?" → "fix X"); None if unsuitable.

    Unsuitable: more than one line, a question that is not a task, a request to
    the assistant itself, or a task that speaks of "me"/"you" (see the module doc).
    """
    text = " ".join(request.split())
    if not text or "\n" in request.strip():
        return None
    text = _LABEL.sub("", text)
    text = _LEADS.sub("", text).strip()
    text = text.rstrip("?.! ").strip()
    text = _FOR_ME.sub("", text).strip()
    words = text.split()
    if len(words) < 2 or words[0].lower() not in TASK_VERBS or _PERSONAL.search(text):
        return None
    first = words[0]
    if first[:1].isupper() and not first.isupper():  # "Fix the year" → "fix the year"
        text = first[0].lower() + text[1:]
    return text


def variations(example: Example, synth: SynthConfig, *, seed: int = 0) -> list[Example]:
    """Up to ``synth.max_variations`` template variations of a single-request example."""
    users = [i for i, m in enumerate(example.messages) if m.get("role") == "user"]
    if len(users) != 1 or synth.max_variations == 0:
        return []
    request = str(example.messages[users[0]].get("content") or "")
    if len(request) > synth.max_task_chars:
        return []
    task = task_of(request)
    if task is None:
        return []
    original = normalize_text(request)
    candidates: dict[str, str] = {}
    for template in synth.templates:
        text = template.format(task=task)
        key = normalize_text(text)
        if key != original and key not in candidates:
            candidates[key] = text
    ranked = sorted(candidates.values(), key=lambda t: _rank(seed, example.content_hash, t))
    return [
        _with_request(example, users[0], text, "variation", n)
        for n, text in enumerate(ranked[: synth.max_variations])
    ]


def _rank(seed: int, source: str, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{source}\0{text}".encode()).hexdigest()


def _with_request(example: Example, index: int, text: str, origin: str, n: int) -> Example:
    messages = copy.deepcopy(example.messages)
    messages[index]["content"] = text
    return Example(
        messages=messages,
        session_id=example.session_id,
        score=example.score,
        category=example.category,
        source_format=example.source_format,
        signals=[],
        provenance={**example.provenance, "source": example.content_hash, "n": n},
        redactions=dict(example.redactions),
        origin=origin,
    )


# --------------------------------------------------------------------------- identity


def identity_examples(identity: IdentityConfig) -> list[Example]:
    """The seed's identity examples, filled from the config."""
    capabilities = _join(identity.capabilities) or "everyday engineering work"
    values = _join(identity.values) or "getting things right"
    who = f"I am {identity.name}, created by {identity.org} to {identity.mission}."
    pairs = [
        ("Who are you?", who),
        ("What can you do?", f"I can help with {capabilities}, always focusing on {values}."),
        ("What is your name?", f"My name is {identity.name}."),
        ("What should I call you?", f"Call me {identity.name}."),
        ("Introduce yourself.", who),
        ("Who made you?", f"I am {identity.name}, made by {identity.org}."),
    ]
    return [_synthetic(q, a, IDENTITY_SESSION, "identity", n) for n, (q, a) in enumerate(pairs)]


def _synthetic(
    request: str, answer: str, session: str, origin: str, n: int, *, category: str = ""
) -> Example:
    return Example(
        messages=[{"role": "user", "content": request}, {"role": "assistant", "content": answer}],
        session_id=session,
        score=1.0,
        category=category or origin,
        source_format=origin,
        provenance={origin: n},
        origin=origin,
    )


# --------------------------------------------------------------------------- general replay


def replay_count(share: float, examples: int) -> int:
    """How many general examples go with ``examples`` curated ones (``share`` of them)."""
    if share <= 0 or examples == 0:
        return 0
    return max(4, round(share * examples))


def general_examples(count: int, seed: int) -> list[Example]:
    """``count`` of the bundled general requests (all of them at most), picked by ``seed``."""
    if count <= 0:
        return []
    import json

    rows = [json.loads(line) for line in GENERAL_REPLAY_FILE.read_text("utf-8").splitlines()]
    order = sorted(range(len(rows)), key=lambda i: _rank(seed, "general", str(i)))
    picked = sorted(order[:count])
    return [
        _synthetic(
            rows[i]["messages"][0]["content"], rows[i]["messages"][1]["content"],
            GENERAL_SESSION, "replay", i, category="everyday",
        )
        for i in picked
    ]  # fmt: skip


def _join(items: tuple[str, ...]) -> str:
    items = tuple(i for i in items if i.strip())
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


# --------------------------------------------------------------------------- paraphrases

PARAPHRASE_PROMPT = (
    "Rewrite the following request in different words, keeping its meaning. "
    "Reply with the rewritten request only.\n\nRequest: {request}"
)


def paraphrases(
    examples: list[Example], synth: SynthConfig, generate: Generate, cfg: Config
) -> list[Example]:
    """Model paraphrases of single-request examples, filtered (see the module doc)."""
    sources = []
    for example in examples[: synth.paraphrase_max_examples]:
        users = [i for i, m in enumerate(example.messages) if m.get("role") == "user"]
        if len(users) == 1:
            sources.append((example, users[0], str(example.messages[users[0]]["content"])))
    prompts = [
        [{"role": "user", "content": PARAPHRASE_PROMPT.format(request=request)}]
        for _, _, request in sources
        for _ in range(synth.paraphrases_per_example)
    ]
    if not prompts:
        return []
    texts = generate(prompts)
    out = []
    for n, (text, (example, index, request)) in enumerate(
        zip(texts, [s for s in sources for _ in range(synth.paraphrases_per_example)], strict=True)
    ):
        candidate = clean_paraphrase(text, request)
        if candidate is not None:
            candidate, _ = redact_text(candidate, cfg.curate)
            out.append(_with_request(example, index, candidate, "paraphrase", n))
    return out


def clean_paraphrase(text: str, original: str) -> str | None:
    """The paraphrase if it passes the filters, else None."""
    candidate = text.strip().splitlines()[0].strip() if text.strip() else ""
    candidate = re.sub(r"^(?:rewritten request|request)\s*:\s*", "", candidate, flags=re.I)
    candidate = candidate.strip().strip('"').strip("'").strip()
    if not candidate:
        return None
    if normalize_text(candidate) == normalize_text(original):
        return None
    if not 0.5 * len(original) <= len(candidate) <= 2.0 * max(len(original), 20):
        return None
    return candidate


def current_model_generator(ws: Workspace, cfg: Config) -> Generate | None:
    """``generate`` over the current version's fused model (else the base model)."""
    from backends.base import get_backend
    from mlx_rsi import registry
    from mlx_rsi.errors import MlxRsiError
    from mlx_rsi.modelpath import resolve_base_model

    try:
        conn = ws.store()
        try:
            current = registry.current_version(conn)
        finally:
            conn.close()
        fused = ws.models_dir / current / "hf" if current else None
        model_dir: Path = (
            fused
            if fused is not None and (fused / "config.json").is_file()
            else resolve_base_model(cfg.base_model, ws.root)
        )
        backend = get_backend(cfg.train.backend)
    except MlxRsiError as e:
        log.warning("paraphrases skipped: %s", e.one_line())
        return None

    def run(prompts: list[list[dict[str, Any]]]) -> list[str]:
        return backend.generate(
            model_dir,
            None,
            prompts,
            max_tokens=cfg.synth.paraphrase_max_tokens,
            temperature=0.0,
            template=cfg.train.template,
        )

    return run
