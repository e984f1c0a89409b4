"""``heatmap``: every cell of a prompt x token machine grid at one rate (the paper's
provisioning heatmap)."""

from __future__ import annotations

from experiments.provision import heatmap
from experiments.study.kinds.base import Kind


class HeatmapKind(Kind):
    name = "heatmap"

    def search(self, ctx, task, ev, pools) -> dict:
        return {"rate": task.rate, "cells": heatmap(ev, pools, task.rate, mode=ctx.search.mode),
                "points": []}  # fmt: skip

    def describe(self, res: dict) -> str:
        return f"{len(res.get('cells', []))} cells"

    def rows(self, task, res, pools, base, tables) -> None:
        for cell in res["cells"]:
            tables["heatmap"].append({**base, "rate": res["rate"], **cell})
