"""Response -> lines -> token spans, line ends and comment flags (docs/design.md, "Tasks, lines
and labels").

One segmentation serves labelling, PRM training and RL, so a line's label, its PRM score and its
dense reward all sit on the same token: the token that holds the line's newline.

Rules, over the response's token ids y_0..y_{n-1}:
- Text is attributed to tokens by incremental decoding, so a token that holds part of a multi-byte
  UTF-8 character gets its text when the character completes (newlines are ASCII and are never
  split). "\\r\\n" counts as one newline; the "\\r" is dropped from line texts.
- A token holding at least one newline is a *line-end token*; the response's last token is one
  too (it closes the last line whether or not it ends with a newline).
- Each line-end token ends exactly one line, so labels never collide. When a token holds several
  newlines ("\\n\\n", "\\n)\\n"), the lines that end inside it merge into the line that the
  token's first newline ends: that line's text keeps the inner newlines, e.g. "x = 1\\n".
- Text after a token's last newline (the next line's indentation, as in "\\n   ") belongs to the
  next line's text, while the token itself belongs to the span of the line it ends. The last
  token's line runs to the end of the text, minus one final newline; so "\\n".join(texts) gives
  back the response text (CRLF as LF) without its final newline.
- Spans partition the response: line i covers tokens [spans[i][0], spans[i][1]) and its line-end
  token is spans[i][1] - 1.
- A line is a comment line when every physical line in it is blank, a `#` comment, or part of a
  docstring (a statement that is only a triple-quoted string, possibly over several lines; not an
  f-string). Lines end only at "\n", but a lone "\r" (no "\n" after it) is a line break to
  Python, so "# c\rx = 1" holds code and is no comment line.

An empty response has no lines.
"""
from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass

_QUOTES = ('"""', "'''")
_CONTINUATIONS = ("\\\n", "\\\r\n")       # a backslash ending a line (in a string too)
_BREAKS = (tokenize.NEWLINE, tokenize.NL)
_LAYOUT = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


@dataclass
class Lines:
    line_end: list[bool]          # per response token: this token closes a line
    spans: list[tuple[int, int]]  # per line: response token range [start, end)
    texts: list[str]              # per line: its text (without the closing newline)
    is_comment: list[bool]        # per line: comment-only or blank (docstring lines too)


def segment(token_ids: list[int], tokenizer) -> Lines:
    """Segment a response given as token ids (prompt excluded) into lines."""
    pieces = token_texts(token_ids, tokenizer)
    n = len(pieces)
    line_end = ["\n" in p for p in pieces]
    if n:
        line_end[-1] = True
    text = "".join(pieces)
    spans, texts = [], []
    start_tok, start_char, pos = 0, 0, 0
    for i, piece in enumerate(pieces):
        pos += len(piece)
        if not line_end[i]:
            continue
        stop = text.rfind("\n", pos - len(piece), pos)
        if stop < 0 or (i == n - 1 and stop < pos - 1):
            stop = pos                  # the last line runs to the end of the response
        texts.append(_strip_cr(text[start_char:stop]))
        spans.append((start_tok, i + 1))
        start_tok, start_char = i + 1, stop + 1
    flags = comment_flags(text)
    is_comment, phys = [], 0
    for t in texts:
        k = t.count("\n") + 1
        is_comment.append(all(flags[phys:phys + k]))
        phys += k
    return Lines(line_end, spans, texts, is_comment)


def prefix_token_count(lines: Lines, m: int) -> int:
    """Number of response tokens in y(<=m), the prefix of the first m lines (0 <= m <= #lines)."""
    if not 0 <= m <= len(lines.spans):
        raise ValueError(f"m={m} is outside 0..{len(lines.spans)}")
    return lines.spans[m - 1][1] if m else 0


