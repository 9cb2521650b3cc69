"""Writes what an evaluation produced, next to each other in one folder, every file atomically:

edits/<id>.png     the result
grids/<id>.png     source | condition | result | source hair | result hair
edits.csv          one row per edit: id, row, condition, metrics (or the error of a failed pair)
summary.json       means of the metrics, counts of edits and failures, the settings
summary_plot.png   the distribution of each metric
report.html        the summary table, the per-edit table and the grids
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytorch_lightning as pl
import torch
from PIL import Image

from hairclipv2.evaluation.fid import set_distances
from hairclipv2.evaluation.pairs import SCENARIOS, Pair
from hairclipv2.evaluation.published import published
from hairclipv2.evaluation.records import EditRecords, pair_key
from hairclipv2.io import save_image_atomic, save_image_grid, to_uint8
from hairclipv2.masks import PAINT_COLOURS


def write_text_atomic(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def label_tile(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A painted label map (L, L) in HairCLIPv2's painting colours, at the size of `like`, in [-1, 1]."""
    rgb = torch.zeros(3, *labels.shape, dtype=like.dtype)
    for label, colour in PAINT_COLOURS.items():
        rgb[:, labels == label] = torch.tensor(colour, dtype=like.dtype).view(3, 1) / 127.5 - 1
    return torch.nn.functional.interpolate(rgb[None], size=like.shape[-2:], mode="nearest")[0]


def condition_tile(batch: dict[str, Any], i: int, like: torch.Tensor) -> torch.Tensor:
    """An image for the condition column: the reference, the painted mask, the sketch over the
    source, an RGB swatch, or grey (text)."""
    if batch.get("reference") is not None:
        return batch["reference"][i]
    if batch.get("mask") is not None:
        return label_tile(batch["mask"][i].cpu(), like)
    if batch.get("sketch") is not None:
        strokes = (
            torch.nn.functional.interpolate(
                batch["sketch"][i][None, None].float(), size=like.shape[-2:], mode="nearest"
            )[0]
            > 0
        )
        return torch.where(strokes, torch.ones_like(like), like.cpu())
    colour = batch.get("colour")
    if colour is not None:
        c = colour[i]
        if c.image is not None:
            return torch.nn.functional.interpolate(
                c.image[None], size=like.shape[-2:], mode="bilinear", align_corners=False
            )[0]
        if c.rgb is not None:
            return (torch.tensor(c.rgb, dtype=like.dtype).view(3, 1, 1) / 127.5 - 1).expand_as(like)
    return torch.zeros_like(like)


