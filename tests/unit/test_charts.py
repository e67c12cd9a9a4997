"""The geometry of the judgment's charts (receiver/charts.py): scaled into the plot area,
odd points skipped, flat and single-point series drawable, empty ones not."""

import math

from receiver.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, chart


def coordinates(line: str) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in line.split()]


def test_both_series_share_one_scale_inside_the_plot_area():
    drawn = chart({"new": [[0, 10], [10, 20]], "old": [[0, 0], [5, 5]]})
    new, old = coordinates(drawn.lines["new"]), coordinates(drawn.lines["old"])
    assert new[0] == (LEFT, HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) / 2)
    assert new[-1] == (WIDTH - RIGHT, TOP)  # the largest time and value
    assert old[0] == (LEFT, HEIGHT - BOTTOM)  # the smallest value
    assert drawn.y_labels == ("20", "0") and drawn.x_label == "10 s"


def test_odd_points_are_skipped_and_order_is_by_time():
    drawn = chart(
        {
            "new": [[5, 1], [0, 2], ["x", 1], [1, math.nan], [2, math.inf], [-1, 3], [3], None,
                    [True, 1], [4, 1e308]],
            "old": "not a list",
        }
    )  # fmt: skip
    assert [x for x, _ in coordinates(drawn.lines["new"])] == sorted(
        x for x, _ in coordinates(drawn.lines["new"])
    )
    assert len(coordinates(drawn.lines["new"])) == 2 and drawn.lines["old"] == ""


def test_flat_single_and_negative_series_are_drawable():
    flat = chart({"new": [[0, 0.3], [10, 0.3]]})
    ys = {y for _, y in coordinates(flat.lines["new"])}
    assert len(ys) == 1 and TOP < ys.pop() < HEIGHT - BOTTOM
    assert coordinates(chart({"new": [[0, 5]]}).lines["new"]) == [
        (LEFT, (TOP + HEIGHT - BOTTOM) / 2)
    ]
    low = chart({"new": [[0, -2], [1, -1]]})
    assert low.y_labels == ("-1", "-2")


def test_medians_are_lines_on_the_same_scale_and_nothing_is_empty():
    drawn = chart({"new": [[0, 0], [1, 10]]}, {"new": 5, "old": None})
    assert drawn.medians == {"new": (TOP + HEIGHT - BOTTOM) / 2}
    assert chart({}).empty and chart({"new": []}).empty and chart(None).empty
