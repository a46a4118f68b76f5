"""Constrained turns: the token-level grammar of one agent turn and the titles it may name.

With ``agent.decoding: constrained`` every turn is sampled under :class:`TurnConstraint`, a small state
machine over token ids that says, before each token, which tokens may come next:

``<think>`` thought ``</think>`` then exactly one of ``<ground>`` title ``</ground>`` or ``<answer>`` title
``</answer>``, where

* the thought is one or more *plain* tokens: a plain token decodes to text without ``<`` or ``>`` and is
  not a special token, so no tag (the policy's or the environment's ``<item_list>`` / ``<feedback>``) can
  ever be written inside it; the first one is not whitespace only (the format rule wants a non-empty
  thought); at ``agent.max_think_tokens`` (or when the turn's budget would not leave room for the action)
  ``</think>`` is forced;
* the answer's title is restricted, token by token through a prefix :class:`TokenTrie`, to the titles this
  trajectory has been shown (its recall list and every returned item list), each as the prompt shows it;
* the grounded title is restricted the same way to the shown and history titles
  (``agent.ground_titles: shown``), or is free plain text as in the paper (``free``);
* ``<ground>`` is allowed only while groundings are left and the total budget, after the tokens this turn has
  written and the grounding's longest title, still has room for an answer turn, so a constrained trajectory
  cannot end with ``grounding_limit``.

Format errors can then only come from budgets (a title longer than what is left), and the metrics say so.

A prior over the answer (``agent.recall_prior: b > 0``). Each title the answer may name gets the weight
``rank ** -b`` (held as its log, ``-b log rank``, so no ``b`` underflows) by its place in the recall list (a title shown
only by a grounding ranks after the list); the answer trie factors that prior over whole titles into one
distribution per step (:meth:`TokenTrie.log_prior`), and its log is added to the allowed tokens' logits
(:attr:`AllowedSet.bias`). The policy then samples from ``softmax(logits + log prior)`` over the allowed tokens:
it answers the recall model's first title unless its own logits say otherwise, and GRPO trains it on that same
distribution (the bias travels with the allowed sets). A small policy from scratch never learns "the list's first
item" by itself (docs/agent-cpu.md).

Exactness. The sampler renormalises the logits over the allowed set at each constrained position, so the
sampled token's log-prob is of that restricted distribution. What was allowed at every position is
recomputed deterministically from the turn's own tokens (:meth:`TurnConstraint.replay`) and travels with the
trajectory (:attr:`mgfrec.agent.trajectory.PolicySegment.allowed`), so the training forward pass applies the
same restriction to the old, new and reference log-probs (:mod:`mgfrec.models.logprobs`).

This module knows token ids and titles only; it never samples, grounds or tokenizes prompts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mgfrec.agent.parser import ANSWER_CLOSE, ANSWER_OPEN, GROUND_CLOSE, GROUND_OPEN, THINK_CLOSE, THINK_OPEN
from mgfrec.validation import is_blank


@dataclass(frozen=True)
class AllowedSet:
    """The tokens allowed at one position: exactly ``ids`` (``only=True``) or all but ``ids`` (``only=False``),
    with ``bias``: ``(token, offset)`` pairs added to those tokens' logits (``agent.recall_prior``)."""

    only: bool
    ids: frozenset[int]
    bias: tuple[tuple[int, float], ...] = ()

    def allows(self, token: int) -> bool:
        return (token in self.ids) if self.only else (token not in self.ids)

    def offsets(self, vocab_size: int) -> torch.Tensor:
        """``[vocab_size]`` float32 added to the logits: 0 where allowed (plus ``bias``), -inf elsewhere."""
        out = torch.zeros(vocab_size).masked_fill(~self.mask(vocab_size), float("-inf"))
        for token, offset in self.bias:
            out[token] += offset
        return out

    def mask(self, vocab_size: int) -> torch.Tensor:
        """``[vocab_size]`` bool, True where allowed."""
        out = torch.full((vocab_size,), not self.only, dtype=torch.bool)
        if self.ids:
            ids = torch.tensor(sorted(i for i in self.ids if i < vocab_size), dtype=torch.long)
            out[ids] = self.only
        return out


