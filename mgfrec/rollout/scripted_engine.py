"""A rollout engine that replays scripted turns: deterministic multi-turn rollouts without a trained policy.

An untrained policy almost never writes a valid ``<think>``/``<ground>`` turn, so the loop's grounding,
feedback and answering paths need a policy that does. :class:`ScriptedEngine` implements the
:class:`~mgfrec.rollout.base.RolloutEngine` protocol: a ``script`` callable chooses each turn's *text*
from the decoded context, the engine tokenizes it (the "sampled" ids), cuts it after the first stop exactly
as a sampling engine would stop, caps it at ``max_new_tokens``, and reports a fixed log-prob per token.

Under constrained decoding (``constraints=``) every scripted token must be one the turn grammar allows:
a script that breaks it is an error, not a silently unconstrained turn (SFT teachers rely on that).

For tests, demonstrations and benchmarks of the environment; not registered as a component, since a
script is code, not configuration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mgfrec.rollout.base import Generation, check_generate_args, single_token_stops


class GrammarViolation(ValueError):
    """A scripted turn that the constrained turn grammar does not allow."""


Script = Callable[[str, int], str]
"""``script(context_text, sample_index) -> turn text``; ``context_text`` is the whole prompt decoded with
special tokens, ``sample_index`` is ``j`` of the ``n`` samples asked for the prompt."""


def encode_split(tokenizer: Any, text: str, split_at: Sequence[str] = ()) -> list[int]:
    """``text``'s token ids, each piece between (and each of) the ``split_at`` strings encoded on its own."""
    marks = [re.escape(m) for m in split_at if m]
    pieces = re.split("(" + "|".join(marks) + ")", text) if marks else [text]
    return [int(i) for piece in pieces if piece for i in tokenizer.encode(piece, add_special_tokens=False)]


class ScriptedEngine:
    """Replays ``script``'s turns as if sampled; every token gets log-prob ``logprob``."""

    supports_constraints = True

    def __init__(self, tokenizer: Any, script: Script, *, logprob: float = -1.0, split_at: Sequence[str] = ()):
        """``split_at``: strings (the agent's tags) the turn is cut at before tokenizing, each piece encoded on
        its own, as a constrained sampler writes them. Without it a hub tokenizer may merge across a tag
        boundary (SmolLM2 has one token for ``><``), which no constrained turn can hold."""
        if logprob > 0:
            raise ValueError(f"logprob must be <= 0, got {logprob}")
        self.tokenizer = tokenizer
        self.script = script
        self.logprob = logprob
        self.split_at = tuple(split_at)
        self.calls: list[dict[str, Any]] = []  # what each generate() call was asked, for tests

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to update: the script is the policy."""

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        stop_token_ids: Sequence[int] = (),
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        constraints: Sequence[Any] | None = None,
    ) -> list[list[Generation]]:
        """The script's turn for each prompt and sample index, tokenized, cut at a stop and at the cap.

        ``constraints`` (one per row): each scripted token is checked against its row's turn grammar."""
        check_generate_args(prompts, max_new_tokens, n, temperature, top_p, constraints, stop)
        self.calls.append({"prompts": len(prompts), "n": n, "max_new_tokens": max_new_tokens, "stop": tuple(stop)})
        stop_ids, stop_strings = single_token_stops(self.tokenizer, stop)
        for i in (*stop_token_ids, self.tokenizer.eos_token_id):
            if i is not None:
                stop_ids.setdefault(int(i), self.tokenizer.convert_ids_to_tokens(int(i)))
        out = []
        for prompt in prompts:
            context = self.tokenizer.decode(list(prompt), skip_special_tokens=False)
            out.append([self._one(self.script(context, j), max_new_tokens, stop_ids, stop_strings) for j in range(n)])
        for row, c in zip((g for gens in out for g in gens), constraints or (), strict=False):
            if c is None:
                continue
            for k, tok in enumerate(row.token_ids):
                if not c.allowed().allows(tok):
                    raise GrammarViolation(
                        f"the scripted turn {row.text!r} breaks the constrained turn grammar at token {k} "
                        f"({self.tokenizer.decode([tok])!r}); script a valid turn or use agent.decoding: free"
                    )
                c.advance(tok)
        return out

    def _one(self, text: str, cap: int, stop_ids: dict[int, str], stop_strings: list[str]) -> Generation:
        ids = encode_split(self.tokenizer, text, self.split_at)
        if not ids:
            raise ValueError("the script returned a turn that encodes to no tokens; a turn needs at least one")
        for k, tok in enumerate(ids[:cap]):
            hit = stop_ids.get(tok) or next(
                (s for s in stop_strings if s in self.tokenizer.decode(ids[: k + 1], skip_special_tokens=False)), None
            )
            if hit is not None:
                return self._generation(ids[: k + 1], "stop", hit)
        return self._generation(ids[:cap], "length", None)

    def _generation(self, ids: list[int], reason: str, stop: str | None) -> Generation:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        return Generation(list(ids), [self.logprob] * len(ids), text, reason, stop)  # type: ignore[arg-type]
