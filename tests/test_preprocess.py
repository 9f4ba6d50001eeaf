"""python -m mlrank.preprocess: cropping, the detector registry, the pipeline on images and videos, the report."""

import json
import os

import cv2
import numpy as np
import pytest

from mlrank import preprocess as pp
from mlrank.data.binary import FrameFolderDataset


def bright_region_detector(model_path):
    """A stand-in detector: the bounding box of pixels brighter than 200, if any."""

    def detect(image):
        ys, xs = np.nonzero(image.max(axis=2) > 200)
        if len(xs) == 0:
            return []
        return [(float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))]

    return detect


@pytest.fixture
def bright(monkeypatch):
    monkeypatch.setitem(pp.DETECTORS, "bright", bright_region_detector)
    return "bright"


def frame_with_square(x, y, side, height=48, width=64):
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[y : y + side, x : x + side] = 255
    return image


def write_image(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_video(path, frames, fps=5):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


# ---------------------------------------------------------------- cropping


def test_crop_inside_the_image_is_the_margin_square():
    image = np.arange(100 * 100 * 3, dtype=np.uint32).reshape(100, 100, 3).astype(np.uint16)
    crop = pp.crop_face(image, (40, 40, 20, 10), margin=1.5, size=30)
    # side 1.5 * max(20, 10) = 30 around the centre (50, 45): rows 30..59, columns 35..64
    assert np.array_equal(crop, image[30:60, 35:65])


def test_crop_at_the_border_is_padded_black():
    image = np.full((50, 50, 3), 9, dtype=np.uint8)
    crop = pp.crop_face(image, (0, 0, 20, 20), margin=2.0, size=40)
    # side 40 around the centre (10, 10): rows and columns -10..29; the first 10 of each are outside
    assert crop.shape == (40, 40, 3)
    assert (crop[:10] == 0).all() and (crop[:, :10] == 0).all()
    assert (crop[10:, 10:] == 9).all()


def test_crop_is_resized_to_size():
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    image[50:150, 50:150] = 200
    crop = pp.crop_face(image, (50, 50, 100, 100), margin=1.0, size=25)
    assert crop.shape == (25, 25, 3) and (crop == 200).all()


def test_largest_face():
    assert pp.largest_face([(0, 0, 5, 5), (10, 10, 8, 4), (1, 1, 2, 30)]) == (1, 1, 2, 30)
    assert pp.largest_face([]) is None


# ---------------------------------------------------------------- registry and the real detectors


def test_registry(bright):
    assert pp.create_detector("bright")(frame_with_square(3, 4, 5)) == [(3.0, 4.0, 5.0, 5.0)]
    with pytest.raises(ValueError, match="unknown face detector 'nope'; registered: .*'bright'"):
        pp.create_detector("nope")
    with pytest.raises(ValueError, match="'bright' is already registered"):
        pp.register_detector("bright")(bright_region_detector)
    with pytest.raises(FileNotFoundError, match="detector model file not found: /no/such.onnx"):
        pp.create_detector("bright", "/no/such.onnx")


def test_yunet_without_weights_says_what_to_pass():
    with pytest.raises(ValueError, match="--detector-model face_detection_yunet"):
        pp.create_detector("yunet")


def _available_real_detector():
    yunet = os.environ.get("MLRANK_YUNET_MODEL")
    if yunet and os.path.isfile(yunet):
        return "yunet", yunet
    try:
        pp.create_detector("haar")
    except (RuntimeError, FileNotFoundError, ValueError):
        return None
    return "haar", None


@pytest.mark.skipif(_available_real_detector() is None, reason="no real face detector (set MLRANK_YUNET_MODEL)")
def test_real_detector_reports_a_blank_image_as_no_face(tmp_path):
    name, model = _available_real_detector()
    write_image(tmp_path / "in/blank.png", np.full((120, 120, 3), 128, dtype=np.uint8))
    report = pp.preprocess(tmp_path / "in", tmp_path / "out", detector=name, detector_model=model, progress=False)
    assert report.images_without_faces == ["blank.png"] and report.crops_written == 0


# ---------------------------------------------------------------- the pipeline


def test_images_folder_keeps_structure_and_reports_no_face(tmp_path, bright):
    write_image(tmp_path / "in/vid1/0001.png", frame_with_square(10, 8, 20))
    write_image(tmp_path / "in/vid1/0002.png", np.full((48, 64, 3), 40, dtype=np.uint8))
    (tmp_path / "in/notes.txt").write_text("not media")

    report = pp.preprocess(tmp_path / "in", tmp_path / "out", margin=1.0, size=16, detector=bright, progress=False)

    crop = cv2.imread(str(tmp_path / "out/vid1/0001.png"))
    assert crop.shape == (16, 16, 3) and (crop == 255).all()  # margin 1: exactly the square
    assert not (tmp_path / "out/vid1/0002.png").exists()
    assert report.inputs == 2 and report.crops_written == 1
    assert report.images_without_faces == [os.path.join("vid1", "0002.png")]
    assert report.ignored_files == ["notes.txt"]
    written = json.loads((tmp_path / "out" / pp.REPORT_NAME).read_text())
    assert written["images_without_faces"] == report.images_without_faces and written["crops_written"] == 1


def test_video_frames_evenly_spaced_and_faceless_frames_listed(tmp_path, bright):
    # six frames; frames_per_video 3 picks linspace(0, 5, 3) -> 0, 2, 5; frame 2 has no face
    frames = [frame_with_square(8 + i, 10, 24) for i in range(6)]
    frames[2] = np.full((48, 64, 3), 40, dtype=np.uint8)
    write_video(tmp_path / "in/real/clip.avi", frames)
    write_video(tmp_path / "in/real/empty.avi", [np.full((48, 64, 3), 40, dtype=np.uint8)] * 4)

    report = pp.preprocess(
        tmp_path / "in", tmp_path / "out", frames_per_video=3, size=32, detector=bright, progress=False
    )

    clip = os.path.join("real", "clip.avi")
    assert sorted(os.listdir(tmp_path / "out/real/clip")) == ["000000.png", "000005.png"]
    assert report.frames_without_faces == {clip: [2]}
    assert report.videos_without_faces == [os.path.join("real", "empty.avi")]
    assert not (tmp_path / "out/real/empty").exists()
    assert report.crops_written == 2 and report.unreadable == {} and report.short_videos == {}

    # the output is a FrameFolderDataset subtree (real/clip is one video of two frames)
    dataset = FrameFolderDataset(tmp_path / "out")
    assert dataset.video_ids() == ["real/clip", "real/clip"] and dataset.labels().tolist() == [0, 0]
    assert dataset[0][0].shape == (3, 32, 32)


def test_unreadable_files_are_reported(tmp_path, bright):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/broken.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "in/broken.png").write_bytes(b"no image here")
    write_image(tmp_path / "in/ok.png", frame_with_square(5, 5, 10))
    report = pp.preprocess(tmp_path / "in", tmp_path / "out", size=8, detector=bright, progress=False)
    assert sorted(report.unreadable) == ["broken.mp4", "broken.png"]
    assert report.crops_written == 1