def only(ids: Iterable[int]) -> AllowedSet:
    return AllowedSet(True, frozenset(int(i) for i in ids))


def logs_of(weights: Iterable[float]) -> list[float]:
    """The logs of prior weights, each of which must be positive and finite."""
    weights = list(weights)
    bad = next((w for w in weights if not (0 < w < math.inf)), None)
    if bad is not None:
        raise ValueError(f"trie weights must be positive and finite, got {bad}")
    return [math.log(w) for w in weights]


class TokenTrie:
    """Token-id sequences as a prefix tree: which tokens may follow a prefix, and where a sequence ends.

    With ``weights`` (one positive number per sequence) or ``log_weights`` (their logs; a repeated sequence keeps
    its largest) every node also knows the log weight ending there (``log_end``) and below it (``log_mass``), so a
    prior over whole sequences factors into one distribution per step: :meth:`log_prior`. The sums are taken in
    log space: ``rank ** -b`` of a large ``b`` underflowed to 0 and stopped a fit at its first step (review s31)."""

    def __init__(
        self,
        sequences: Iterable[Sequence[int]] = (),
        weights: Iterable[float] | None = None,
        *,
        log_weights: Iterable[float] | None = None,
    ):
        self.children: dict[int, TokenTrie] = {}
        self.terminal = False
        self.depth = 0  # tokens in the longest sequence below this node
        self.log_end = -math.inf  # log weight of the sequence ending here
        self.log_mass = -math.inf  # log weight ending here or below (set by a weighted build)
        if weights is not None:
            log_weights = logs_of(weights)
        if log_weights is None:
            for seq in sequences:
                self.add(seq)
            return
        for seq, lw in zip(sequences, log_weights, strict=True):
            if not math.isfinite(lw):
                raise ValueError(f"trie log weights must be finite, got {lw}")
            self.add(seq, lw)
        self._sum()

    def add(self, seq: Sequence[int], log_weight: float = -math.inf) -> None:
        if not seq:
            return
        node = self
        for n, tok in enumerate(seq):
            node.depth = max(node.depth, len(seq) - n)
            node = node.children.setdefault(int(tok), TokenTrie())
        node.terminal = True
        node.log_end = max(node.log_end, float(log_weight))

    def _sum(self) -> float:
        parts = [self.log_end, *(child._sum() for child in self.children.values())]
        top = max(parts)
        self.log_mass = top if top == -math.inf else top + math.log(sum(math.exp(p - top) for p in parts))
        return self.log_mass

    def log_prior(self, close: int) -> tuple[tuple[int, float], ...]:
        """``log P(next | this prefix)`` of each child token and of ``close`` (where a sequence ends here);
        empty for an unweighted trie."""
        if self.log_mass == -math.inf:
            return ()
        out = {tok: child.log_mass - self.log_mass for tok, child in self.children.items()}
        if self.terminal:
            out[close] = self.log_end - self.log_mass
        return tuple(sorted(out.items()))

    def __bool__(self) -> bool:
        return bool(self.children)


