"""The metric names a PromQL expression reads, and every expression of the rules and dashboards.

A small lexer, not a parser: Prometheus 2.42 (Debian 12) has no parse endpoint. It drops string
literals, label matchers `{...}`, ranges `[...]`, label lists after by/without/on/ignoring/
group_left/group_right, function names (an identifier followed by `(`), keywords and numbers;
what is left are metric names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = sorted((REPO / "alerts").glob("*.rules.yml"))
DASHBOARDS = sorted((REPO / "dashboards").glob("bgdb-*.json"))
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "atan2"}
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?")


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for m in _TOKEN.finditer(text):
        word = m.group(0)
        if m.group(1) or word.lower() in _KEYWORDS:
            continue  # a function call or a keyword
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # a duration or number suffix (5m, 1e3)
        names.add(word)
    return names


def rule_exprs(paths: list[Path] = RULES) -> dict[str, str]:
    """{alert or record name: expr} of every rule file."""
    out: dict[str, str] = {}
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out[rule.get("alert") or rule["record"]] = str(rule["expr"])
    return out


def recorded_names(paths: list[Path] = RULES) -> set[str]:
    names = set()
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def dashboard_queries(paths: list[Path] = DASHBOARDS) -> list[tuple[str, str, str, str]]:
    """(dashboard file, panel title, refId, expr) of every panel target."""
    out = []
    for path in paths:
        dash: dict[str, Any] = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["refId"], target["expr"]))
    return out


def used_names() -> dict[str, set[str]]:
    """{metric name: where it is used} over the rules and dashboards; recorded series count as
    used by the rules that read them, and their own inputs are what must be exported."""
    where: dict[str, set[str]] = {}
    for name, expr in rule_exprs().items():
        for metric in metric_names(expr):
            where.setdefault(metric, set()).add(f"rule {name}")
    for file, title, ref, expr in dashboard_queries():
        for metric in metric_names(expr):
            where.setdefault(metric, set()).add(f"{file} '{title}' {ref}")
    return where