def token_texts(token_ids: list[int], tokenizer) -> list[str]:
    """The text each token adds to the decoded response ([n] strings; they join to the whole).

    Decodes a sliding window (one complete token of left context, which keeps SentencePiece's
    leading spaces right); a token that completes a split UTF-8 character carries the character,
    and bytes that never complete one go to the last token. Special tokens add no text.
    """
    pieces: list[str] = []
    prefix, anchor = 0, 0           # window start; token after the last complete one
    emitted, now = "", ""           # window text already attributed; window text so far
    for i in range(len(token_ids)):
        now = _decode(tokenizer, token_ids[prefix:i + 1])
        stable = now.rstrip("\ufffd")
        grew = stable.startswith(emitted)
        pieces.append(stable[len(emitted):] if grew else "")
        emitted = stable if grew else emitted
        if stable == now:           # the text is complete here: slide the window
            prefix, anchor = anchor, i + 1
            emitted = now = _decode(tokenizer, token_ids[prefix:i + 1])
    if pieces:
        pieces[-1] += now[len(emitted):]
    return pieces


def comment_flags(text: str) -> list[bool]:
    """Per physical line of `text` (split on newlines): blank, `#` comment or docstring line.

    Python's tokenizer finds the strings, so the closing quotes of a multi-line string opened
    mid-line are code, not a docstring's start. From where the text stops tokenizing (an
    unfinished response, bad indentation) a line-by-line scan takes over. Without a triple
    quote or a backslash continuation (which a single-quoted string may span) the scan is exact,
    and 30x cheaper than the tokenizer (3 against 100 us a response).
    A line holding lone "\r"s (line breaks to Python) is a comment line only if each of its
    parts is one."""
    if "\r" in text.replace("\r\n", ""):
        parts = [line.split("\r") for line in text.replace("\r\n", "\n").split("\n")]
        flags = iter(comment_flags("\n".join(p for line in parts for p in line)))
        return [all([next(flags) for _ in line]) for line in parts]
    if not any(mark in text for mark in _QUOTES + _CONTINUATIONS):
        return _scan_flags(text.split("\n"))
    n = text.count("\n") + 1
    toks, complete = [], True
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            toks.append(tok)
    except (tokenize.TokenError, SyntaxError):     # IndentationError is a SyntaxError
        complete = False
    # rows (1-based) the tokens cover completely: all of them, or up to the last line break
    done = n if complete else max((t.end[0] for t in toks if t.type in _BREAKS), default=0)
    flags = [True] * n
    stream = [t for t in toks if t.type not in (tokenize.COMMENT, tokenize.NL)]
    for i, tok in enumerate(stream):
        if tok.type in _LAYOUT:
            continue
        docstring = (tok.type == tokenize.STRING and _triple_quoted(tok.string)
                     and (i == 0 or stream[i - 1].type in _LAYOUT)
                     and (i + 1 == len(stream) or stream[i + 1].type in _LAYOUT))
        if not docstring:
            for row in range(tok.start[0], min(tok.end[0], done) + 1):
                flags[row - 1] = False
    return flags[:done] + _scan_flags(text.split("\n")[done:])


def _scan_flags(raw_lines: list[str]) -> list[bool]:
    """comment_flags' fallback for text that does not tokenize: a docstring starts only where a
    line starts with a triple quote."""
    flags, closing = [], None      # closing: the quote that ends the open docstring
    for raw in raw_lines:
        s = _strip_cr(raw).strip()
        if closing is not None:
            flags.append(True)
            if closing in s:
                closing = None
            continue
        quote = _triple_quoted(s)
        if quote is not None:
            body = s.lstrip("rRuUbB")[3:]
            if quote not in body:
                closing = quote
            flags.append(closing is not None or body.rstrip().endswith(quote))
            continue
        flags.append(s == "" or s.startswith("#"))
    return flags


def _triple_quoted(s: str) -> str | None:
    """The triple quote that `s` starts with after a string prefix other than f (None if none);
    an f-string is never a docstring."""
    return next((q for q in _QUOTES if s.lstrip("rRuUbB").startswith(q)), None)


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _strip_cr(s: str) -> str:
    return s.replace("\r\n", "\n").removesuffix("\r")
