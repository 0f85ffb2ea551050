"""The collector's metric families and a text exposition writer for them (format 0.0.4).

client_python's generic path costs several microseconds per sample twice: building Metric and
Sample objects (label dicts), then generate_latest formatting every sample (sorting and escaping
labels, floatToGoString). With ~1,000 samples per scrape (200 agents x 4 per-agent families)
that was most of the exporter's CPU. Here a family is plain data: samples hold their label
pairs as one tuple, shared by all the families a row feeds, so the label text of a row is
rendered once. ``render`` writes what generate_latest writes for the same families (names,
HELP/TYPE lines, counters with _total), and ``to_metric`` gives client_python's objects for its
registry API (collect(), get_sample_value(), tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # (sample name, label pairs, value)


@dataclass
class Family:
    """One metric family: ``name`` is what the exposition shows (counters end in _total)."""

    name: str
    kind: str  # gauge, counter, histogram
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, labels: Labels = ()) -> None:
        self.samples.append((self.name, labels, value))


def _escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus reads it (+Inf, -Inf and NaN spelled its way)."""
    if math.isfinite(value):
        return repr(float(value))
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


# Label sets whose text render() keeps between calls: far more than a scrape has (~300 at the
# defaults), and when the set outgrows it (label values that keep changing) it starts over.
LABEL_CACHE_SIZE = 20_000


def render(families: Iterable[Family], label_text: dict[Labels, str] | None = None) -> bytes:
    """The text exposition of ``families``, as bytes. ``label_text``: a cache of rendered
    label sets to reuse across calls (most are the same at every scrape: per-agent, per-table,
    per-query labels), filled here."""
    out: list[str] = []
    append = out.append
    if label_text is None:
        label_text = {}  # a row's labels, rendered once for all its families
    elif len(label_text) > LABEL_CACHE_SIZE:
        label_text.clear()
    for fam in families:
        append(f"# HELP {fam.name} {_escape_help(fam.help)}\n# TYPE {fam.name} {fam.kind}\n")
        for name, labels, value in fam.samples:
            if labels:
                text = label_text.get(labels)
                if text is None:
                    text = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}"
                    label_text[labels] = text
            else:
                text = ""
            if value.__class__ is float and math.isfinite(value):
                append(f"{name}{text} {value!r}\n")
            else:
                append(f"{name}{text} {format_value(value)}\n")
    return "".join(out).encode("utf-8")


def to_metric(fam: Family) -> Metric:
    """The family as client_python's Metric (counters under their name without _total)."""
    base = fam.name
    if fam.kind == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    metric = Metric(base, fam.help, fam.kind)
    for name, labels, value in fam.samples:
        metric.add_sample(name, dict(labels), float(value))
    return metric
