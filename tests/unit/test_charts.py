"""The geometry of the judgment's charts (receiver/charts.py): scaled into the plot area,
odd points skipped, flat, single-point, negative and huge series drawable, empty ones not;
round axis ticks; the record's figures as text; damaged records read as far as they go."""

import math
import sys

from receiver.charts import (
    BOTTOM,
    DOTS_UP_TO,
    HEIGHT,
    LEFT,
    MAX_POINTS,
    RIGHT,
    TOP,
    WIDTH,
    chart,
    judged_kpis,
    number,
    ticks,
)

MIDDLE = (TOP + HEIGHT - BOTTOM) / 2


def coordinates(line: str) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in line.split()]


def inside(line: str) -> bool:
    return all(
        LEFT <= x <= WIDTH - RIGHT and TOP <= y <= HEIGHT - BOTTOM for x, y in coordinates(line)
    )


def test_both_series_share_one_scale_inside_the_plot_area():
    drawn = chart({"new": [[0, 10], [10, 20]], "old": [[0, 0], [5, 5]]})
    new, old = coordinates(drawn.lines["new"]), coordinates(drawn.lines["old"])
    assert new[0] == (LEFT, HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) / 2)
    assert new[-1] == (WIDTH - RIGHT, TOP)  # the largest time and value
    assert old[0] == (LEFT, HEIGHT - BOTTOM)  # the smallest value
    assert old[1][0] == (LEFT + WIDTH - RIGHT) / 2  # 5 s of 10 s: half way across
    assert (drawn.left, drawn.right, drawn.top, drawn.bottom) == (
        LEFT,
        WIDTH - RIGHT,
        TOP,
        HEIGHT - BOTTOM,
    )


def test_the_axes_have_round_ticks_on_the_same_scale():
    drawn = chart({"new": [[0, 10], [600, 20]], "old": [[0, 0], [300, 5]]})
    assert [t.label for t in drawn.x_ticks] == ["0 s", "200 s", "400 s", "600 s"]
    assert drawn.x_ticks[0].at == LEFT and drawn.x_ticks[-1].at == WIDTH - RIGHT
    assert [t.label for t in drawn.y_ticks] == ["0", "10", "20"]
    assert [t.at for t in drawn.y_ticks] == [HEIGHT - BOTTOM, MIDDLE, TOP]


def test_ticks_are_round_and_just_precise_enough():
    assert ticks(0, 600) == [(0, "0"), (200, "200"), (400, "400"), (600, "600")]
    assert [label for _, label in ticks(-2, -1)] == ["-2", "-1.5", "-1"]
    assert [label for _, label in ticks(1000.1, 1000.3)] == ["1000.1", "1000.2"]
    assert [label for _, label in ticks(0.0501, 0.0503)] == ["0.0501", "0.0502"]
    assert [label for _, label in ticks(-0.5, 0.5)] == ["-0.5", "0", "0.5"]
    close = [label for _, label in ticks(1.0, 1.0 + 1e-15)]
    assert len(set(close)) == len(close) >= 2  # neighbours never read the same
    # No round step between the float limits: the ends only; a point: itself.
    assert ticks(-sys.float_info.max, sys.float_info.max) == [
        (-sys.float_info.max, "-1.8e+308"),
        (sys.float_info.max, "1.8e+308"),
    ]
    assert ticks(3, 3) == [(3, "3")]


def test_odd_points_are_skipped_and_order_is_by_time():
    drawn = chart(
        {
            "new": [[5, 1], [0, 2], ["x", 1], [1, math.nan], [2, math.inf], [-1, 3], [3], None,
                    [True, 1], [4, None], [6, 10**400], "7,1", {"t": 1}],
            "old": "not a list",
            "extra": {"0": 1},
        }
    )  # fmt: skip
    new = coordinates(drawn.lines["new"])
    assert [x for x, _ in new] == sorted(x for x, _ in new)
    assert len(new) == 2 and drawn.lines["old"] == "" and "extra" not in drawn.lines
    assert not drawn.empty


