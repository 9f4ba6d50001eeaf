"""python -m mlrank.preprocess: cropping, the detector registry, the pipeline on images and videos, the report."""

import json
import os
import re

import cv2
import numpy as np
import pytest
from packaging.requirements import Requirement
from PIL import Image

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


def test_inputs_that_would_collide(tmp_path, bright):
    write_video(tmp_path / "in/a.avi", [frame_with_square(1, 1, 8)] * 2)
    write_video(tmp_path / "in/a.mp4", [frame_with_square(1, 1, 8)] * 2)
    with pytest.raises(ValueError, match="a.avi and a.mp4 would write to the same output"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", detector=bright, progress=False)


def snapshot(folder):
    """{relative path: bytes} of every file under folder."""
    return {
        os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
        for root, _, names in os.walk(folder) for name in names
    }


def test_output_that_is_contains_or_lies_inside_the_input_is_refused(tmp_path, bright, capsys, monkeypatch):
    write_image(tmp_path / "faces/a.png", frame_with_square(10, 8, 20))
    write_image(tmp_path / "faces/sub/b.png", frame_with_square(4, 4, 20))
    before = snapshot(tmp_path)
    common = ["--detector", bright, "--no-progress"]
    faces = str(tmp_path / "faces")
    cases = [
        ([faces, faces], rf"output folder \(OUTPUT\) {re.escape(faces)} is the input {re.escape(faces)}"),
        ([faces, str(tmp_path / "faces/crops")], "lies inside the input"),
        ([str(tmp_path / "faces/a.png"), str(tmp_path / "faces")], "contains the input .*a.png"),
        ([faces, str(tmp_path / "out"), "--report", str(tmp_path / "faces/r.json")], "report .*r.json lies inside"),
        ([str(tmp_path / "faces/a.png"), str(tmp_path / "out"), "--report", str(tmp_path / "faces/a.png")],
         "report .*a.png is the input"),
    ]
    for arguments, message in cases:
        assert pp.main([*arguments, *common]) == 2
        assert re.search(message, capsys.readouterr().err), message
    monkeypatch.chdir(tmp_path / "faces")
    assert pp.main(["a.png", ".", *common]) == 2  # python -m mlrank.preprocess photo.png .
    assert "contains the input a.png" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # no input replaced, nothing written


def test_output_reaching_into_the_input_through_a_link_is_refused(tmp_path, bright):
    write_image(tmp_path / "in/sub/a.png", frame_with_square(10, 8, 20))
    (tmp_path / "out").mkdir()
    (tmp_path / "out/sub").symlink_to(tmp_path / "in/sub")  # out/sub/a.png would be in/sub/a.png
    before = snapshot(tmp_path / "in")
    with pytest.raises(ValueError, match="output .*out/sub/a.png lies inside the input"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", detector=bright, progress=False, overwrite=True)
    assert snapshot(tmp_path / "in") == before


def test_existing_outputs_are_replaced_only_with_overwrite(tmp_path, bright, capsys):
    write_image(tmp_path / "in/a.png", frame_with_square(10, 8, 20))
    write_video(tmp_path / "in/clip.avi", [frame_with_square(10, 10, 12)] * 2)
    arguments = [str(tmp_path / "in"), str(tmp_path / "out"), "--detector", bright, "--size", "16", "--no-progress"]
    assert pp.main(arguments) == 0
    first = snapshot(tmp_path / "out")
    assert sorted(first) == ["a.png", "clip/000000.png", "clip/000001.png", pp.REPORT_NAME]

    (tmp_path / "out/a.png").write_bytes(b"the user's edit")
    assert pp.main(arguments) == 2
    assert "3 output(s) already exist" in capsys.readouterr().err  # the report, a.png, clip/
    assert (tmp_path / "out/a.png").read_bytes() == b"the user's edit"

    assert pp.main([*arguments, "--overwrite"]) == 0
    assert snapshot(tmp_path / "out") == first
    # an existing report alone also counts
    assert pp.main([str(tmp_path / "in/a.png"), str(tmp_path / "out2"), "--detector", bright, "--no-progress",
                    "--report", str(tmp_path / "out/preprocess_report.json")]) == 2
    assert "1 output(s) already exist" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--margin", "inf"], r"--margin.* must be a finite number in \(0, 10\], got inf"),
    (["--margin", "nan"], "--margin.* got nan"),
    (["--margin", "1e5"], "--margin.* got 100000.0"),
    (["--margin", "-1"], "--margin"),
    (["--size", "100000"], r"--size.* must be in \[1, 4096\] pixels, got 100000"),
    (["--size", "0"], "--size"),
])
def test_bad_options_are_errors_naming_the_option(tmp_path, bright, capsys, arguments, message):
    write_image(tmp_path / "in/a.png", frame_with_square(1, 1, 4))
    assert pp.main([str(tmp_path / "in"), str(tmp_path / "out"), "--detector", bright, *arguments]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error) and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "out").exists()