class EditReportWriter(pl.Callback):
    """Saves each edit and its record as it finishes (`hairclipv2.evaluation.records`), and at the end
    of the run (rank 0, after every process is done) the summary of all the pairs' records: means per
    metric and per scenario, the set metrics (FID, FID_CLIP) of the edits against the real images, the
    protocol, and the published numbers of the field for it.

    `distributions`: FrechetInceptionDistance objects by name (`hairclipv2.evaluation.fid`).
    """

    def __init__(
        self,
        out_dir: str | Path,
        task: str,
        pairs: list[Pair],
        settings: dict[str, Any] | None = None,
        warning: str | None = None,
        distributions: dict[str, Any] | None = None,
        protocol: dict[str, Any] | None = None,
        real_images: list[Path] | None = None,
    ):
        self.out = Path(out_dir)
        self.task, self.settings, self.warning = task, settings or {}, warning
        self.pairs, self.by_id = pairs, {p.id: p for p in pairs}
        self.records = EditRecords(self.out)
        self.distributions, self.protocol = distributions or {}, protocol or {}
        self.real_images = real_images
        self.timed = False  # the first edit of each process is its warm-up (excluded from the runtime)

    def record(self, row: dict[str, Any]) -> None:
        pair = self.by_id.get(row["id"])
        if pair is not None and pair.scenario is not None:
            row["scenario"] = pair.scenario
        self.records.write({**row, "pair": pair_key(pair) if pair is not None else None})

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for failure in outputs.get("failures", []):
            self.record(
                {
                    "id": failure["id"],
                    "row": failure["row"],
                    "condition": failure["condition"],
                    "status": "failed",
                    "error": failure["error"],
                }
            )
        out = outputs.get("output")
        if out is None:
            return
        batch = outputs["batch"]
        metrics = outputs.get("metrics", {})
        for i, pid in enumerate(batch["id"]):
            save_image_atomic(Image.fromarray(to_uint8(out.result[i])), self.inside("edits", f"{pid}.png"))
            tiles = [
                batch["source"][i],
                condition_tile(batch, i, batch["source"][i]),
                out.result[i],
                out.source_hair[i].expand(3, -1, -1) * 2 - 1,
                out.result_hair[i].expand(3, -1, -1) * 2 - 1,
            ]
            save_image_grid(
                torch.stack([t.detach().float().cpu() for t in tiles])[None], self.inside("grids", f"{pid}.png")
            )
            row = {
                "id": pid,
                "row": int(batch["row"][i]),
                "condition": batch["condition"][i],
                "status": "ok",
                "error": "",
                "warmup": not self.timed,
            }
            row.update({k: round(float(v[i]), 6) for k, v in metrics.items()})
            self.record(row)
        self.timed = True

    def on_predict_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            trainer.strategy.barrier("edit_records")  # every process has written its records
        if trainer.is_global_zero:
            self.summarise()

    def summarise(self) -> dict[str, Any]:
        """edits.csv, summary.json, the plot and report.html from the records on disk (of this run and
        any earlier one into the same folder): also what a rerun calls when they are missing."""
        rows = self.records.rows(self.pairs)
        ok = [r for r in rows if r["status"] == "ok"]
        summary = {
            "task": self.task,
            "protocol": self.protocol,
            "edits": len(ok),
            "failures": len(rows) - len(ok),
            "not_run": len(self.pairs) - len(rows),
            "metrics": {**metric_means(ok), **self.set_metrics(ok)},
            "scenarios": {},
            "published": published(self.task),
            "settings": self.settings,
        }
        for name in sorted({r["scenario"] for r in ok if r.get("scenario")}):
            part = [r for r in ok if r.get("scenario") == name]
            summary["scenarios"][name] = {"edits": len(part), **metric_means(part), **self.set_metrics(part)}
        if self.warning:
            summary["warning"] = self.warning
        self.write(rows, summary)
        return summary

    def set_metrics(self, ok: list[dict[str, Any]]) -> dict[str, float]:
        """FID-like distances of the edits (files in edits/) against the real images: `real_images`
        (HairFastGAN's `--source_dataset` folder), else the distinct sources of the pairs."""
        if not self.distributions:
            return {}
        real = self.real_images or sorted({str(p.source) for p in self.pairs})
        fake = [self.inside("edits", f"{r['id']}.png") for r in ok]
        return set_distances(self.distributions, real, fake)

    def inside(self, folder: str, name: str) -> Path:
        """out/folder/name, refused unless it resolves inside the run folder (ids are checked when the
        pairs file is read; this keeps any other caller from writing elsewhere)."""
        path = (self.out / folder / name).resolve()
        if path.parent != (self.out / folder).resolve():
            raise ValueError(f"output name {name!r} would leave {self.out / folder}")
        return path

    def write(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        rows = [{k: v for k, v in r.items() if k != "pair"} for r in rows]
        first = ["id", "row", "condition", "status", "error", "scenario", "warmup"]
        present = {k for r in rows for k in r}
        columns = [c for c in first if c in present] + sorted(present - set(first))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows([{k: spreadsheet_safe(v) for k, v in r.items()} for r in rows])
        write_text_atomic(buf.getvalue(), self.out / "edits.csv")
        write_text_atomic(json.dumps(summary, indent=2), self.out / "summary.json")
        plot = self.plot(rows, sorted(present - ROW_FIELDS), summary.get("scenarios", {}))
        write_text_atomic(render_html(rows, columns, summary, plot), self.out / "report.html")

    def plot(self, rows: list[dict[str, Any]], metrics: list[str], scenarios: dict[str, dict]) -> str | None:
        """Per metric: the distribution over the edits (from PLOT_LEAST edits on), or with two or
        more scenarios the mean of each; nothing where there is no distribution (the summary table
        has the values)."""
        values = {m: [r[m] for r in rows if r["status"] == "ok" and _number(r.get(m))] for m in metrics}
        if len(scenarios) >= 2:
            values = {m: [s.get(m) for s in scenarios.values()] for m, v in values.items() if v}
        else:
            values = {m: v for m, v in values.items() if len(v) >= PLOT_LEAST}
        if not values:
            (self.out / "summary_plot.png").unlink(missing_ok=True)
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(values), figsize=(3 * len(values), 2.6), squeeze=False)
        for ax, (name, v) in zip(axes[0], values.items()):
            if len(scenarios) >= 2:
                ax.bar(range(len(v)), [x if x is not None else 0 for x in v], color="#4a7ab5")
                ax.set_xticks(range(len(v)), list(scenarios), rotation=60, fontsize=6)
            else:
                ax.hist(v, bins=min(20, max(3, len(v))), color="#4a7ab5")
            ax.set_title(name, fontsize=9)
        fig.tight_layout()
        tmp = self.out / ".summary_plot.tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, self.out / "summary_plot.png")
        return "summary_plot.png"


PLOT_LEAST = 3  # edits a histogram needs; fewer are a table


