"""mlrank.data.io: the shared image reader (depth, EXIF orientation, the pixel bound) and the output checks."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mlrank.data import io
from mlrank.data.binary import FrameFolderDataset


def write(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def png_declaring(width, height):
    """A tiny PNG whose header declares width x height 8-bit grey pixels (and which holds none)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- depth and range


def test_8_bit_values_are_divided_by_255(tmp_path):
    bgr = np.array([[[10, 20, 30], [0, 128, 255]]], dtype=np.uint8)
    image = io.read_rgb(write(tmp_path / "a.png", bgr))
    assert image.dtype == torch.float32 and image.shape == (3, 1, 2)
    assert torch.equal(image[:, 0, 1], torch.tensor([255.0, 128.0, 0.0]) / 255.0)  # RGB order


def test_16_bit_grey_mid_grey_reads_as_mid_grey(tmp_path):
    image = io.read_rgb(write(tmp_path / "grey16.png", np.full((3, 4), 32768, dtype=np.uint16)))
    assert image.shape == (3, 3, 4)
    assert torch.allclose(image, torch.full((3, 3, 4), 32768 / 65535))


def test_16_bit_colour_keeps_its_depth(tmp_path):
    bgr = np.zeros((2, 2, 3), dtype=np.uint16)
    bgr[...] = (1000, 30001, 65535)
    for name in ("colour16.png", "colour16.tiff"):
        image = io.read_rgb(write(tmp_path / name, bgr))
        # 30001 / 65535 is no multiple of 1 / 255: an 8-bit decoder could not return it
        assert torch.allclose(image[:, 1, 1], torch.tensor([65535, 30001, 1000]) / 65535.0), name


def test_float_tiff_is_read_as_0_to_1(tmp_path):
    bgr = np.zeros((2, 3, 3), dtype=np.float32)
    bgr[...] = (0.25, 0.5, 0.75)
    image = io.read_rgb(write(tmp_path / "colour.tiff", bgr))
    assert torch.equal(image[:, 0, 0], torch.tensor([0.75, 0.5, 0.25]))
    grey = io.read_rgb(write(tmp_path / "grey.tiff", np.full((2, 3), 0.25, dtype=np.float32)))
    assert torch.equal(grey, torch.full((3, 2, 3), 0.25))


@pytest.mark.parametrize("value, message", [(2.0, r"values in \[0.5, 2\]; float images must hold \[0, 1\]"),
                                            (np.nan, "NaN or Inf")])
def test_float_values_outside_0_1_are_an_error_naming_the_file(tmp_path, value, message):
    pixels = np.full((2, 2), 0.5, dtype=np.float32)
    pixels[0, 0] = value
    path = write(tmp_path / "bad.tiff", pixels)
    with pytest.raises(ValueError, match=f"bad.tiff .*{message}"):
        io.read_rgb(path)


def test_float_rounding_just_outside_0_1_is_clipped(tmp_path):
    pixels = np.array([[-0.001, 1.001]], dtype=np.float32)
    assert io.read_rgb(write(tmp_path / "edge.tiff", pixels))[0].tolist() == [[0.0, 1.0]]