def test_output_that_is_an_existing_file_is_an_error(tmp_path, bright, capsys):
    write_image(tmp_path / "in/a.png", frame_with_square(1, 1, 4))
    (tmp_path / "out").write_text("notes")
    assert pp.main([str(tmp_path / "in"), str(tmp_path / "out"), "--detector", bright]) == 2
    assert "output folder (OUTPUT) " in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "notes"
    assert pp.main([str(tmp_path / "in"), str(tmp_path / "out2"), "--detector", bright, "--report", str(tmp_path)]) == 2
    assert "report (--report)" in capsys.readouterr().err


def test_16_bit_float_and_rotated_images_are_cropped_like_the_loaders_read_them(tmp_path, bright):
    square = frame_with_square(10, 8, 20)  # 8-bit BGR: 40 background, 255 square
    write_image(tmp_path / "in/eight.png", square)
    write_image(tmp_path / "in/sixteen.png", square.astype(np.uint16) * 257)
    write_image(tmp_path / "in/float.tiff", square.astype(np.float32) / 255)
    rotated = np.ascontiguousarray(np.rot90(square, 1))  # stored rotated, EXIF 6 turns it back upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rotated[:, :, ::-1]).save(tmp_path / "in/exif.png", exif=exif)

    report = pp.preprocess(tmp_path / "in", tmp_path / "out", margin=2.0, size=40, detector=bright, progress=False)

    assert report.crops_written == 4 and report.unreadable == {}
    expected = cv2.imread(str(tmp_path / "out/eight.png"))
    # margin 2 around the 20-pixel square at (10, 8): columns 0..39, rows -2..37, so 2 black rows on top
    assert (expected[:2] == 0).all() and (expected[2:8, :10] == 40).all() and (expected[12:30, 12:28] == 255).all()
    for name in ("sixteen", "float", "exif"):
        assert np.array_equal(cv2.imread(str(tmp_path / f"out/{name}.png")), expected), name


def test_missing_haar_cascade_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(pp.cv2.data, "haarcascades", str(tmp_path))  # an OpenCV build without the XML files
    with pytest.raises(FileNotFoundError, match="ships no Haar cascade.*pip install 'opencv-python-headless>=4.8,<5'"):
        pp.create_detector("haar")
    monkeypatch.delattr(pp.cv2, "CascadeClassifier")  # OpenCV 5
    with pytest.raises(ValueError, match="lacks .*pip install 'opencv-python-headless>=4.8,<5'.*--detector yunet"):
        pp.create_detector("haar")


def test_declared_opencv_is_4_which_ships_the_cascade():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    (opencv,) = [Requirement(d) for d in dependencies if Requirement(d).name == "opencv-python-headless"]
    assert not opencv.specifier.contains("5.0.0") and opencv.specifier.contains("4.8.0")
    with open(os.path.join(root, "constraints.txt")) as file:
        (pin,) = [line.split("==")[1].strip() for line in file if line.startswith("opencv-python-headless==")]
    assert opencv.specifier.contains(pin) and pin.startswith("4.")


def test_bad_settings(tmp_path, bright):
    write_image(tmp_path / "in/a.png", frame_with_square(1, 1, 4))
    with pytest.raises(ValueError, match="margin .* must be a finite number"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", margin=0, detector=bright)
    with pytest.raises(ValueError, match="frames_per_video must be >= 1"):
        pp.preprocess(tmp_path / "in", tmp_path / "out", frames_per_video=0, detector=bright)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="notes.txt is neither a video"):
        pp.preprocess(tmp_path / "notes.txt", tmp_path / "out", detector=bright)
