"""Line segmentation on token ids (prmfast.lines), with a byte-level BPE trained here."""
import random

import pytest

from prmfast.lines import comment_flags, prefix_token_count, segment, token_texts
from prmfast.models import encode, train_tokenizer

CORPUS = [
    "def f(xs):\n    xs = [x for x in xs if x > 3]\n    xs = sorted(xs)\n    return sum(xs)\n\n\n",
    "class A:\n    \"\"\"Doc.\"\"\"\n\n    def g(self):\n        # comment\n        return 1\n\n",
    "for i in range(10):\n    if i % 2:\n        print(i)\n\n\n\n",
] * 20

TRICKY = [
    "x = 1\n\n\ny = 2\n",
    "a = 1\r\nb = 2\r\n\r\nc = 3",
    "# comment\nx = 1\n    # indented comment\n",
    'def f():\n    """Doc\n    more\n    """\n    return 1\n',
    "    '''one line'''\n    '''x'''.join(y)\n",
    "    return xs",
    "s = 'héllo 日本 ✓'\nprint(s)\n",
    "\n",
    "\n\n\nx",
    "x\n   ",
    "    xs = [x for x in xs if x > 3]\n    xs = sorted(xs)\n    return sum(xs)",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=400)


class PieceTokenizer:
    """A stand-in whose token i decodes to pieces[i]; pins exact token boundaries."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return "".join(self.pieces[i] for i in ids)


def check_properties(ids, tok):
    text = tok.decode(ids)
    lines = segment(ids, tok)
    n = len(ids)
    assert len(lines.line_end) == n
    assert len(lines.spans) == len(lines.texts) == len(lines.is_comment)
    # spans partition the response; each ends at a line-end token and nowhere else
    bounds = [0] + [e for _, e in lines.spans]
    assert lines.spans == list(zip(bounds[:-1], bounds[1:])) and bounds[-1] == n
    assert [i for i in range(n) if lines.line_end[i]] == [e - 1 for _, e in lines.spans]
    assert all(s < e for s, e in lines.spans)
    norm = text.replace("\r\n", "\n")
    assert "\n".join(lines.texts) == norm.removesuffix("\n")
    # joining each span's tokens gives back its line text: the carry (text after the previous
    # line-end token's last newline) + the span's text = the line + "\n" + the next carry
    carry = ""
    for i, (s, e) in enumerate(lines.spans):
        span_text = carry + tok.decode(ids[s:e]).replace("\r\n", "\n")
        assert span_text.startswith(lines.texts[i])
        rest = span_text[len(lines.texts[i]):]
        if i < len(lines.spans) - 1:
            assert rest.startswith("\n") and "\n" not in rest[1:]
            assert "\n" in tok.decode(ids[e - 1:e])
            carry = rest[1:]
        else:
            assert rest in ("", "\n")
    return lines


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_on_cpu(tok, text):
    ids = encode(tok, text)
    assert tok.decode(ids) == text
    check_properties(ids, tok)


def test_random_texts_on_cpu(tok):
    rng = random.Random(0)
    frags = ["x", " = ", "1", "\n", "\n\n", "\r\n", "    ", "# c", '"""', "é", "日", "(", ")", ":",
             "return", " ", "\t", "'''"]
    for _ in range(200):
        text = "".join(rng.choice(frags) for _ in range(rng.randint(0, 30)))
        check_properties(encode(tok, text), tok)


def test_several_newlines_in_one_token_merge_on_cpu():
    pieces = ["x", " = 1", "\n\n", "y", "\n   ", " z", "\n"]
    lines = segment(list(range(len(pieces))), PieceTokenizer(pieces))
    assert lines.line_end == [False, False, True, False, True, False, True]
    assert lines.spans == [(0, 3), (3, 5), (5, 7)]
    assert lines.texts == ["x = 1\n", "y", "    z"]
    assert lines.is_comment == [False, False, False]
    assert prefix_token_count(lines, 0) == 0
    assert prefix_token_count(lines, 2) == 5
    with pytest.raises(ValueError):
        prefix_token_count(lines, 4)


def test_last_token_closes_the_last_line_on_cpu():
    lines = segment([0, 1, 2], PieceTokenizer(["a", "\n", "b)"]))
    assert lines.line_end == [False, True, True]
    assert lines.texts == ["a", "b)"]
    lines = segment([0, 1], PieceTokenizer(["a", "\n)"]))   # newline then code in the last token
    assert lines.spans == [(0, 2)] and lines.texts == ["a\n)"]
    assert segment([], PieceTokenizer([])) == segment([], PieceTokenizer([]))
    assert segment([], PieceTokenizer([])).spans == []


def test_crlf_on_cpu():
    lines = segment([0, 1, 2, 3], PieceTokenizer(["a", "\r", "\n", "b\r\n"]))
    assert lines.texts == ["a", "b"]
    assert lines.line_end == [False, False, True, True]


def test_comment_lines_on_cpu(tok):
    text = ('    """Docstring\n    over lines\n    """\n    # a comment\n\n    x = "#"\n'
            "    '''one'''\n    '''a'''.join(x)\n    y = \"\"\"not a docstring\"\"\"\n    return x")
    lines = segment(encode(tok, text), tok)
    by_text = dict(zip(lines.texts, lines.is_comment))
    assert by_text['    """Docstring'] and by_text["    over lines"] and by_text['    """']
    assert by_text['    x = "#"'] is False
    assert by_text["    '''one'''"] is True
    assert by_text["    '''a'''.join(x)"] is False
    assert by_text['    y = """not a docstring"""'] is False
    assert by_text["    return x"] is False
    # the blank line merges into the comment line before it (both comments: still a comment)
    assert lines.is_comment[lines.texts.index("    # a comment\n")] is True
    assert comment_flags("x\n\n# c\ny") == [False, True, True, False]


def test_split_utf8_characters_on_cpu(tok):
    ids = encode(tok, "s = '日本'\n")
    pieces = token_texts(ids, tok)
    assert "".join(pieces) == "s = '日本'\n"
    assert len(ids) > len("s = '日本'\n")          # the CJK characters span several tokens
    assert "\ufffd" not in "".join(pieces)


def test_comment_flags_after_a_string_opened_mid_line():
    # the closing quotes of x's string are code, not a docstring's start, and so is y = 1
    assert comment_flags('x = """a\n"""\ny = 1') == [False, False, False]
    assert comment_flags('x = f("""a\n  b""")\n# c\n"""doc\nmore"""\nz') == [
        False, False, True, True, True, False]
    # text that stops tokenizing (an unfinished docstring, bad indentation): line by line
    assert comment_flags('x = 1\n"""doc\nmore') == [False, True, True]
    assert comment_flags('    x = 1\n  y = 2\n    # c\n') == [False, False, True, True]