def test_flat_series_sit_mid_height_and_single_points_get_a_dot():
    flat = chart({"new": [[0, 0.3], [10, 0.3]]})
    assert {y for _, y in coordinates(flat.lines["new"])} == {MIDDLE}
    assert [t.label for t in flat.y_ticks] == ["0.28", "0.3", "0.32"]
    single = chart({"new": [[0, 5]], "old": []})
    # A polyline of one point draws nothing: the dot is what shows it.
    assert coordinates(single.lines["new"]) == [(LEFT, MIDDLE)]
    assert single.dots == {"new": [(LEFT, MIDDLE)]}
    zero = chart({"new": [[0, 0], [5, 0]]})  # flat at zero: a band of its own
    assert {y for _, y in coordinates(zero.lines["new"])} == {MIDDLE}


def test_long_series_are_lines_only_and_damaged_ones_are_not_read_to_the_end():
    long = chart({"new": [[t, t % 7] for t in range(DOTS_UP_TO + 1)], "old": [[0, 1], [1, 2]]})
    assert set(long.dots) == {"old"}
    endless = chart({"new": [[t, 1.0] for t in range(MAX_POINTS * 3)]})
    assert len(coordinates(endless.lines["new"])) == MAX_POINTS


def test_negative_and_huge_values_scale_without_overflow():
    low = chart({"new": [[0, -2], [1, -1]], "old": [[0, -1.5]]})
    assert [t.label for t in low.y_ticks] == ["-2", "-1.5", "-1"]
    assert coordinates(low.lines["new"]) == [(LEFT, HEIGHT - BOTTOM), (WIDTH - RIGHT, TOP)]
    biggest = sys.float_info.max
    wide = chart({"new": [[0, -biggest], [1, biggest]], "old": [[0, 0]]})
    assert coordinates(wide.lines["new"]) == [(LEFT, HEIGHT - BOTTOM), (WIDTH - RIGHT, TOP)]
    assert coordinates(wide.lines["old"]) == [(LEFT, MIDDLE)]
    flat_huge = chart({"new": [[0, biggest], [1e300, biggest]]})
    assert inside(flat_huge.lines["new"]) and all(
        math.isfinite(t.at) for t in flat_huge.y_ticks + flat_huge.x_ticks
    )
    # A difference below what halving keeps is no difference: flat, mid-height.
    tiny = chart({"new": [[0, 0], [1, 5e-324]]})
    assert {y for _, y in coordinates(tiny.lines["new"])} == {MIDDLE}


def test_every_drawn_point_stays_inside_the_plot_area():
    cases = [
        {"new": [[0, 1e-9], [3, -1e12], [7, 3.5]], "old": [[0.5, 42]]},
        {"new": [[1e9, 1], [0, 2]]},
        {"new": [[0, 1e299], [1, -1e299]], "old": [[2, 0]]},
    ]
    for series in cases:
        drawn = chart(series, {"new": 0, "old": 1})
        assert all(inside(line) for line in drawn.lines.values()), series
        assert all(TOP <= y <= HEIGHT - BOTTOM for y in drawn.medians.values()), series


def test_medians_are_lines_on_the_same_scale_and_nothing_is_empty():
    drawn = chart({"new": [[0, 0], [1, 10]]}, {"new": 5, "old": None})
    assert drawn.medians == {"new": MIDDLE}
    # A median outside the points widens the scale, so its line stays in the plot.
    assert chart({"new": [[0, 0], [1, 10]]}, {"new": 20}).medians == {"new": TOP}
    # Medians of series that are not drawn, and medians that are not numbers, are left out.
    assert chart({"new": [[0, 1]]}, {"old": 5, "new": "5"}).medians == {}
    assert chart({"new": [[0, 1]]}, ["not", "a", "dict"]).medians == {}
    assert chart({}).empty and chart({"new": []}).empty and chart(None).empty
    assert chart([[0, 1]]).empty and chart("new").empty
    assert chart({}).x_ticks == () and chart({}).y_ticks == ()


def test_figures_read_as_text():
    assert number(None) == "—"
    assert number(20) == "20" and number(True) == "true"
    assert number(3e-8) == "3e-08" and number(0.048123) == "0.04812"
    assert number(math.nan) == "nan" and number("require") == "require"


def test_only_kpi_records_are_read_from_a_judgment():
    assert judged_kpis({"kpis": [{"name": "a"}, "b", None, ["c"], {"name": "d"}]}) == [
        {"name": "a"},
        {"name": "d"},
    ]
    assert judged_kpis({"kpis": None}) == judged_kpis({"kpis": "x"}) == []
    assert judged_kpis({}) == judged_kpis(None) == judged_kpis([{"name": "a"}]) == []
