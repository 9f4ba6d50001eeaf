"""The Seq-DeepFake loader on fixtures written in the official layout, and every malformed-row case."""

import csv
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mlrank.data.seqdeepfake import SeqDeepFakeDataset, parse_sequence
from mlrank.data.vocab import FACIAL_ATTRIBUTES, FACIAL_COMPONENTS
from mlrank.engine.builders import build_dataset
from mlrank.engine.config import load_config

# (sequence folder, image name, label as written in the official CSVs, grey level of the image)
REQUIRED = ("file_path", "label")
ROWS = [
    ("nose-eye-lip", "000001.png", "[1, 2, 4, 0, 0]", 10),
    ("original", "000002.png", "[0, 0, 0, 0, 0]", 20),
    ("eyebrow-eye-hair-nose-lip", "000003.png", "[3, 2, 5, 1, 4]", 30),
]


def write_image(path, grey, size=(6, 4)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 0] = grey
    pixels[..., 1] = grey + 1
    pixels[..., 2] = grey + 2
    Image.fromarray(pixels).save(path)


def write_split(root, subset="facial_components", split="train", rows=ROWS, extra_rows=(), header=REQUIRED):
    """Write images and annotations/<split>.csv in the official layout; returns the CSV path."""
    records = []
    for folder, name, label, grey in rows:
        file_path = f"{subset}/images/{split}/{folder}/{name}"
        write_image(os.path.join(root, file_path), grey)
        records.append((file_path, label))
    records.extend(extra_rows)
    csv_path = os.path.join(root, subset, "annotations", f"{split}.csv")
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(records)
    return csv_path


def test_loads_the_official_layout(tmp_path):
    write_split(tmp_path)
    dataset = SeqDeepFakeDataset(tmp_path, "facial_components", "train")

    assert len(dataset) == 3
    assert dataset.names == FACIAL_COMPONENTS
    expected = torch.tensor([[1, 2, 4, 0, 0], [0, 0, 0, 0, 0], [3, 2, 5, 1, 4]])
    assert torch.equal(dataset.sequences(), expected)
    assert dataset.sequences().dtype == torch.long
    assert [dataset.is_real(i) for i in range(3)] == [False, True, False]

    image, sequence = dataset[2]
    assert image.dtype == torch.float32 and image.shape == (3, 4, 6)
    assert torch.allclose(image[:, 0, 0], torch.tensor([30.0, 31.0, 32.0]) / 255)
    assert sequence.dtype == torch.long and torch.equal(sequence, expected[2])


def test_attribute_subset_and_transform(tmp_path):
    write_split(tmp_path, subset="facial_attributes", split="val")
    seen = []

    def transform(image):
        seen.append(image.clone())
        return image * 2

    dataset = SeqDeepFakeDataset(tmp_path, "facial_attributes", "val", transform=transform)
    image, _ = dataset[0]
    assert dataset.names == FACIAL_ATTRIBUTES
    assert len(seen) == 1 and seen[0].dtype == torch.float32 and seen[0].shape == (3, 4, 6)
    assert float(seen[0].min()) == pytest.approx(10 / 255) and float(seen[0].max()) == pytest.approx(12 / 255)
    assert torch.allclose(image[:, 0, 0], 2 * torch.tensor([10.0, 11.0, 12.0]) / 255)


def test_sequences_are_copies(tmp_path):
    write_split(tmp_path)
    dataset = SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    dataset.sequences()[0, 0] = 5
    dataset[0][1][0] = 5
    assert dataset.sequences()[0, 0] == 1


MALFORMED = [
    ("[1, 2, x, 0, 0]", "not a list of integers"),
    ("1, 2, 4, 0, 0", "not a list of integers"),
    ("[1.0, 2, 4, 0, 0]", "not a list of integers"),
    ("", "not a list of integers"),
    ("[1, 2, 4, 0]", "has 4 ids, expected 5"),
    ("[1, 2, 4, 0, 0, 0]", "has 6 ids, expected 5"),
    ("[1, 6, 0, 0, 0]", "id 6 outside 0..5"),
    ("[-1, 0, 0, 0, 0]", "id -1 outside 0..5"),
    ("[1, 0, 2, 0, 0]", "id 2 after a 0"),
    ("[0, 0, 0, 0, 3]", "id 3 after a 0"),
    ("[1, 2, 1, 0, 0]", "repeated"),
]


