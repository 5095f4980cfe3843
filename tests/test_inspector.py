"""The line inspector's page (prmfast.inspector.page) in a real headless browser: every line
with its values and colours, the filters, no console errors, nothing loaded from the network.
The page of a real run (the smoke pipeline) is checked in tests/rl/test_pipeline.py."""
import random
import re

import pytest

from prmfast.inspector import KEYS, page
from tests.browser import Responses, load_page, needs_chromium

MODELS = ("sft", "rl_baseline", "rl_prm")
SOURCES = ("test sample", "collect ckpt_0004", "RL iteration 8")
LABEL_RGB = {1: "rgb(60, 170, 90)", -1: "rgb(215, 60, 60)", 0: "rgb(235, 235, 235)"}
TEXTS = ["    xs = [x for x in xs if x < 3]\n", "    return '</script><b>&amp;</b>'\n",
         "    # a comment & <i>not html</i>\n", "\n", "    y = {'a': \"b\"}  # \u00e9\u4e2d\n"]


def random_responses(seed: int, n: int = 12) -> list[dict]:
    """Responses as line_table returns them, with random values (None: unknown)."""
    rng = random.Random(seed)

    def value(key):
        if rng.random() < 0.3:
            return None
        if key in ("label", "oracle"):
            return rng.choice([-1, 0, 1])
        return round(rng.uniform(-3, 3) if key == "advantage" else rng.uniform(-1, 1), 4)

    return [{"model": rng.choice(MODELS), "source": rng.choice(SOURCES),
             "task": f"synthetic/test/0/{rng.randrange(4)}", "prompt": "# Write f(xs):\n<&>",
             "passed": rng.random() < 0.4,
             "lines": [{"text": rng.choice(TEXTS), "comment": False,
                        **{k: value(k) for k in KEYS}} for _ in range(rng.randint(0, 6))]}
            for _ in range(n)]


def fmt(key, v):
    if v is None:
        return ""
    if key in ("label", "oracle"):
        return {1: "+1", -1: "-1", 0: "0"}[v]
    return f"{v:.2f}"


def rgb(style: str) -> tuple[int, int, int] | None:
    found = re.search(r"background(?:-color)?: rgb\((\d+), (\d+), (\d+)\)", style)
    return tuple(map(int, found.groups())) if found else None


@needs_chromium
@pytest.mark.parametrize("seed", [1, 2])
def test_every_line_shows_its_values_and_colours(tmp_path, seed):
    responses = random_responses(seed)
    path = tmp_path / "inspect.html"
    path.write_text(page(responses, "t <&>"))
    dom, console = load_page(path)
    assert console == []
    boxes = Responses(dom).boxes
    assert len(boxes) == len(responses)
    max_adv = max((abs(l["advantage"]) for r in responses for l in r["lines"]
                   if l["advantage"] is not None), default=0)
    for box, r in zip(boxes, responses):
        assert box["attrs"]["data-model"] == r["model"]
        assert "hidden" not in box["attrs"]
        assert len(box["rows"]) == len(r["lines"])
        for cells, line in zip(box["rows"], r["lines"]):
            assert cells[-1][1] == line["text"].rstrip("\n")       # text, not markup
            for (cls, text, style), key in zip(cells, KEYS):
                v = line[key]
                assert cls == f"v {key}" and text == fmt(key, v)
                if v is None:
                    assert rgb(style) is None
                elif key in ("label", "oracle"):
                    assert style == f"background: {LABEL_RGB[v]};"
                else:                   # red below 0, white at 0, green above, full at the scale
                    red, green, _ = rgb(style)
                    x = v / (max_adv if key == "advantage" else 1)
                    assert (green > red) == (x > 0) or x == 0
                    if abs(x) >= 1:
                        assert (red, green) in ((60, 170), (215, 60))
            assert rgb(cells[-1][2]) == (None if line["label"] is None else rgb(
                "background: " + {1: "rgb(167, 217, 181)", -1: "rgb(237, 167, 167)",
                                  0: "rgb(246, 246, 246)"}[line["label"]]))


@needs_chromium
def test_filters_and_colour_key_from_the_address(tmp_path):
    responses = random_responses(3, n=30)
    path = tmp_path / "inspect.html"
    path.write_text(page(responses, "filters"))
    want = responses[0]
    dom, console = load_page(path, f"model={want['model']}&task={want['task']}&passed=fail"
                                   "&colour=oracle")
    assert console == []
    parsed = Responses(dom)
    shown = ["hidden" not in b["attrs"] for b in parsed.boxes]
    expected = [r["model"] == want["model"] and r["task"] == want["task"] and not r["passed"]
                for r in responses]
    assert shown == expected
    assert parsed.count_text == f"showing {sum(expected)} of {len(responses)} responses"
    for box, r in zip(parsed.boxes, responses):       # the code column now follows the oracle
        for cells, line in zip(box["rows"], r["lines"]):
            assert (rgb(cells[-1][2]) is None) == (line["oracle"] is None)


def test_page_is_self_contained_and_escapes_its_data():
    html = page(random_responses(4), "<title>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert html.count("</script>") == 2            # the data's "</script>" is escaped
    assert "<title>&lt;title&gt;</title>" in html


def test_html_of_a_folder_without_config_or_model_says_what_is_missing(tmp_path):
    from prmfast.report import main
    with pytest.raises(SystemExit, match="config.json' does not exist: --html reads the run's"):
        main([str(tmp_path), "--html"])
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"no finished model under .* \(run the sft stage"):
        main([str(tmp_path), "--html"])