def _number(value: Any) -> bool:
    """A metric value that counts: a number, not NaN (a metric that did not apply to that edit)."""
    return isinstance(value, (int, float)) and not math.isnan(value)


def metric_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the rows that have it. The runtime leaves out warm-up edits (the first
    of each process, with its one-time setup); when only those exist it is reported as
    `seconds_first_edit`, so that no warm-up passes for the time an edit takes."""
    names = sorted({k for r in rows for k in r} - ROW_FIELDS)
    means = {}
    for name in names:
        pool, key = rows, name
        if name == "seconds_per_edit":
            timed = [r for r in rows if not r.get("warmup")]
            pool, key = (timed, name) if timed else (rows, "seconds_first_edit")
        values = [r[name] for r in pool if _number(r.get(name))]
        if values:
            means[key] = sum(values) / len(values)
    return means


ROW_FIELDS = {"id", "row", "condition", "status", "error", "warmup", "scenario", "pair"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula: text starting with = + - @ or a tab /
    carriage return gets a leading apostrophe (OWASP's CSV-injection advice); numbers are kept."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def scenario_table(summary: dict[str, Any], fmt: Any) -> str:
    """One row per scenario of a triples protocol, one column per metric."""
    scenarios = summary.get("scenarios") or {}
    if not scenarios:
        return ""
    names = sorted({k for s in scenarios.values() for k in s})
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{html.escape(SCENARIOS.get(s, s))}</th>"
        + "".join(f"<td>{fmt(v.get(n, ''))}</td>" for n in names)
        + "</tr>"
        for s, v in scenarios.items()
    )
    return f'<h2>Scenarios</h2><table id="scenarios"><tr><th>scenario</th>{head}</tr>{body}</table>'


def comparison_table(summary: dict[str, Any], fmt: Any) -> str:
    """This run's numbers beside the field's published ones for the same protocol (source per row)."""
    rows = summary.get("published") or []
    if not rows:
        return ""
    names = sorted({k for r in rows for k in r["metrics"]})
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    ours = "".join(f"<td>{fmt(summary['metrics'].get(n, ''))}</td>" for n in names)
    theirs = "".join(
        f"<tr><th>{html.escape(r['method'])}</th>"
        + "".join(f"<td>{fmt(r['metrics'].get(n, ''))}</td>" for n in names)
        + f"<td>{html.escape(r['source'])}</td></tr>"
        for r in rows
    )
    return (
        f'<h2>Against published numbers</h2><table id="published"><tr><th>method</th>{head}<th>source</th></tr>'
        f"<tr><th>this run</th>{ours}<td>{html.escape(str(summary.get('protocol', {}).get('weights', '')))}</td></tr>"
        f"{theirs}</table>"
    )


def render_html(rows: list[dict[str, Any]], columns: list[str], summary: dict[str, Any], plot: str | None) -> str:
    esc = lambda v: html.escape(str(v))  # noqa: E731
    fmt = lambda v: ("n/a" if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else esc(v)  # noqa: E731
    summary_rows = "".join(f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in summary["metrics"].items())
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    grids = "".join(
        f'<figure><img src="grids/{esc(quote(str(r["id"])))}.png" alt="{esc(r["id"])}"><figcaption>{esc(r["id"])}: {esc(r["condition"])}</figcaption></figure>'
        for r in rows
        if r["status"] == "ok"
    )
    warning = f'<p class="warning">{esc(summary["warning"])}</p>' if summary.get("warning") else ""
    protocol = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary.get("protocol", {}).items())
    plot_html = f'<img src="{plot}" alt="metric distributions">' if plot else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(summary["task"])} report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #bbb;padding:3px 8px;font-size:13px}}
.warning{{background:#fdd;border:2px solid #c00;padding:.6em;font-weight:bold}} figure{{display:inline-block;margin:.5em}} .wide{{overflow-x:auto;max-width:100%}} #edits td,#edits th{{font-size:11px;white-space:nowrap}} figure img{{width:660px;image-rendering:pixelated}} img{{max-width:100%}}</style></head>
<body><h1>{esc(summary["task"])}: {summary["edits"]} edits, {summary["failures"]} failed</h1>{warning}
<h2>Protocol</h2><table id="protocol">{protocol}</table>
<h2>Summary</h2><table id="summary"><tr><th>metric</th><th>mean</th></tr>{summary_rows}</table>
{scenario_table(summary, fmt)}{comparison_table(summary, fmt)}{plot_html}
<p>Non-hair metrics compare source and result outside the dilated union of both hair masks.</p>
<h2>Edits</h2><div class="wide"><table id="edits"><tr>{head}</tr>{body}</table></div>
<p>n/a: the metric does not apply to that edit (no hair found for the non-hair and hair metrics).</p>
<h2>Grids</h2><p>source | condition | result | source hair | result hair</p>{grids}
</body></html>
"""