def test_signed_pixels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="signed.tiff has int16 pixels"):
        io.read_rgb(write(tmp_path / "signed.tiff", np.full((2, 2), -5, dtype=np.int16)))


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_truncated_file_is_an_error_naming_it(tmp_path, extension):
    rng = np.random.default_rng(0)
    whole = write(tmp_path / f"whole{extension}", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = whole.read_bytes()
    (tmp_path / f"cut{extension}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"cannot decode image .*cut{extension}"):
        io.read_rgb(tmp_path / f"cut{extension}")
    with pytest.raises(FileNotFoundError, match="image file not found: .*absent.png"):
        io.read_rgb(tmp_path / "absent.png")


# ---------------------------------------------------------------- EXIF orientation

# What each EXIF orientation asks a viewer to do to the stored pixels (EXIF 2.3, tag 0x0112)
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirror along the main diagonal
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirror along the anti-diagonal
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


def save_with_orientation(path, rgb, orientation, **options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, **options)
    return path


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_is_applied(tmp_path, orientation):
    rgb = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    path = save_with_orientation(tmp_path / "oriented.png", rgb, orientation)
    expected = DISPLAYED[orientation](rgb).transpose(2, 0, 1).astype(np.float32) / 255.0
    assert torch.equal(io.read_rgb(path), torch.from_numpy(expected))


def test_exif_orientation_of_a_jpeg_camera_photo(tmp_path):
    # stored 40 wide x 24 high with a white block top-left; orientation 6 displays it 24 x 40, block top-right
    rgb = np.zeros((24, 40, 3), dtype=np.uint8)
    rgb[:8, :16] = 255
    path = save_with_orientation(tmp_path / "photo.jpg", rgb, 6, quality=95)
    image = io.read_rgb(path)
    assert image.shape == (3, 40, 24)
    assert image[:, :16, -8:].mean() > 0.9 and image[:, :16, :8].mean() < 0.1


# ---------------------------------------------------------------- the pixel bound


@pytest.mark.parametrize("side", [100_000, 10_000])  # beyond Pillow's own hard limit, and between it and ours
def test_decompression_bomb_is_an_error_naming_the_file(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(side, side))
    assert path.stat().st_size < 100  # tiny on disk, side^2 bytes once decoded
    with pytest.raises(ValueError, match="bomb.png is too large to read"):
        io.read_rgb(path)


def test_decompression_bomb_in_a_data_loader_names_the_file(tmp_path):
    write(tmp_path / "real/clip/000000.png", np.zeros((4, 4, 3), dtype=np.uint8))
    (tmp_path / "real/clip/000001.png").write_bytes(png_declaring(100_000, 100_000))
    loader = DataLoader(FrameFolderDataset(tmp_path), batch_size=1, num_workers=1)
    with pytest.raises(ValueError, match="000001.png is too large to read"):
        list(loader)


def test_pixel_bound_applies_to_every_format(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_IMAGE_PIXELS", 99)
    small = write(tmp_path / "small.png", np.zeros((9, 11), dtype=np.uint8))
    assert io.read_rgb(small).shape == (3, 9, 11)  # 99 pixels: at the bound
    write(tmp_path / "big.png", np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"big.png is too large to read: 10 x 10 = 100 pixels"):
        io.read_rgb(tmp_path / "big.png")
    # Pillow cannot parse a float RGB TIFF's header: the bound is checked once OpenCV has decoded it
    write(tmp_path / "big.tiff", np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"big.tiff is too large to read: 10 x 10 = 100 pixels"):
        io.read_rgb(tmp_path / "big.tiff")


# ---------------------------------------------------------------- output checks


def test_output_apart_from_inputs(tmp_path):
    (tmp_path / "in/sub").mkdir(parents=True)
    (tmp_path / "in/a.png").write_bytes(b"")
    inputs = [tmp_path / "in"]
    io.check_output_apart(tmp_path / "out", "OUTPUT", inputs)  # apart: no error
    io.check_output_apart(tmp_path / "input2", "OUTPUT", inputs)  # a shared name prefix is not nesting
    cases = {tmp_path / "in": "is", tmp_path / "in/new": "lies inside", tmp_path: "contains"}
    for output, relation in cases.items():
        with pytest.raises(ValueError, match=f"OUTPUT {output} {relation} the input {tmp_path / 'in'}"):
            io.check_output_apart(output, "OUTPUT", inputs)
    with pytest.raises(ValueError, match="contains the input .*a.png"):
        io.check_output_apart(tmp_path / "in", "OUTPUT", [tmp_path / "in/a.png"])
    (tmp_path / "link").symlink_to(tmp_path / "in/sub")
    with pytest.raises(ValueError, match="lies inside the input"):
        io.check_output_apart(tmp_path / "link/x.png", "OUTPUT", inputs)


def test_refuse_existing_outputs():
    io.refuse_existing_outputs([])
    with pytest.raises(FileExistsError, match=r"4 output\(s\) already exist \(a, b, c, \.\.\.\); pass --overwrite"):
        io.refuse_existing_outputs(["a", "b", "c", "d"])


@pytest.mark.parametrize("height, width", [(40, 24), (25, 40), (31, 30), (32, 32)])
def test_a_non_square_frame_is_fed_to_a_model_alike_by_the_loaders_and_by_predict(tmp_path, height, width):
    from mlrank.data.binary import FrameFolderDataset
    from mlrank.data.squares import whole_image_square
    from mlrank.engine.builders import Resize
    from mlrank.predict import model_input

    generator = np.random.default_rng(height * width)
    pixels = generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    video = tmp_path / "frames" / "test" / "real" / "clip"
    video.mkdir(parents=True)
    Image.fromarray(pixels).save(video / "0.png")
    loaded = FrameFolderDataset(tmp_path / "frames" / "test", frames_per_video=None, transform=Resize(16))[0][0]
    image = pixels.astype(np.float32) / 255
    predicted = model_input(image, whole_image_square(height, width), 16)
    assert torch.equal(loaded, predicted)
    # padded, not squashed: the padding is black and the image keeps its aspect ratio
    side = max(height, width)
    padded = Resize(side)(torch.from_numpy(image.transpose(2, 0, 1).copy()))
    assert padded.shape == (3, side, side) and float(padded.sum()) == pytest.approx(float(image.sum()), rel=1e-5)
