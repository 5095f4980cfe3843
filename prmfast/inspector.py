"""The line-level inspector: DIR/inspect.html, one self-contained page (inline CSS and JS, no
network) that shows sampled responses line by line with what each part of the method said
about every line.

    write_inspector(cfg, DIR)     gather the run's responses, score them, write DIR/inspect.html
    python -m prmfast.report DIR --html     the same from the command line

Responses (each with its model, source and task; the page filters by all three):
    test samples    eval.inspect_samples responses per task on the first eval.inspect_tasks test
                    tasks from every finished model (sft, rl_baseline, rl_prm, other rl_*), at
                    eval.temperature; cached in DIR/inspect/<model>.jsonl
    collect         DIR/prm_data/labels.jsonl: rl_baseline checkpoints' responses with their
                    binary-search labels
    RL iteration    DIR/rl_*/rollouts.jsonl: the last PPO iteration's responses with the mean
                    advantage of each line's tokens and its line reward

Per line (a value is left empty where its source does not have it):
    label      binary-search label (+1 recoverable, -1 not, 0 comment / blank); collect only
    PRM        the run's PRM (DIR/prm/model) score at the line's end, for every response
    oracle     the synthetic suite's oracle label (+1 before its first error, -1 from it, 0
               comment), for every response of a synthetic run
    advantage  the PPO advantage (mean over the line's tokens); RL iteration only
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from prmfast.errors import StageError

PAGE = "inspect.html"
KEYS = ("label", "prm", "oracle", "advantage")


def gather(cfg, run_dir: Path) -> list[dict]:
    """The run's responses as records: model, source, task_id, prompt, prompt_ids,
    response_ids, passed, and where known oracle_m_star (1-based segmented line), labels (per
    line), advantage and line_reward (per line). StageError when the run has no model yet."""
    from prmfast.eval.stage import model_dirs
    from prmfast.runio import read_jsonl
    run_dir = Path(run_dir)
    models = model_dirs(run_dir)
    if not models:
        raise StageError(f"no finished model under {run_dir} to inspect (run the sft stage "
                         "first)")
    records = _test_samples(cfg, run_dir, models) if cfg.eval.inspect_tasks else []
    for r in read_jsonl(run_dir / "prm_data" / "labels.jsonl"):
        records.append({**_common(r), "model": "rl_baseline",
                        "source": f"collect {r['checkpoint']}", "labels": r["labels"]})
    rollouts = []
    for folder in sorted(run_dir.glob("rl_*")):
        for r in read_jsonl(folder / "rollouts.jsonl"):
            rollouts.append({**_common(r), "model": folder.name, "response": r["response"],
                             "lines": r["lines"], "source": f"RL iteration {r['step']}",
                             "advantage": r["advantage"], "line_reward": r["line_reward"]})
    _add_oracle(cfg, rollouts)
    return records + rollouts


def _common(row: dict) -> dict:
    return {k: row.get(k) for k in ("task_id", "prompt", "prompt_ids", "response_ids", "passed",
                                     "oracle_m_star")}


def _test_samples(cfg, run_dir: Path, models: dict[str, Path]) -> list[dict]:
    """eval.inspect_samples responses per task of the first eval.inspect_tasks test tasks from
    each model (collect.sample_responses: executed, with the oracle's first error), cached."""
    from prmfast.data import split_tasks
    from prmfast.labeling.collect import sample_responses
    from prmfast.labeling.policy import Policy, make_sandbox
    from prmfast.runio import read_jsonl
    tasks = split_tasks(cfg, "test")[:cfg.eval.inspect_tasks]
    by_id = {t.task_id: t for t in tasks}
    caches = {name: run_dir / "inspect" / f"{name}.jsonl" for name in models}
    missing = [name for name, cache in caches.items() if not cache.exists()]
    if missing:
        with make_sandbox(cfg) as sandbox:
            for name in missing:
                sample_responses(Policy(models[name], cfg, sandbox), tasks,
                                 cfg.eval.inspect_samples, cfg, caches[name],
                                 cfg.eval.temperature)
    return [{**_common(r), "prompt": by_id[r["task_id"]].prompt, "model": name,
             "source": "test sample"} for name, cache in caches.items()
            for r in read_jsonl(cache) if r["task_id"] in by_id]


def _add_oracle(cfg, records: list[dict]) -> None:
    """oracle_m_star of RL-iteration records of a synthetic run (training tasks), in place."""
    if cfg.data.name != "synthetic" or not records:
        return
    from prmfast.data import split_tasks
    from prmfast.data.synthetic import first_error_lines
    from prmfast.labeling.search import oracle_m_star
    by_id = {t.task_id: t for t in split_tasks(cfg, "train")}
    failed = [r for r in records if not r["passed"] and r["task_id"] in by_id]
    errors = first_error_lines([by_id[r["task_id"]] for r in failed],
                               [r["response"] for r in failed]) if failed else []
    for r, err in zip(failed, errors):
        r["oracle_m_star"] = oracle_m_star(r["lines"], False, err)


def line_table(cfg, run_dir: Path, records: list[dict], tokenizer) -> list[dict]:
    """The page's data: per record model, source, task, prompt, passed and `lines`, a list of
    {"text", "comment", "label", "prm", "oracle", "advantage"} (None where unknown)."""
    from prmfast.labeling.search import labels_from_line
    from prmfast.lines import segment
    segmented = [segment(list(r["response_ids"]), tokenizer) for r in records]
    prm_scores = _prm_scores(run_dir, records, segmented)
    synthetic = cfg.data.name == "synthetic"
    out = []
    for i, (r, ln) in enumerate(zip(records, segmented)):
        n = len(ln.texts)
        oracle = None
        if synthetic and (r["passed"] or r.get("oracle_m_star") is not None):
            oracle = labels_from_line(ln.is_comment, None if r["passed"] else r["oracle_m_star"])
        columns = {"label": r.get("labels"), "prm": prm_scores[i] if prm_scores else None,
                   "oracle": oracle, "advantage": r.get("advantage")}
        lines = [{"text": text, "comment": bool(ln.is_comment[m]),
                  **{k: (None if v is None or m >= len(v) else round(float(v[m]), 4))
                     for k, v in columns.items()}} for m, text in enumerate(ln.texts)]
        out.append({"model": r["model"], "source": r["source"], "task": r["task_id"],
                    "prompt": r.get("prompt") or "", "passed": bool(r["passed"]),
                    "lines": lines})
    return out


def _prm_scores(run_dir: Path, records: list[dict], segmented) -> list[list[float]] | None:
    """The run's PRM scores per line of every record, or None without a finished PRM."""
    folder = Path(run_dir) / "prm" / "model"
    if not (folder.parent / "DONE").exists() or not records:
        return None
    from prmfast.prm import load_prm
    from prmfast.prm.data import example
    prm = load_prm(folder, device="cpu")
    return prm.predict([example(r["prompt_ids"], r["response_ids"], ln.spans, [0.0] * len(ln.spans))
                        for r, ln in zip(records, segmented)])


def write_inspector(cfg, run_dir: str | Path) -> Path:
    """Gather, score and write DIR/inspect.html. Returns its path."""
    from transformers import AutoTokenizer
    run_dir = Path(run_dir)
    records = gather(cfg, run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "sft" / "model")
    path = run_dir / PAGE
    path.write_text(page(line_table(cfg, run_dir, records, tokenizer),
                         f"prmfast line inspector: {run_dir.name}"))
    return path


def page(responses: list[dict], title: str) -> str:
    """The self-contained HTML page of line_table's responses."""
    data = json.dumps(responses, separators=(",", ":")).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__STYLE__", _STYLE).replace("__SCRIPT__", _SCRIPT)
            .replace("__DATA__", data))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>__STYLE__</style></head>
