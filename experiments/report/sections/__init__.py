"""The report's sections, one module each. A section is a function that returns its markdown
lines (``[]`` when its inputs hold nothing for it) and writes its figures and their CSVs through
:class:`~experiments.report.plotting.Figures`; it reads the study's tables, never recomputing a
metric they hold, and formats its cells with :mod:`experiments.report.format`.

The document (:func:`experiments.report.markdown.write_report`) puts them in this order:

- :mod:`.headline`: the headline ratios with their seed intervals (every seeds study);
- :mod:`.compare`: several studies side by side;
- per study, :data:`PER_STUDY`: its own section (:mod:`.study`: :mod:`.budget`,
  :mod:`.iso_throughput`, :mod:`.context`, :mod:`.extrapolation`, :mod:`.latency`,
  :mod:`.heatmap`), the profile sets (:mod:`.engines`), then the dependent studies' sections
  (:mod:`.mismatch`, :mod:`.tokens`, :mod:`.load`, :mod:`.batch`, :mod:`.scheduler`,
  :mod:`.prefix`, :mod:`.sensitivity`, :mod:`.seeds`);
- :func:`.context.reject_section`: the headline ratios under ``clip`` and ``reject``;
- :mod:`.runs`: the replay runs; :mod:`.phase`: the phase characterization.

To add a section of a study: write ``sections/<name>.py`` with ``<name>_section(figs, s)`` and
add it to :data:`PER_STUDY` (or to :data:`.study.SUBSECTIONS` for a subsection of the study's
own section).
"""

from __future__ import annotations

from experiments.report.plotting import Figures
from experiments.report.sections.batch import batch_section
from experiments.report.sections.engines import engines_section
from experiments.report.sections.load import load_section
from experiments.report.sections.mismatch import mismatch_section
from experiments.report.sections.prefix import prefix_section
from experiments.report.sections.scheduler import scheduler_section
from experiments.report.sections.seeds import seeds_section
from experiments.report.sections.sensitivity import sensitivity_section
from experiments.report.sections.study import study_section
from experiments.report.sections.tokens import token_section


def _of_study(section):
    """A section that reads one study, called as the others are (with every study)."""
    return lambda figs, s, studies: section(figs, s)


#: the sections of each study, in order: (figs, study, every study of the inputs) -> lines
PER_STUDY = (
    *map(_of_study, (study_section, engines_section, mismatch_section, token_section,
                     load_section, batch_section, scheduler_section, prefix_section)),
    sensitivity_section,
    _of_study(seeds_section),
)  # fmt: skip


def study_sections(figs: Figures, s: dict, studies: list[dict]) -> list[str]:
    """Every section study ``s`` has tables for (``studies``: all of the inputs)."""
    md: list[str] = []
    for section in PER_STUDY:
        md += section(figs, s, studies)
    return md


def study_extra_sections(figs: Figures, s: dict, studies: list[dict]) -> list[str]:
    """The dependent studies' sections of ``s`` (every per-study section after the profile
    sets')."""
    md: list[str] = []
    for section in PER_STUDY[2:]:
        md += section(figs, s, studies)
    return md
