"""Charts for the digest: matplotlib's Agg backend, never pyplot's global state.

Chinese labels need a CJK font. The `noto-cjk-sans-otc` dependency ships Noto Sans CJK; if it
is missing, any CJK-capable font the system has is used; if there is none, the chart is still
drawn (Chinese glyphs then show as boxes) and a warning is logged once. Rendering is CPU work:
callers on the event loop use `render_funnel_async` (a worker thread).
"""

from __future__ import annotations

import asyncio
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
                 "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei", "SimHei",
                 "PingFang SC", "AR PL UMing CN", "Droid Sans Fallback")


@dataclass(frozen=True)
class FunnelBar:
    label: str
    count: int
    amount: Decimal
    amount_text: str


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of a font that can draw Chinese, registered with matplotlib."""
    try:
        import noto_cjk_sans_otc

        path = str(noto_cjk_sans_otc.FONT_PATH)
        font_manager.fontManager.addfont(path)
        return str(font_manager.FontProperties(fname=path).get_name())
    except Exception:  # the package is optional at run time: look for a system font
        pass
    names = {f.name for f in font_manager.fontManager.ttflist}
    for family in _CJK_FAMILIES:
        if family in names:
            return family
    log.warning("no CJK font found: Chinese chart labels will not render "
                "(install the noto-cjk-sans-otc package)")
    return None


def _families() -> list[str]:
    cjk = cjk_font()
    return ([cjk] if cjk else []) + ["DejaVu Sans"]


def render_funnel(bars: Sequence[FunnelBar], title: str, *, width: float = 8.0) -> bytes:
    """The funnel chart as PNG bytes."""
    fig = funnel_figure(bars, title, width=width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # a missing glyph is a warning per character: the fallback is logged once in cjk_font
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buffer, format="png")
    return buffer.getvalue()


def funnel_figure(bars: Sequence[FunnelBar], title: str, *, width: float = 8.0) -> Figure:
    """A centred horizontal funnel, top stage first: bar width by amount (by count when no
    amounts), each labelled with the stage, the count and the amount."""
    families = _families()
    height = 1.2 + 0.62 * max(1, len(bars))
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    total_amount = sum((b.amount for b in bars), Decimal(0))
    sizes = [float(b.amount) if total_amount > 0 else float(b.count) for b in bars]
    top = max(sizes) if sizes and max(sizes) > 0 else 1.0
    colours = ["#1f4e79", "#2e75b6", "#4a90c8", "#6aa9d8", "#8cc0e3", "#a9d1ec", "#c6e1f3",
               "#dfeef8"]
    for i, (bar, size) in enumerate(zip(bars, sizes, strict=True)):
        w = max(size / top, 0.04)
        y = len(bars) - 1 - i
        ax.barh(y, w, left=-w / 2, height=0.8, color=colours[i % len(colours)],
                edgecolor="white")
        ax.text(-0.52, y, bar.label, ha="right", va="center", fontsize=10, family=families)
        ax.text(0.52, y, f"{bar.count} · {bar.amount_text}", ha="left", va="center",
                fontsize=9, family=families, color="#333333")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-0.6, max(len(bars), 1) - 0.4)
    ax.axis("off")
    ax.set_title(title, fontsize=12, family=families, loc="left")
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.5 / height, bottom=0.02)
    return fig


async def render_funnel_async(bars: Sequence[FunnelBar], title: str) -> bytes:
    return await asyncio.to_thread(render_funnel, bars, title)
