"""One look for every figure of the lab: Matplotlib headless, a fixed style, a colour per policy, and figures
written atomically in any of PNG, PDF and SVG.

    pyplot = plt()                              # Agg backend, the lab's style applied
    fig, ax = pyplot.subplots()
    save_figure(fig, "out/fig.png", ("png", "pdf"))   # out/fig.png and out/fig.pdf
"""

from __future__ import annotations

import io
import os

from experiment.files import atomic_write_bytes
from jaxsim.fields import ConfigError

FORMATS = ("png", "pdf", "svg")
PNG_DPI = 200                               # raster figures; PDF and SVG are vector

METHOD_COLORS = {"random": "#999999", "edge_only": "#1f77b4", "cloud_small_only": "#17becf",
                 "cloud_large_only": "#2ca02c", "greedy": "#ff7f0e", "greedy_seq": "#bcbd22", "knn": "#8c564b",
                 "knn_value": "#e377c2", "icl": "#d62728", "ppo": "#9467bd", "oracle": "#000000"}

STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
         "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none",
         "svg.hashsalt": "genai-edge-lab"}


_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def plt():
    """matplotlib.pyplot on the headless Agg backend with the lab's style."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    pyplot.rcParams.update(STYLE)
    return pyplot


def color(policy: str, i: int = 0) -> str:
    """The policy's colour (its name's first word), or the i-th of Matplotlib's cycle for a policy of a user's."""
    c = METHOD_COLORS.get(policy.split(" ")[0])
    return c if c is not None else f"C{i % 10}"


def parse_formats(text: str) -> tuple[str, ...]:
    """'png,pdf' -> ('png', 'pdf'); a clear error naming the flag and the allowed values."""
    fmts = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ConfigError(f"--format {text!r}: allowed a comma-separated list of {', '.join(FORMATS)}")
    return fmts


def save_figure(fig, path: str, formats: tuple[str, ...] = ("png",)) -> list[str]:
    """Write ``fig`` as ``path`` with each format's extension (the one ``path`` has is replaced), each file
    atomically; returns the paths written."""
    stem = os.path.splitext(path)[0]
    written = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=PNG_DPI if fmt == "png" else None, bbox_inches="tight",
                    metadata=_NO_DATE.get(fmt))               # same figure, same bytes
        atomic_write_bytes(f"{stem}.{fmt}", buf.getvalue())
        written.append(f"{stem}.{fmt}")
    return written