class TurnGrammar:
    """Per-tokenizer facts the constraint needs: tag token sequences, plain tokens, title encodings.

    Built once per tokenizer (scanning the vocabulary once) and shared by every trajectory.
    """

    def __init__(self, tokenizer: Any, vocab_size: int | None = None):
        """``vocab_size``: the model's logits width when it exceeds the tokenizer's (the extra ids are never
        plain)."""
        self.tokenizer = tokenizer
        known = len(tokenizer)
        self.vocab_size = max(int(vocab_size or known), known)
        enc = self._encode
        self.think_open, self.think_close = enc(THINK_OPEN), enc(THINK_CLOSE)
        self.ground_open, self.ground_close = enc(GROUND_OPEN), enc(GROUND_CLOSE)
        self.answer_open, self.answer_close = enc(ANSWER_OPEN), enc(ANSWER_CLOSE)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        unsafe: set[int] = set()
        blank: set[int] = set()
        unseen: set[int] = set()  # shows nothing on its own: part of a character's bytes, or one that strip() drops
        hidden: set[int] = set()
        for i in range(self.vocab_size):
            if i in special or i >= known:
                unsafe.add(i)
                continue
            text = tokenizer.decode([i], skip_special_tokens=False)
            if "<" in text or ">" in text or not text:
                unsafe.add(i)
            elif not text.strip():
                blank.add(i)
            elif not text.replace("\ufffd", "").strip():
                unseen.add(i)
            elif is_blank(text.replace("\ufffd", "")):  # a zero-width space, a BOM: shows nothing in a title
                hidden.add(i)
        self.unsafe = frozenset(unsafe)
        self.blank = frozenset(blank)
        self.unseen = frozenset(unseen)
        # not whitespace, yet nothing shows (is_blank): a title of those is empty to the parser (it was grounded to an
        # arbitrary item; review s40). Titles only: a thought of them harms nothing, and the thought's masks (so the
        # documented seeded runs) stay as they were
        self.hidden = frozenset(hidden)
        # one token that shows on its own: what a thought or free title of nothing visible gets at its cap, where
        # its closing tag was forced and the parser found it empty (a format error the grammar allowed; s39)
        self.visible_alone = AllowedSet(False, self.unsafe | self.blank | self.unseen)
        self.title_visible_alone = AllowedSet(False, self.unsafe | self.blank | self.unseen | self.hidden)
        self._titles: dict[str, tuple[int, ...]] = {}
        self._plain: dict[tuple[bool, bool, frozenset[int]], AllowedSet] = {}

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(int(i) for i in self.tokenizer.encode(text, add_special_tokens=False))

    def title_ids(self, title: str) -> tuple[int, ...]:
        """``title`` tokenized on its own (cached): the token path of the trie."""
        ids = self._titles.get(title)
        if ids is None:
            ids = self._titles[title] = self._encode(title)
        return ids

    def trie(
        self,
        titles: Iterable[str],
        weights: Iterable[float] | None = None,
        *,
        log_weights: Iterable[float] | None = None,
    ) -> TokenTrie:
        """The titles' token paths; ``weights`` or ``log_weights`` (one per title): a prior over them
        (:meth:`TokenTrie.log_prior`)."""
        if weights is not None:
            log_weights = logs_of(weights)
        if log_weights is None:
            return TokenTrie(self.title_ids(t) for t in titles if t and not is_blank(t))
        kept = [(t, w) for t, w in zip(titles, log_weights, strict=True) if t and not is_blank(t)]
        return TokenTrie((self.title_ids(t) for t, _ in kept), log_weights=[w for _, w in kept])

    def plain(self, first: bool, extra: Iterable[int] = (), title: bool = False) -> AllowedSet:
        """Plain tokens (``first``: not whitespace only; in a free ``title``, not one that shows nothing either),
        plus ``extra`` (e.g. a closing tag's first token).

        Asked before every thought token of every row, so each of the few distinct sets is built (and hashed,
        for the engine's mask cache) once."""
        key = (first and title, first, frozenset(extra))
        found = self._plain.get(key)
        if found is None:
            banned = (self.unsafe | self.blank | (self.hidden if title else frozenset())) if first else self.unsafe
            found = self._plain[key] = AllowedSet(False, banned - key[2])
        return found


