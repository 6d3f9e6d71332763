"""The papers' figures the reports print (experiments/published.toml) still agree with ../shared/REFERENCES.md
(section 7; section 8 for the precision lab)."""

from __future__ import annotations

import re

from cnnlab.experiments import EXPERIMENTS
from cnnlab.experiments.published import published


def test_every_experiment_has_its_published_figures_with_a_source():
    for name in EXPERIMENTS:
        p = published(name)
        assert p["source"] and len(p) > 1


PRECISION = ("rounding", "half", "bfloat16", "binary")  # read against section 8 (numerical precision)


def test_every_published_number_is_in_references_section_7_or_8(shared_dir):
    text = (shared_dir / "REFERENCES.md").read_text(encoding="utf-8")
    sections = {7: text[text.index("## 7.") : text.index("## 8.")], 8: text[text.index("## 8.") :]}
    for name in EXPERIMENTS:
        k = 8 if name in PRECISION else 7
        for key, value in published(name).items():
            # A section reference ("Sec. 4.1", "Sec. 3.1-3.2") is not a figure.
            figures = re.sub(r"Sec\. [\d.\-]+", "", value)
            for number in re.findall(r"\d+\.\d+", figures):
                assert number in sections[k], f"{name}.{key}: {number} is not in REFERENCES.md section {k}"