<body>
<h1>__TITLE__</h1>
<div id="controls">
 <label>model <select id="f-model"><option value="">all</option></select></label>
 <label>source <select id="f-source"><option value="">all</option></select></label>
 <label>task <select id="f-task"><option value="">all</option></select></label>
 <label>outcome <select id="f-passed"><option value="">all</option>
  <option value="pass">passed</option><option value="fail">failed</option></select></label>
 <label>colour code by <select id="f-colour">
  <option value="label">binary-search label</option><option value="prm">PRM score</option>
  <option value="oracle">oracle label</option><option value="advantage">PPO advantage</option>
 </select></label>
 <span id="count"></span>
</div>
<div id="legend">
 <b>Columns per line:</b> <span class="k">L</span> binary-search label,
 <span class="k">P</span> PRM score, <span class="k">O</span> oracle label,
 <span class="k">A</span> PPO advantage (mean over the line's tokens); empty: not known for this
 response's source.
 <span class="sw" style="background:rgb(60,170,90)"></span> +1 / high
 <span class="sw" style="background:rgb(235,235,235)"></span> 0 (comment, blank)
 <span class="sw" style="background:rgb(215,60,60)"></span> &minus;1 / low.
 Scores and advantages shade from red (negative) through white to green (positive), full colour
 at &plusmn;1 (PRM) or at the page's largest |advantage| (<span id="adv-scale"></span>).
 The code column is coloured by the key chosen above.
</div>
<div id="responses"></div>
<script type="application/json" id="data">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 8px}
#controls{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin-bottom:6px}
#controls select{max-width:260px}
#legend{font-size:12px;margin:6px 0 12px;line-height:1.8}
.sw{display:inline-block;width:14px;height:12px;border:1px solid #999;vertical-align:middle}
.k{font-family:monospace;font-weight:bold}
.resp{background:#fff;border:1px solid #ccc;border-radius:4px;margin:0 0 12px;padding:6px 8px}
.head{font-size:13px;margin-bottom:4px}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.prompt{font-size:12px}.prompt pre{margin:2px 0;color:#555}
table.lines{border-collapse:collapse;font-family:monospace;font-size:12px}
table.lines th{font-weight:normal;color:#666;padding:0 4px;text-align:left}
table.lines td{padding:1px 4px;vertical-align:top}
td.v{min-width:3.2em;text-align:right;border-right:1px solid #fff;white-space:nowrap}
td.code{min-width:420px;white-space:pre-wrap;word-break:break-all}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var maxAdv = 0;
  data.forEach(function (r) { r.lines.forEach(function (l) {
    if (l.advantage !== null) { maxAdv = Math.max(maxAdv, Math.abs(l.advantage)); } }); });
  document.getElementById("adv-scale").textContent = maxAdv ? maxAdv.toFixed(3) : "none";
  // [r, g, b] of a value: labels in three colours, scores shaded red - white - green.
  function rgb(key, v) {
    if (key === "label" || key === "oracle") {
      return v > 0 ? [60, 170, 90] : (v < 0 ? [215, 60, 60] : [235, 235, 235]);
    }
    var scale = key === "advantage" ? maxAdv : 1;
    var x = Math.max(-1, Math.min(1, scale ? v / scale : 0));
    return x >= 0 ? [255 - 195 * x, 255 - 85 * x, 255 - 165 * x]
                  : [255 + 40 * x, 255 + 195 * x, 255 + 195 * x];
  }
  // CSS colour of a value ("" when unknown); pale: mixed with white, for the code column.
  function colour(key, v, pale) {
    if (v === null) { return ""; }
    var c = rgb(key, v).map(function (x) { return Math.round(pale ? 255 - 0.45 * (255 - x) : x); });
    return "rgb(" + c.join(",") + ")";
  }
  function fmt(key, v) {
    if (v === null) { return ""; }
    if (key === "label" || key === "oracle") { return v > 0 ? "+1" : (v < 0 ? "-1" : "0"); }
    return v.toFixed(2);
  }
  function fill(id, values) {
    var sel = document.getElementById(id);
    values.forEach(function (v) {
      var o = document.createElement("option"); o.value = v; o.textContent = v;
      sel.appendChild(o);
    });
  }
  function unique(field) {
    var seen = {}; var out = [];
    data.forEach(function (r) { if (!seen[r[field]]) { seen[r[field]] = 1; out.push(r[field]); } });
    return out;
  }
  fill("f-model", unique("model"));
  fill("f-source", unique("source"));
  fill("f-task", unique("task").sort());
  var KEYS = ["label", "prm", "oracle", "advantage"];
  var root = document.getElementById("responses");
  var nodes = data.map(function (r, i) {
    var div = document.createElement("div");
    div.className = "resp"; div.id = "r" + i;
    div.dataset.model = r.model; div.dataset.source = r.source; div.dataset.task = r.task;
    div.dataset.passed = r.passed ? "pass" : "fail";
    var head = document.createElement("div"); head.className = "head";
    var verdict = document.createElement("span");
    verdict.className = r.passed ? "pass" : "fail";
    verdict.textContent = r.passed ? "passed" : "failed";
    head.appendChild(verdict);
    head.appendChild(document.createTextNode("  " + r.model + " \u00b7 " + r.source + " \u00b7 " +
                                             r.task));
    div.appendChild(head);
    var det = document.createElement("details"); det.className = "prompt";
    var sum = document.createElement("summary"); sum.textContent = "prompt";
    var pre = document.createElement("pre"); pre.textContent = r.prompt;
    det.appendChild(sum); det.appendChild(pre); div.appendChild(det);
    var table = document.createElement("table"); table.className = "lines";
    var hr = document.createElement("tr");
    ["L", "P", "O", "A", "code"].forEach(function (t) {
      var th = document.createElement("th"); th.textContent = t; hr.appendChild(th);
    });
    table.appendChild(hr);
    r.lines.forEach(function (l) {
      var tr = document.createElement("tr"); tr.className = "line";
      KEYS.forEach(function (k) {
        var td = document.createElement("td"); td.className = "v " + k;
        td.textContent = fmt(k, l[k]); td.style.background = colour(k, l[k]);
        tr.appendChild(td);
      });
      var code = document.createElement("td"); code.className = "code";
      code.textContent = l.text.replace(/\n$/, "");
      tr.appendChild(code);
      table.appendChild(tr);
    });
    div.appendChild(table);
    root.appendChild(div);
    return div;
  });
  var filters = {model: "f-model", source: "f-source", task: "f-task", passed: "f-passed"};
  function apply() {
    var key = document.getElementById("f-colour").value;
    var shown = 0;
    nodes.forEach(function (div, i) {
      var ok = Object.keys(filters).every(function (f) {
        var want = document.getElementById(filters[f]).value;
        return !want || div.dataset[f] === want;
      });
      div.hidden = !ok;
      if (ok) { shown += 1; }
      var rows = div.querySelectorAll("tr.line");
      data[i].lines.forEach(function (l, m) {
        rows[m].querySelector("td.code").style.background = colour(key, l[key], true);
      });
    });
    document.getElementById("count").textContent =
      "showing " + shown + " of " + nodes.length + " responses";
    var state = [];
    Object.keys(filters).concat(["colour"]).forEach(function (f) {
      var v = document.getElementById(f === "colour" ? "f-colour" : filters[f]).value;
      if (v) { state.push(f + "=" + encodeURIComponent(v)); }
    });
    history.replaceState(null, "", "#" + state.join("&"));
  }
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("="); if (p.length !== 2) { return; }
    var id = p[0] === "colour" ? "f-colour" : filters[p[0]];
    var sel = id && document.getElementById(id);
    if (sel) { sel.value = decodeURIComponent(p[1]); }
  });
  Object.keys(filters).concat(["colour"]).forEach(function (f) {
    document.getElementById(f === "colour" ? "f-colour" : filters[f])
      .addEventListener("change", apply);
  });
  apply();
})();
"""
