"""The funnel chart: a valid PNG of sensible size, with the funnel's labels, in Chinese too."""

from __future__ import annotations

import io
import struct
import warnings
from decimal import Decimal

from bot.charts import FunnelBar, cjk_font, funnel_figure, render_funnel, render_funnel_async

BARS = [FunnelBar("客户分析", 4, Decimal("1200000"), "1,200,000 CNY"),
        FunnelBar("建立信任", 3, Decimal("2500000"), "2,500,000 CNY"),
        FunnelBar("呈现价值", 1, Decimal("6800000"), "6,800,000 CNY"),
        FunnelBar("Collection", 2, Decimal("0"), "0 CNY")]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_png_is_valid_and_sensibly_sized() -> None:
    data = render_funnel(BARS, "各步骤销售漏斗 Funnel by step")
    width, height = png_size(data)
    assert 600 <= width <= 1200 and 300 <= height <= 1000
    assert 5_000 < len(data) < 500_000
    assert data.endswith(b"IEND\xaeB`\x82")


def test_labels_are_drawn_with_a_cjk_font_and_no_missing_glyphs() -> None:
    assert cjk_font() is not None  # the noto-cjk-sans-otc dependency
    fig = funnel_figure(BARS, "各步骤销售漏斗")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for bar in BARS:
        assert bar.label in texts
        assert f"{bar.count} · {bar.amount_text}" in texts
    assert fig.axes[0].get_title(loc="left") == "各步骤销售漏斗"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_empty_and_single_stage_funnels_still_render() -> None:
    assert png_size(render_funnel([], "Funnel"))[0] > 0
    one = [FunnelBar("Analysis", 1, Decimal("0"), "—")]
    assert png_size(render_funnel(one, "Funnel"))[0] > 0


async def test_renders_off_the_event_loop() -> None:
    data = await render_funnel_async(BARS, "Funnel")
    assert png_size(data)[0] > 0
