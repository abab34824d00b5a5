"""Where every suite's figures go: `results/<suite>/` with JSON, CSV, PNG plots and a report."""

import csv
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax


def environment() -> dict[str, Any]:
    """Device and versions, recorded beside every figure."""
    import equinox
    import jaxlib
    import optax

    device = jax.devices()[0]
    return {
        "device": getattr(device, "device_kind", str(device)),
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "x64": bool(jax.config.jax_enable_x64),
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table of `rows` restricted to `columns`, leaving out a column that
    is empty (None) in every row."""
    columns = [c for c in columns if any(row.get(c) not in (None, "") for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def target(description: str, measured: float, met: bool, why: str = "") -> dict[str, Any]:
    """One target of a suite: what it asks, the measured value, whether it is met and, when it
    is not, why (one line; required)."""
    if not met and not why:
        raise ValueError(f"the unmet target {description!r} needs its one-line reason")
    return {
        "target": description,
        "measured": measured,
        "met": bool(met),
        "why": "" if met else why,
    }


def targets_section(targets: Sequence[dict[str, Any]]) -> str:
    """The report's table of targets, each unmet one with its reason."""
    return "Targets:\n\n" + markdown_table(targets, ["target", "measured", "met", "why"])


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress(iterable: Iterable, desc: str, total: int | None = None, quiet: bool = False):
    """A tqdm progress bar on stderr (off with `quiet`)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=quiet, file=sys.stderr)


class Results:
    """Collects one suite's records and writes `results.json`, `results.csv`, plots and
    `report.md` under `out_dir` (default `results/<suite>`). `about` opens the report: what
    the suite measures and how to read its columns, so the report stands alone."""

    def __init__(
        self,
        suite: str,
        config: dict[str, Any],
        out_dir: str | os.PathLike | None = None,
        about: str = "",
    ):
        self.suite = suite
        self.config = config
        self.about = about
        self.dir = Path(out_dir) if out_dir is not None else Path("results") / suite
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.sections: list[str] = []

    def add(self, **record: Any) -> None:
        self.records.append(record)

    def save_figure(self, fig, name: str, caption: str = "") -> Path:
        """Save a matplotlib figure as `<name>.png` and reference it in the report."""
        path = self.dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        self.figures.append(name)
        self.sections.append(f"![{caption or name}]({name}.png)\n\n{caption}".strip())
        return path

    def add_section(self, markdown: str) -> None:
        self.sections.append(markdown)

    def write(self, summary_columns: Sequence[str], extra: dict[str, Any] | None = None) -> Path:
        """Write every file, print the summary table, return the JSON path."""
        payload = {
            "suite": self.suite,
            "config": self.config,
            "environment": environment(),
            "records": self.records,
            **(extra or {}),
        }
        json_path = self.dir / "results.json"
        json_path.write_text(json.dumps(payload, indent=2, default=_json_default))
        columns = sorted({key for record in self.records for key in record})
        with open(self.dir / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
        table = markdown_table(self.records, summary_columns)
        env = payload["environment"]
        report = [
            f"# {self.suite}",
            *([self.about] if self.about else []),
            f"Device: {env['device']} ({env['platform']}, {env['cpu_count']} CPUs), "
            f"jax {env['jax']}, jaxlib {env['jaxlib']}.",
            "Configuration: `" + json.dumps(self.config, default=_json_default) + "`",
            table,
            *self.sections,
        ]
        (self.dir / "report.md").write_text("\n\n".join(report) + "\n")
        print(table)
        print(
            f"\nwrote {self.dir}/ (results.json, results.csv, report.md, {len(self.figures)} plots)"
        )
        return json_path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
