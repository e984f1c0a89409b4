"""splitbench-report's bad inputs (collected by tests/test_bad_inputs.py): each gives one line
on stderr naming the file or key, exit 2, and writes nothing."""

_STUDY = (
    '{"study": {"name": "s"}, "model": {"name": "llama2-70b", "tp": 8}, '
    '"profiles": {"source": "reference"}, "slo": {"name": "paper"}}'
)

_HEAD = "task,trace,design,prompt_machines,token_machines,machines,rate,slo_met,slo_worst_ratio\n"
_ROW = "budget,t,d,,,1,{rate},True,0.5\n"


def _recorded(rows: int) -> str:
    """A study.json that records a ``rows``-row points.csv (as splitbench-study writes it)."""
    import json

    cols = {
        "task": "text",
        "trace": "text",
        "design": "text",
        "prompt_machines": "number",
        "token_machines": "number",
        "machines": "number",
        "rate": "number",
        "slo_met": "bool",
        "slo_worst_ratio": "number",
    }
    meta = {**json.loads(_STUDY), "tables": {"points": {"rows": rows, "columns": cols}}}
    return json.dumps(meta)


CASES = [
    {"id": "report-missing-folder", "argv": ["splitbench-report", "inputs=[{tmp}/nope]"],
     "expect": "no such folder", "files": {}, "exit": 2},
    {"id": "report-file-not-folder", "argv": ["splitbench-report", "inputs=[{tmp}/x.txt]"],
     "expect": "is a file", "files": {"x.txt": "x"}, "exit": 2},
    {"id": "report-not-a-study-or-run", "argv": ["splitbench-report", "inputs=[{tmp}/d]"],
     "expect": "holds no study.json", "files": {"d/readme.txt": "x"}, "exit": 2},
    {"id": "report-no-inputs-no-study", "argv": ["splitbench-report"],
     "expect": "inputs: none given", "files": {}, "exit": 2},
    {"id": "report-corrupt-summary", "argv": ["splitbench-report", "inputs=[{tmp}/run]"],
     "expect": "summary.json: cannot read JSON",
     "files": {"run/summary.json": "{not json", "run/requests.parquet": "x"}, "exit": 2},
    {"id": "report-summary-not-object", "argv": ["splitbench-report", "inputs=[{tmp}/run]"],
     "expect": "summary.json: expected a JSON object",
     "files": {"run/summary.json": "[]", "run/requests.parquet": "x"}, "exit": 2},
    {"id": "report-corrupt-requests", "argv": ["splitbench-report", "inputs=[{tmp}/run]"],
     "expect": "requests.parquet: cannot read Parquet",
     "files": {"run/summary.json": "{}", "run/requests.parquet": "not parquet"}, "exit": 2},
    {"id": "report-corrupt-study-json", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "study.json: cannot read JSON", "files": {"st/study.json": "{"}, "exit": 2},
    {"id": "report-study-json-no-sections", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "not a splitbench study", "files": {"st/study.json": "{}"}, "exit": 2},
    {"id": "report-budget-missing-column", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "budget.csv: missing column 'trace'",
     "files": {"st/study.json": _STUDY, "st/budget.csv": "a,b\n1,2\n"}, "exit": 2},
    {"id": "report-points-missing-column", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: missing column 'slo_worst_ratio'",
     "files": {"st/study.json": _STUDY,
               "st/points.csv": "task,trace,design,prompt_machines,token_machines,machines,rate,"
                                "slo_met\nbudget,t,d,,,1,1.0,True\n"},
     "exit": 2},
    {"id": "report-garbled-csv", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "heatmap.csv: cannot read CSV",
     "files": {"st/study.json": _STUDY, "st/heatmap.csv": 'a,b\n"1,2\n'}, "exit": 2},
    {"id": "report-corrupt-overrides", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "overrides.yaml: cannot read YAML",
     "files": {"st/study.json": _STUDY, "st/hydra/t/.hydra/overrides.yaml": "- a\n b: ["},
     "exit": 2},
    {"id": "report-output-dir-under-a-file",
     "argv": ["splitbench-report", "inputs=[{tmp}/st]", "output_dir={tmp}/afile/rep"],
     "expect": "is a file, not a folder", "files": {"afile": "x", "st/study.json": _STUDY},
     "exit": 2},
    {"id": "report-unknown-format", "argv": ["splitbench-report", "inputs=[{tmp}/st]",
                                             "formats=[gif]"],
     "expect": "formats", "files": {"st/study.json": _STUDY}, "exit": 2},
    {"id": "report-dpi-negative", "argv": ["splitbench-report", "inputs=[{tmp}/st]", "dpi=-5"],
     "expect": "dpi: must be from 10 to 2400 (dots per inch), got -5",
     "files": {"st/study.json": _STUDY}, "exit": 2},
    {"id": "report-points-truncated", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: 1 data rows, study.json records 2",
     "files": {"st/study.json": _recorded(2), "st/points.csv": _HEAD + _ROW.format(rate=1.0)},
     "exit": 2},
    {"id": "report-points-empty", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: 0 data rows, study.json records 2",
     "files": {"st/study.json": _recorded(2), "st/points.csv": ""}, "exit": 2},
    {"id": "report-points-cut-inside-a-row", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: ends inside a row (a truncated file)",
     "files": {"st/study.json": _recorded(2),
               "st/points.csv": _HEAD + _ROW.format(rate=1.0) + "budget,t,d,,"},
     "exit": 2},
    {"id": "report-rate-not-a-number", "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: data row 2, column 'rate': not a number: 'fast'",
     "files": {"st/study.json": _recorded(2),
               "st/points.csv": _HEAD + _ROW.format(rate=1.0) + _ROW.format(rate="fast")},
     "exit": 2},
    {"id": "report-old-study-point-count",
     "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: 1 data rows, study.json's point count says 3",
     "files": {"st/study.json": _STUDY[:-1] + ', "simulations": {"points": 3}}',
               "st/points.csv": _HEAD + _ROW.format(rate=1.0)},
     "exit": 2},
    {"id": "report-old-study-slo-met-not-bool",
     "argv": ["splitbench-report", "inputs=[{tmp}/st]"],
     "expect": "points.csv: data row 1, column 'slo_met': not True or False: 'maybe'",
     "files": {"st/study.json": _STUDY,
               "st/points.csv": _HEAD + "budget,t,d,,,1,1.0,maybe,0.5\n"},
     "exit": 2},
    {"id": "report-output-dir-not-a-report",
     "argv": ["splitbench-report", "inputs=[{tmp}/st]", "output_dir={tmp}/mine",
              "phase_figures=false"],
     "expect": "output_dir: {tmp}/mine is not a splitbench report folder ({tmp}/mine/figures/a.png",
     "files": {"st/study.json": _STUDY, "mine/figures/a.png": "mine\n"}, "exit": 2},
]  # fmt: skip