@dataclass
class TurnConstraint:
    """The grammar of one turn for one trajectory; see the module docstring.

    ``answer_trie``: the titles an answer may name; ``ground_trie``: those a grounding may name, or None for
    free text. ``can_ground``: whether groundings are left. ``budget``: the turn's token budget (the constraint
    closes the thought early enough to leave room for the action). ``total_left`` (None: no total budget to keep)
    and ``answer_room``: a ``<ground>`` is allowed only while what the total budget has left after this turn,
    counted from the tokens the turn has written and its longest grounded title, still holds ``answer_room``
    tokens for an answer turn. (It was decided when the turn began, as if the turn would use its whole budget: a
    total of 100 with 64 per turn never allowed a second grounding; review s31.)
    """

    grammar: TurnGrammar
    answer_trie: TokenTrie
    ground_trie: TokenTrie | None = None
    can_ground: bool = True
    budget: int = 64
    max_think_tokens: int = 16
    max_free_title_tokens: int = 24
    total_left: int | None = None
    answer_room: int = 0
    # state
    _forced: tuple[int, ...] = field(default=(), init=False)
    _after: str = field(default="think", init=False)  # the phase once the forced tokens are written
    _phase: str = field(default="forced", init=False)
    _count: int = field(default=0, init=False)  # tokens written in the current thought / free title
    _used: int = field(default=0, init=False)  # tokens written in this turn
    _node: TokenTrie | None = field(default=None, init=False)
    _kind: str = field(default="", init=False)  # "ground" or "answer" once the action is chosen
    _path: tuple[int, ...] = field(default=(), init=False)  # opener tokens written so far
    # the current thought or free title, while nothing in it shows yet, and whether something does: each byte of a
    # multi-byte character decodes alone to U+FFFD, so two bytes that make NBSP or U+3000 passed the "not
    # whitespace first" rule, and a thought of them was empty to the parser (a format error)
    _unseen: tuple[int, ...] = field(default=(), init=False)
    _visible: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._forced = self.grammar.think_open

    def fresh(self) -> TurnConstraint:
        """The same constraint back at the start of the turn (the tries are shared, not rebuilt): what
        :meth:`replay` needs after the sampler advanced this one."""
        return replace(self)

    # --- what may come next --------------------------------------------------------------------------------

    def _trie(self, kind: str) -> TokenTrie | None:
        """The titles ``kind`` may name; None (free plain text) for a free grounding or an answer with
        nothing shown yet."""
        trie = self.answer_trie if kind == "answer" else self.ground_trie
        return trie if trie else None

    def _title_room(self, kind: str) -> int:
        g = self.grammar
        trie = self._trie(kind)
        depth = trie.depth if trie is not None else self.max_free_title_tokens
        tags = (g.answer_open, g.answer_close) if kind == "answer" else (g.ground_open, g.ground_close)
        return len(tags[0]) + depth + len(tags[1])

    def _actions(self) -> list[str]:
        ground = self.can_ground and (self.ground_trie is None or bool(self.ground_trie))
        if ground and self.total_left is not None:
            # what this turn uses if it grounds now: what it wrote, the rest of </think> (in the thought), and
            # the grounding's tags and longest title
            closing = len(self.grammar.think_close) if self._phase == "think" else 0
            ground = self.total_left - (self._used + closing + self._title_room("ground")) >= self.answer_room
        return ["answer", "ground"] if ground else ["answer"]

    def allowed(self) -> AllowedSet:
        """The tokens allowed next."""
        g = self.grammar
        if self._phase == "forced":
            return only([self._forced[0]])
        if self._phase == "think":
            room = len(g.think_close) + max(self._title_room(k) for k in self._actions())
            if not self._visible:  # the close may not come yet: one token must show first, and fit the turn
                if (self._count >= 1 and self._count >= self.max_think_tokens) or self._used + room + 1 >= self.budget:
                    return g.visible_alone
            elif self._count >= self.max_think_tokens or self._used + room >= self.budget:
                return only([g.think_close[0]])
            return g.plain(not self._visible, [g.think_close[0]] if self._visible else [])
        if self._phase == "action":  # the openers as a trie: with a hub tokenizer they may share tokens
            return only(self._node.children)
        if self._phase == "trie":
            close = (g.answer_close if self._kind == "answer" else g.ground_close)[0]
            ids = set(self._node.children)
            if self._node.terminal:
                ids.add(close)
            return AllowedSet(True, frozenset(ids), self._node.log_prior(close))
        if self._phase == "free":
            tags = g.answer_close if self._kind == "answer" else g.ground_close
            if not self._visible:  # as for the thought: something must show before the close
                full = self._count >= 1 and self._count >= self.max_free_title_tokens
                if full or self._used + len(tags) + 1 >= self.budget:
                    return g.title_visible_alone
            elif self._count >= self.max_free_title_tokens or self._used + len(tags) >= self.budget:
                return only([tags[0]])  # the title's cap, or only the closing tag still fits the turn
            return g.plain(not self._visible, [tags[0]] if self._visible else [], title=True)
        return only([])  # done: nothing more may be written

    @property
    def done(self) -> bool:
        return self._phase == "done"

    # --- moving on -----------------------------------------------------------------------------------------

    def _force(self, seq: tuple[int, ...], after: str) -> None:
        if seq:
            self._forced, self._after, self._phase = seq, after, "forced"
        else:
            self._enter(after)

    def _enter(self, phase: str) -> None:
        self._phase, self._count, self._unseen, self._visible = phase, 0, (), False
        if phase == "action":
            g = self.grammar
            self._path = ()
            self._node = TokenTrie((g.ground_open if k == "ground" else g.answer_open) for k in self._actions())
        if phase == "title":
            self._node = self._trie(self._kind)
            self._phase = "free" if self._node is None else "trie"

    def advance(self, token: int) -> None:
        """Take ``token`` (which must be allowed) and move to the next state."""
        token = int(token)
        if not self.allowed().allows(token):
            raise ValueError(f"token {token} is not allowed in phase {self._phase!r} of the turn grammar")
        g = self.grammar
        self._used += 1
        if self._phase == "forced":
            rest = self._forced[1:]
            if rest:
                self._forced = rest
            else:
                self._enter(self._after)
        elif self._phase == "think":
            if token == g.think_close[0] and self._count >= 1:
                self._force(g.think_close[1:], "action")
            else:
                self._write(token)
        elif self._phase == "action":
            self._path += (token,)
            self._node = self._node.children[token]
            if not self._node.children:
                self._kind = "ground" if self._path == g.ground_open else "answer"
                self._enter("title")
        elif self._phase == "trie":
            close = g.answer_close if self._kind == "answer" else g.ground_close
            if token in self._node.children:
                self._node = self._node.children[token]
            else:  # the close tag (allowed only at a terminal node)
                self._force(close[1:], "done")
        elif self._phase == "free":
            close = g.answer_close if self._kind == "answer" else g.ground_close
            if token == close[0] and self._count >= 1:
                self._force(close[1:], "done")
            else:
                self._write(token)

    def _write(self, token: int) -> None:
        """A plain token of the thought or free title; until something in it shows, its text is decoded whole."""
        self._count += 1
        if not self._visible:
            self._unseen += (token,)
            text = self.grammar.tokenizer.decode(list(self._unseen), skip_special_tokens=False)
            shown = text.replace("\ufffd", "")
            self._visible = not is_blank(shown) if self._phase == "free" else bool(shown.strip())

    def replay(self, token_ids: Sequence[int]) -> list[AllowedSet]:
        """The allowed set before each of ``token_ids``, advancing through them (they must all be allowed)."""
        out = []
        for tok in token_ids:
            out.append(self.allowed())
            self.advance(tok)
        return out


def allowed_masks(sets: Sequence[AllowedSet], vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[len(sets), vocab_size]`` bool masks, or float32 logit offsets (:meth:`AllowedSet.offsets`) when a set
    carries a ``bias``; equal sets share one computation."""
    biased = any(s.bias for s in sets)
    cache: dict[AllowedSet, torch.Tensor] = {}
    rows = []
    for s in sets:
        m = cache.get(s)
        if m is None:
            m = cache[s] = s.offsets(vocab_size) if biased else s.mask(vocab_size)
        rows.append(m)
    if not rows:
        return torch.zeros((0, vocab_size), dtype=torch.bool, device=device)
    return torch.stack(rows).to(device)
