"""What the model sees each turn under a deployment's context policy, and how much of it is cached.

The conversation is kept as segments (a phrase, a reply, a summary, a cut-off piece of one, a
retrieved chunk), each with an identity and a length in tokens. A turn's prompt is a list of
segments; the previous turn left its prompt and reply in the prefix cache, so the tokens a turn may
reuse are the longest common prefix of the two, segment by segment: equal identity, equal length.
Dropping the front of the history (a sliding window, truncation) or replacing it (a summary)
changes the prefix, and the cache is rebuilt from there.

Policies (sim.config.ContextSpec):
- full: all history; past the model's max context either the turn fails (`fail`, the engine's
  context_overflow) or the oldest history is cut so prompt + reply fit (`truncate`);
- window: the last `window_tokens` of history;
- summarize: all history, until it exceeds `every_tokens`; then a summary request (prompt: the
  history; reply: `summary_tokens`) replaces it;
- retrieve: the last `window_tokens` of history, then `chunks` retrieved chunks of `chunk_tokens`
  (new every turn, so never cached), then the new phrase.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sim.config import ContextSpec


@dataclass(frozen=True)
class Segment:
    key: tuple
    tokens: int


@dataclass(frozen=True)
class Prompt:
    segments: tuple[Segment, ...]
    context_tokens: int      # history (or its summary or window) in the prompt
    retrieved_tokens: int
    reusable_tokens: int     # prefix shared with what the previous request left cached
    tokens: int              # all of it: the history kept, the retrieved chunks, the new phrase

    @classmethod
    def alone(cls, key: tuple, tokens: int) -> Prompt:
        """A request with no history (a benchmark request, a background chat): one segment, nothing cached."""
        return cls((Segment(key, tokens),), 0, 0, 0, tokens)


def tail(segments: list[Segment], tokens: int) -> list[Segment]:
    """The last `tokens` tokens of `segments`; a segment cut short becomes a segment of its own."""
    kept, left = [], tokens
    for seg in reversed(segments):
        if left <= 0:
            break
        kept.append(seg if seg.tokens <= left else Segment(("cut", seg.key, left), left))
        left -= seg.tokens
    return kept[::-1]


def common_prefix_tokens(a, b, b_tokens: int | None = None) -> int:
    """Tokens of the longest common prefix of two segment tuples; `b_tokens`, when given, is all of b's.
    A turn's prompt most often begins with the whole of what the last request left cached: that is found
    by one tuple comparison (C, each history segment the same object as last turn's), so a conversation
    of n turns costs O(n) per turn in C, not in Python."""
    if b_tokens is not None and len(a) >= len(b) and a[:len(b)] == b:
        return b_tokens
    shared = 0
    for x, y in zip(a, b):
        if x is not y and x != y:
            break
        shared += x.tokens
    return shared


@dataclass
class Conversation:
    spec: ContextSpec
    max_context: int
    history: list[Segment] = field(default_factory=list)
    cached: tuple[Segment, ...] = ()     # what the last request left in the prefix cache
    cached_tokens: int = 0               # its tokens
    summaries: int = 0
    said_tokens: int = 0                 # everything said so far, whatever the model still sees
    history_tokens: int = 0              # the tokens of `history`, kept as it changes

    def _prompt(self, context: list[Segment], extra: list[Segment], new: list[Segment]) -> Prompt:
        segments = tuple(context + extra + new)
        context_tokens = self.history_tokens if context is self.history else sum(s.tokens for s in context)
        extra_tokens, new_tokens = sum(s.tokens for s in extra), sum(s.tokens for s in new)
        reusable = common_prefix_tokens(segments, self.cached, self.cached_tokens)
        return Prompt(segments, context_tokens, extra_tokens, reusable, context_tokens + extra_tokens + new_tokens)

    def prompt(self, turn: int, new_tokens: int, reply_tokens: int) -> Prompt:
        """The prompt for phrase `turn` of `new_tokens`, whose reply will be `reply_tokens` long."""
        spec, new = self.spec, [Segment(("human", turn), new_tokens)]
        context, extra = self.history, []
        if spec.policy in ("window", "retrieve"):
            context = tail(self.history, spec.window_tokens)
        if spec.policy == "retrieve":
            extra = [Segment(("retrieved", turn, i), spec.chunk_tokens) for i in range(spec.chunks)]
        if spec.policy == "full" and spec.on_overflow == "truncate" and self.max_context:
            room = self.max_context - new_tokens - reply_tokens
            if self.history_tokens > room:
                context = tail(self.history, max(0, room))
        return self._prompt(context, extra, new)

    def served(self, prompt: Prompt, reply_key: tuple | None, reply_tokens: int) -> None:
        """A request ended: its prompt (and reply, if it was given) is what the prefix cache now holds."""
        reply = (Segment(reply_key, reply_tokens),) if reply_key else ()
        self.cached = prompt.segments + reply
        self.cached_tokens = prompt.tokens + (reply_tokens if reply_key else 0)

    def said(self, turn: int, new_tokens: int, reply_tokens: int | None) -> None:
        """The phrase (and the reply, when the model gave one) join the history."""
        self.history.append(Segment(("human", turn), new_tokens))
        self.said_tokens += new_tokens
        self.history_tokens += new_tokens
        if reply_tokens is not None:
            self.history.append(Segment(("model", turn), reply_tokens))
            self.said_tokens += reply_tokens
            self.history_tokens += reply_tokens

    @property
    def wants_summary(self) -> bool:
        return self.spec.policy == "summarize" and self.history_tokens > self.spec.every_tokens

    def summary_prompt(self) -> Prompt:
        return self._prompt(self.history, [], [])

    def summarised(self) -> None:
        """A summary request succeeded: its reply replaces the history."""
        self.summaries += 1
        self.history = [Segment(("summary", self.summaries), self.spec.summary_tokens)]
        self.history_tokens = self.spec.summary_tokens