@pytest.mark.parametrize("label, reason", MALFORMED)
def test_malformed_label_names_file_row_and_reason(tmp_path, label, reason):
    # the bad row comes after the header and one good row: CSV line 3
    rows = ROWS[:1] + [("nose", "bad.png", label, 40)]
    csv_path = write_split(tmp_path, rows=rows)
    with pytest.raises(ValueError) as caught:
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    message = str(caught.value)
    assert csv_path in message and "row 3" in message and reason in message


def test_missing_image_names_file_row_and_image(tmp_path):
    missing = "facial_components/images/train/nose/absent.png"
    csv_path = write_split(tmp_path, extra_rows=[(missing, "[1, 0, 0, 0, 0]")])
    with pytest.raises(ValueError) as caught:
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    message = str(caught.value)
    assert csv_path in message and "row 5" in message and "image not found" in message and "absent.png" in message


def test_empty_file_path_and_short_row(tmp_path):
    write_split(tmp_path, extra_rows=[("", "[1, 0, 0, 0, 0]")])
    with pytest.raises(ValueError, match="row 5: empty file_path"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    write_split(tmp_path, extra_rows=[("only-one-field",)])
    with pytest.raises(ValueError, match="row 5: 1 fields where the header has 2"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")


def test_skip_malformed_drops_reports_and_warns(tmp_path, caplog):
    bad = [
        ("facial_components/images/train/nose/absent.png", "[1, 0, 0, 0, 0]"),  # line 5
        ("facial_components/images/train/original/000002.png", "[0, 1, 0, 0, 0]"),  # line 6
    ]
    write_split(tmp_path, extra_rows=bad)
    with caplog.at_level(logging.WARNING, logger="mlrank.data.seqdeepfake"):
        with pytest.warns(UserWarning, match="skipped 2 malformed row"):
            dataset = SeqDeepFakeDataset(tmp_path, "facial_components", "train", skip_malformed=True)
    assert len(dataset) == 3
    assert [row for row, _ in dataset.skipped] == [5, 6]
    assert "image not found" in dataset.skipped[0][1] and "after a 0" in dataset.skipped[1][1]
    assert any("skipped 2 malformed row" in record.getMessage() for record in caplog.records)


def test_no_warning_when_nothing_is_skipped(tmp_path, recwarn):
    write_split(tmp_path)
    dataset = SeqDeepFakeDataset(tmp_path, "facial_components", "train", skip_malformed=True)
    assert dataset.skipped == [] and len(recwarn) == 0


def test_every_row_malformed_is_an_error_even_when_skipping(tmp_path):
    write_split(tmp_path, rows=[("nose", "a.png", "[9, 0, 0, 0, 0]", 1)])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable rows"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "train", skip_malformed=True)


def test_blank_lines_are_not_rows_but_keep_line_numbers(tmp_path):
    csv_path = write_split(tmp_path)
    with open(csv_path, "a") as handle:
        handle.write("\n" + 'facial_components/images/train/nose-eye-lip/000001.png,"[1, 1, 0, 0, 0]"\n')
    with pytest.raises(ValueError, match="row 6: .*repeated"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")


def test_missing_csv_and_missing_column(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"facial_components.annotations.test\.csv"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "test")
    write_split(tmp_path, header=("file_path", "labels"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")


def test_file_paths_must_stay_inside_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(str(outside / "secret.png"), 99)
    escapes = {
        str(outside / "secret.png"): "is absolute, outside the data root",  # exists
        str(outside / "absent.png"): "is absolute, outside the data root",  # does not: same error, no stat
        "../outside/secret.png": "has a '..' component",
        "facial_components/../../outside/secret.png": "has a '..' component",
    }
    for file_path, reason in escapes.items():
        csv_path = write_split(root, extra_rows=[(file_path, "[1, 0, 0, 0, 0]")])
        with pytest.raises(ValueError) as caught:
            SeqDeepFakeDataset(root, "facial_components", "train")
        message = str(caught.value)
        assert message.startswith(f"{csv_path}, row 5: file_path {file_path!r} ") and reason in message
        with pytest.warns(UserWarning, match="skipped 1 malformed row"):
            assert len(SeqDeepFakeDataset(root, "facial_components", "train", skip_malformed=True)) == 3

    # allowed explicitly, through the config key too
    outside_rows = [(str(outside / "secret.png"), "[1, 0, 0, 0, 0]"), ("../outside/secret.png", "[2, 0, 0, 0, 0]")]
    write_split(root, extra_rows=outside_rows)
    dataset = SeqDeepFakeDataset(root, "facial_components", "train", allow_paths_outside_root=True)
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in (3, 4)] == [99, 99]
    base = ["data.kind=seqdeepfake", f"data.root={root}", "data.image_size=8"]
    with pytest.raises(ValueError, match="row 5: file_path .* is absolute"):
        build_dataset(load_config(None, base), "train")
    assert len(build_dataset(load_config(None, [*base, "data.allow_paths_outside_root=true"]), "train")) == 5

    # a symlink inside the root is followed wherever it points
    os.symlink(outside, root / "facial_components/linked")
    write_split(root, extra_rows=[("facial_components/linked/secret.png", "[1, 0, 0, 0, 0]")])
    dataset = SeqDeepFakeDataset(root, "facial_components", "train")
    assert round(float(dataset[3][0][0, 0, 0]) * 255) == 99


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("utf-16", r"train.csv is UTF-16 \(or UTF-32\) text; save it as UTF-8"),
        ("utf-16-le", r"train.csv, line 1: a NUL byte \(UTF-16 text without a byte-order mark"),
        ("latin-1", r"train.csv, line 3: byte 0xe9 is not UTF-8 \(latin-1"),
    ],
)
def test_csv_in_another_encoding_is_named(tmp_path, encoding, message):
    rows = [("nose", "000001.png", "[1, 0, 0, 0, 0]", 10), ("nose", "caf\u00e9.png", "[1, 0, 0, 0, 0]", 20)]
    csv_path = write_split(tmp_path, rows=rows)
    with open(csv_path, encoding="utf-8") as handle:
        text = handle.read()
    with open(csv_path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    with pytest.raises(ValueError, match=message) as caught:
        SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    assert csv_path in str(caught.value)
    # UTF-8 with a byte-order mark (what Excel writes) is read
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as handle:
        handle.write(text)
    assert len(SeqDeepFakeDataset(tmp_path, "facial_components", "train")) == 2


def test_unknown_subset(tmp_path):
    with pytest.raises(ValueError, match="unknown Seq-DeepFake subset 'faces'"):
        SeqDeepFakeDataset(tmp_path, "faces", "train")


def test_corrupt_image_is_named_when_loaded(tmp_path):
    write_split(tmp_path)
    corrupt = tmp_path / "facial_components/images/train/original/000002.png"
    corrupt.write_bytes(b"not a png at all")
    dataset = SeqDeepFakeDataset(tmp_path, "facial_components", "train")
    assert torch.equal(dataset.sequences()[1], torch.zeros(5, dtype=torch.long))  # built without reading it
    with pytest.raises(ValueError, match="cannot decode image .*000002.png"):
        dataset[1]


@pytest.mark.parametrize(
    "label, ids",
    [
        ("[1, 2, 4, 0, 0]", [1, 2, 4, 0, 0]),
        ("[0,0,0,0,0]", [0, 0, 0, 0, 0]),
        (" [ 5,4, 3 ,2,1 ] ", [5, 4, 3, 2, 1]),
    ],
)
def test_parse_sequence_worked_examples(label, ids):
    assert parse_sequence(label) == ids