def test_single_video_input_and_cli(tmp_path, bright, capsys):
    write_video(tmp_path / "clip.avi", [frame_with_square(10, 10, 12)] * 4)
    arguments = ["--detector", bright, "--frames-per-video", "0", "--size", "24", "--no-progress"]
    report = str(tmp_path / "r.json")
    status = pp.main([str(tmp_path / "clip.avi"), str(tmp_path / "out"), *arguments, "--report", report])
    assert status == 0
    assert sorted(os.listdir(tmp_path / "out/clip")) == [f"{i:06d}.png" for i in range(4)]
    assert "4 crop(s) written" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["frames_per_video"] is None
    assert not [name for name in os.listdir(tmp_path / "out/clip") if name.endswith(".tmp")]


REAL_VIDEO_CAPTURE = cv2.VideoCapture


class AnnouncingCapture:
    """cv2.VideoCapture whose container announces `announced` frames, whatever it holds."""

    announced = 0

    def __init__(self, path):
        self._capture = REAL_VIDEO_CAPTURE(path)

    def get(self, prop):
        return self.announced if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

    def __getattr__(self, name):
        return getattr(self._capture, name)


@pytest.mark.parametrize("announced, crops, short", [(10, 4, {"announced": 10, "read": 4}), (0, 4, None)])
def test_video_shorter_than_announced_or_without_count(tmp_path, bright, monkeypatch, announced, crops, short):
    # 4 frames; a count of 10 makes linspace(0, 9, 10) ask for frames 4..9 that never come;
    # no count at all is replaced by counting the frames
    write_video(tmp_path / "in/clip.avi", [frame_with_square(10, 10, 12)] * 4)
    monkeypatch.setattr(AnnouncingCapture, "announced", announced)
    monkeypatch.setattr(pp.cv2, "VideoCapture", AnnouncingCapture)
    report = pp.preprocess(tmp_path / "in", tmp_path / "out", frames_per_video=None, size=8, detector=bright,
                           progress=False)
    assert report.crops_written == crops
    assert report.short_videos.get("clip.avi") == short


def test_cli_errors_are_clear(tmp_path, bright, capsys):
    assert pp.main([str(tmp_path / "absent"), str(tmp_path / "out"), "--detector", bright]) == 2
    assert "input not found" in capsys.readouterr().err
    write_image(tmp_path / "in/a.png", frame_with_square(1, 1, 4))
    assert pp.main([str(tmp_path / "in"), str(tmp_path / "out"), "--detector", "yunet"]) == 2  # no weights
    assert "--detector-model" in capsys.readouterr().err


def test_inputs_that_would_collide_and_output_inside_input(tmp_path, bright):
    write_video(tmp_path / "in/a.avi", [frame_with_square(1, 1, 8)] * 2)
    write_image(tmp_path / "in/b.png", frame_with_square(1, 1, 8))
    first = pp.preprocess(tmp_path / "in", tmp_path / "in/crops", size=8, detector=bright, progress=False)
    again = pp.preprocess(tmp_path / "in", tmp_path / "in/crops", size=8, detector=bright, progress=False)
    assert first.inputs == again.inputs == 2  # the crops under in/crops are not taken as inputs
    write_video(tmp_path / "in/a.mp4", [frame_with_square(1, 1, 8)] * 2)
    with pytest.raises(ValueError, match="a.avi and a.mp4 would write to the same output"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", detector=bright, progress=False)


def test_bad_settings(tmp_path, bright):
    write_image(tmp_path / "in/a.png", frame_with_square(1, 1, 4))
    with pytest.raises(ValueError, match="margin must be > 0"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", margin=0, detector=bright)
    with pytest.raises(ValueError, match="frames_per_video must be >= 1"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", frames_per_video=0, detector=bright)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="notes.txt is neither a video"):
        pp.preprocess(tmp_path / "notes.txt", tmp_path / "out", detector=bright)
