"""Capture sources: replayed folders, video files and cameras that come and go."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from edge.capture.base import open_source
from edge.capture.folder import FolderCapture
from edge.capture.opencv import GStreamerCapture, OpenCVCapture, gstreamer_available
from edge.config import FolderSource, GStreamerSource, OpenCVSource, SimulatorSource
from edge.sim.export import export


def _img(v: int) -> np.ndarray:
    return np.full((48, 64, 3), v, np.uint8)


def test_folder_replays_images_in_sorted_order_and_flags_corrupt_files(tmp_path, caplog):
    for name, v in (("b.png", 20), ("a.png", 10), ("c.jpg", 30)):
        cv2.imwrite(str(tmp_path / name), _img(v))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "d.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "e.png").write_bytes(b"")
    src = open_source(FolderSource(path=tmp_path))
    assert isinstance(src, FolderCapture)
    assert "non-image" in caplog.text and "notes.txt" in caplog.text
    frames = list(src.frames())
    assert [f.name for f in frames] == ["a", "b", "c", "d", "e"]
    assert [int(f.image.mean()) for f in frames[:2]] == [10, 20]
    for bad in frames[3:]:
        assert bad.image is None and bad.error, "an unreadable file is an item to reject"
    assert [f.encoder for f in frames] == [0, 1, 2, 3, 4]


def test_folder_replays_a_simulator_export_in_truth_order_with_truth(tmp_path):
    export(SimulatorSource(scenario="cartons", seed=4, defect_rate=0.5), tmp_path, 5)
    frames = list(FolderCapture(FolderSource(path=tmp_path)).frames())
    assert [f.name for f in frames] == [f"cartons-4-{i:06d}" for i in range(5)]
    assert all(f.truth and f.truth["id"] == f.name for f in frames)
    assert all(f.image is not None and f.image.shape == (480, 640, 3) for f in frames)
    assert [f.encoder for f in frames] == [f.truth["encoder"] for f in frames]


def test_folder_export_with_a_missing_image_yields_an_error_frame(tmp_path):
    export(SimulatorSource(scenario="vials", seed=4), tmp_path, 3)
    (tmp_path / "images" / "vials-4-000001.png").unlink()
    frames = list(FolderCapture(FolderSource(path=tmp_path)).frames())
    assert len(frames) == 3
    assert frames[1].image is None and "vials-4-000001" in frames[1].error


def test_folder_loops_until_stopped(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _img(1))
    cv2.imwrite(str(tmp_path / "b.png"), _img(2))
    src = FolderCapture(FolderSource(path=tmp_path, loop=True))
    names = []
    for f in src.frames():
        names.append(f.name)
        if len(names) == 5:
            src.stop()
    assert names == ["a", "b", "a", "b", "a"]


def test_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderCapture(FolderSource(path=tmp_path / "nope"))


def _write_video(path, n: int) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert w.isOpened()
    for i in range(n):
        w.write(_img(20 + 20 * i))
    w.release()


def test_video_file_is_read_to_its_end_with_trigger_counts(tmp_path):
    path = tmp_path / "line.avi"
    _write_video(path, 6)
    src = open_source(OpenCVSource(device=str(path)))
    assert isinstance(src, OpenCVCapture)
    frames = list(src.frames())
    assert len(frames) == 6
    assert [f.encoder for f in frames] == [1, 2, 3, 4, 5, 6]
    ts = [f.t_trigger for f in frames]
    assert ts == sorted(ts)
    means = [f.image.mean() for f in frames]
    assert means == sorted(means)  # the frames in recorded order (brighter each time)
    assert src.describe()["reconnects"] == 0


@pytest.mark.parametrize(
    "device", [99, "/nonexistent/camera.avi", "rtsp://user:pw@127.0.0.1:9/stream"]
)
def test_missing_camera_is_retried_with_backoff_and_stop_ends_it(device):
    src = OpenCVCapture(OpenCVSource(device=device, reconnect_backoff_s=(0.01, 0.04)))
    frames = []
    th = threading.Thread(target=lambda: frames.extend(src.frames()), daemon=True)
    th.start()
    while src.reconnects < 3 and th.is_alive():
        th.join(0.01)
    assert th.is_alive(), "a missing camera must not end (or crash) the source"
    src.stop()
    th.join(10)
    assert not th.is_alive() and frames == []
    assert src.describe()["last_error"]
    assert "pw" not in str(src.describe())  # URL credentials stay out of logs and status


def test_gstreamer_pipeline_must_end_in_appsink():
    with pytest.raises(ValueError, match="appsink"):
        GStreamerSource(pipeline="videotestsrc ! autovideosink")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV build has GStreamer")
def test_gstreamer_without_support_in_opencv_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no GStreamer support"):
        GStreamerCapture(GStreamerSource(pipeline="videotestsrc ! videoconvert ! appsink"))
