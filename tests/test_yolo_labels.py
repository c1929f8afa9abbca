"""One YOLO label writer for every data set: the simulator's export and the labeller's."""

from __future__ import annotations

import pytest

from edge.train.yolo_labels import box_line, label_lines, write_labels

CLASSES = ["crack", "code"]


def test_a_box_is_its_class_index_then_centre_and_size_normalised():
    assert box_line(1, [100, 50, 40, 20], 640, 480) == "1 0.187500 0.125000 0.062500 0.041667"


def test_a_box_clipped_off_the_image_is_left_out_and_an_unknown_class_is_an_error():
    boxes = [("crack", [10, 10, 0, 5]), ("code", [0, 0, 64, 48])]
    assert label_lines(boxes, CLASSES, 640, 480) == ["1 0.050000 0.050000 0.100000 0.100000"]
    with pytest.raises(ValueError, match="'dent' is not in the data set's classes"):
        label_lines([("dent", [0, 0, 5, 5])], CLASSES, 640, 480)


def test_an_image_without_boxes_gets_an_empty_label_file(tmp_path):
    write_labels(tmp_path / "a.txt", [])
    write_labels(tmp_path / "b.txt", ["0 0.5 0.5 0.1 0.1", "1 0.2 0.2 0.1 0.1"])
    assert (tmp_path / "a.txt").read_text() == ""
    assert (tmp_path / "b.txt").read_text() == "0 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n"
