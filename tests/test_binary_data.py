"""Binary data sets: DeepfakeBench's JSON index and the real/fake frame-folder layout."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mlrank.data.binary import DeepfakeBenchDataset, FrameFolderDataset
from mlrank.data.io import evenly_spaced_indices
from mlrank.engine.builders import build_dataset
from mlrank.engine.config import load_config
from mlrank.train import check_paths


def write_frame(path, grey):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((4, 5, 3), grey, dtype=np.uint8)).save(path)


def write_video(folder, count, grey_of=lambda i: i):
    """Frames 0.png .. (count-1).png with grey level grey_of(i); returns their paths in a scrambled order."""
    paths = []
    for index in range(count):
        path = os.path.join(folder, f"{index}.png")
        write_frame(path, grey_of(index))
        paths.append(path)
    return paths[::-1]


def test_evenly_spaced_indices_worked_examples():
    assert evenly_spaced_indices(10, 4) == [0, 3, 6, 9]  # linspace 0, 3, 6, 9
    assert evenly_spaced_indices(11, 3) == [0, 5, 10]
    assert evenly_spaced_indices(7, 4) == [0, 2, 4, 6]  # 0, 2, 4, 6
    assert evenly_spaced_indices(3, 32) == [0, 1, 2]
    assert evenly_spaced_indices(5, None) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="frames_per_video must be >= 1"):
        evenly_spaced_indices(5, 0)


# ---------------------------------------------------------------- DeepfakeBench JSON index


@pytest.fixture
def ff_index(tmp_path):
    """A FaceForensics++-style index: relative paths written with backslashes, as DeepfakeBench ships them."""
    frames = tmp_path / "frames"
    ff = frames / "FaceForensics++"
    real_c23 = write_video(ff / "original_sequences/youtube/c23/frames/000", 12, lambda i: 10 + i)
    fake_c23 = write_video(ff / "manipulated_sequences/Deepfakes/c23/frames/000_003", 3, lambda i: 100 + i)
    real_c40 = write_video(ff / "original_sequences/youtube/c40/frames/000", 2, lambda i: 200 + i)

    def relative(paths):
        return [os.path.relpath(p, frames).replace("/", "\\") for p in paths]

    index = {
        "FaceForensics++": {
            "FF-real": {
                "train": {
                    "c23": {"000": {"label": "FF-real", "frames": relative(real_c23)}},
                    "c40": {"000": {"label": "FF-real", "frames": relative(real_c40)}},
                },
                "test": {"c23": {}, "c40": {}},
            },
            "FF-DF": {
                "train": {
                    "c23": {"000_003": {"label": "FF-DF", "frames": relative(fake_c23), "masks": []}},
                    "c40": {},
                },
                "test": {"c23": {}, "c40": {}},
            },
        }
    }
    json_path = tmp_path / "FaceForensics++.json"
    json_path.write_text(json.dumps(index))
    return json_path, frames


def test_json_index_selects_frames_labels_and_ids(ff_index):
    json_path, frames = ff_index
    dataset = DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, frames_per_video=4)

    # real video: 12 frames, linspace(0, 11, 4) -> 0, 3, 7, 11; fake video: 3 frames, all kept
    greys = [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(len(dataset))]
    assert greys == [10, 13, 17, 21, 100, 101, 102]
    assert torch.equal(dataset.labels(), torch.tensor([0, 0, 0, 0, 1, 1, 1]))
    assert dataset.video_ids() == ["FF-real/000"] * 4 + ["FF-DF/000_003"] * 3
    image, label, video_id = dataset[5]
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    assert label == 1 and video_id == "FF-DF/000_003"


def test_json_index_compression_and_all_frames(ff_index):
    json_path, frames = ff_index
    dataset = DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, compression="c40")
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(len(dataset))] == [200, 201]
    everything = DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, frames_per_video=None)
    assert len(everything) == 15


def test_json_index_without_compression_level_and_absolute_paths(tmp_path):
    # Celeb-DF: the split holds the videos directly; paths absolute on the machine that wrote the JSON
    local = tmp_path / "local"
    real = write_video(local / "Celeb-real/frames/id0_0000", 2, lambda i: 50 + i)
    fake = write_video(local / "Celeb-synthesis/frames/id0_id1_0000", 2, lambda i: 60 + i)
    written_on = "/data/old/datasets"
    real, fake = ([path.replace(str(local), written_on) for path in paths] for paths in (real, fake))
    index = {
        "Celeb-DF-v2": {
            "CelebDFv2_real": {"test": {"id0_0000": {"label": "CelebDFv2_real", "frames": real}}},
            "CelebDFv2_fake": {"test": {"id0_id1_0000": {"label": "CelebDFv2_fake", "frames": fake}}},
        }
    }
    json_path = tmp_path / "Celeb-DF-v2.json"
    json_path.write_text(json.dumps(index))

    dataset = DeepfakeBenchDataset(json_path, "Celeb-DF-v2", "test", root=local, json_prefix=written_on + "/")
    assert torch.equal(dataset.labels(), torch.tensor([0, 0, 1, 1]))
    assert dataset.video_ids() == ["CelebDFv2_real/id0_0000"] * 2 + ["CelebDFv2_fake/id0_id1_0000"] * 2
    assert round(float(dataset[3][0][0, 0, 0]) * 255) == 61

    absolute = "id0_0000, frames\\[0\\]: frame path .* is absolute, outside the data root .*; set json_prefix"
    with pytest.raises(ValueError, match=absolute):
        DeepfakeBenchDataset(json_path, "Celeb-DF-v2", "test", root=local)
    with pytest.raises(ValueError, match="does not start with json_prefix '/elsewhere'"):
        DeepfakeBenchDataset(json_path, "Celeb-DF-v2", "test", root=local, json_prefix="/elsewhere")
    with pytest.raises(ValueError, match="pass root"):
        DeepfakeBenchDataset(json_path, "Celeb-DF-v2", "test")
    with pytest.raises(FileNotFoundError, match="/data/old/datasets/Celeb-real"):  # paths used as written
        DeepfakeBenchDataset(json_path, "Celeb-DF-v2", "test", allow_paths_outside_root=True)


def test_json_index_errors_name_the_problem(ff_index, tmp_path):
    json_path, frames = ff_index
    with pytest.raises(FileNotFoundError, match="missing.json"):
        DeepfakeBenchDataset(tmp_path / "missing.json", "FaceForensics++", "train", root=frames)
    with pytest.raises(ValueError, match=r"unknown data set 'FF\+\+'; available: \['FaceForensics\+\+'\]"):
        DeepfakeBenchDataset(json_path, "FF++", "train", root=frames)
    with pytest.raises(ValueError, match="FaceForensics\\+\\+/FF-real: unknown split 'val'"):
        DeepfakeBenchDataset(json_path, "FaceForensics++", "val", root=frames)
    with pytest.raises(ValueError, match=r"unknown compression level 'raw'; available: \['c23', 'c40'\]"):
        DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, compression="raw")
    with pytest.raises(ValueError, match="no frames for 'FaceForensics\\+\\+', split 'test'"):
        DeepfakeBenchDataset(json_path, "FaceForensics++", "test", root=frames)
    with pytest.raises(ValueError, match="frames_per_video must be >= 1"):
        DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, frames_per_video=0)

    os.remove(frames / "FaceForensics++/original_sequences/youtube/c23/frames/000/11.png")
    with pytest.raises(FileNotFoundError, match="not found: .*frames/000/11.png"):
        DeepfakeBenchDataset(json_path, "FaceForensics++", "train", root=frames, frames_per_video=4)


def test_json_index_unknown_label_and_custom_label_dict(tmp_path):
    frames = write_video(tmp_path / "wdf/real/v1", 1)
    index = {"WildDeepfake": {"WDF-real": {"test": {"v1": {"label": "WDF-real", "frames": frames}}}}}
    json_path = tmp_path / "WildDeepfake.json"
    json_path.write_text(json.dumps(index))
    as_written = {"allow_paths_outside_root": True}  # the frames' absolute paths
    with pytest.raises(ValueError, match="WildDeepfake/WDF-real/test/v1: unknown label 'WDF-real'"):
        DeepfakeBenchDataset(json_path, "WildDeepfake", "test", **as_written)
    dataset = DeepfakeBenchDataset(json_path, "WildDeepfake", "test", label_dict={"WDF-real": 0}, **as_written)
    assert dataset.labels().tolist() == [0]
    with pytest.raises(ValueError, match="maps 'WDF-real' to 2"):
        DeepfakeBenchDataset(json_path, "WildDeepfake", "test", label_dict={"WDF-real": 2}, **as_written)


def test_json_index_malformed_content(tmp_path):
    json_path = tmp_path / "bad.json"
    json_path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        DeepfakeBenchDataset(json_path, "X", "train", root=tmp_path)
    json_path.write_text(json.dumps({"X": {"X_real": {"train": {"v": {"label": "real"}}}}}))
    with pytest.raises(ValueError, match=r"X/X_real/train/v: expected \{'label'"):
        DeepfakeBenchDataset(json_path, "X", "train", root=tmp_path)
    # DeepfakeBench's DFDC script writes one record straight under "val"
    json_path.write_text(json.dumps({"X": {"X_real": {"val": {"label": "real", "frames": []}}}}))
    with pytest.raises(ValueError, match="X/X_real/val: a single video record"):
        DeepfakeBenchDataset(json_path, "X", "val", root=tmp_path)
    json_path.write_bytes(json.dumps({"X": {}}).encode("utf-16"))
    with pytest.raises(ValueError, match="bad.json is UTF-16"):
        DeepfakeBenchDataset(json_path, "X", "val", root=tmp_path)


def write_index(path, frames):
    """A one-video index (data set "X", label key "X_real", split "test", video "v") of the given frames."""
    path.write_text(json.dumps({"X": {"X_real": {"test": {"v": {"label": "real", "frames": frames}}}}}))
    return path


def test_json_frame_paths_must_stay_inside_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_frame(str(root / "v/0.png"), 5)
    write_frame(str(outside / "secret.png"), 99)
    json_path = tmp_path / "X.json"
    where = f"{json_path}: X/X_real/test/v, frames[1]: "
    escapes = {
        "../outside/secret.png": "has a '..' component",  # exists
        "v/../../outside/absent.png": "has a '..' component",  # does not: the same error, no stat
        "..\\outside\\secret.png": "has a '..' component",  # Windows separators
        str(outside / "secret.png"): "is absolute, outside the data root",
    }
    for frame, reason in escapes.items():
        write_index(json_path, ["v/0.png", frame])
        with pytest.raises(ValueError) as error:
            DeepfakeBenchDataset(json_path, "X", "test", root=root)
        assert str(error.value).startswith(where) and reason in str(error.value)
    # an absolute path rewritten through json_prefix must stay inside too
    write_index(json_path, ["/old/v/0.png", "/old/../outside/secret.png"])
    with pytest.raises(ValueError, match=r"frames\[1\]: frame path '\.\./outside/secret.png' has a '\.\.' component"):
        DeepfakeBenchDataset(json_path, "X", "test", root=root, json_prefix="/old")

    # allowed explicitly: read as written
    write_index(json_path, ["v/0.png", "../outside/secret.png", str(outside / "secret.png")])
    dataset = DeepfakeBenchDataset(json_path, "X", "test", root=root, allow_paths_outside_root=True)
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(3)] == [5, 99, 99]
    # a symlink inside the root is followed wherever it points (data sets are assembled so)
    os.symlink(outside, root / "linked")
    write_index(json_path, ["v/0.png", "linked/secret.png"])
    dataset = DeepfakeBenchDataset(json_path, "X", "test", root=root)
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(2)] == [5, 99]


# ---------------------------------------------------------------- folder layout


def test_frame_folders_labels_ids_and_spacing(tmp_path):
    write_video(tmp_path / "real/vid_a", 5, lambda i: 10 + i)
    write_video(tmp_path / "fake/vid_b", 11, lambda i: 100 + i)
    (tmp_path / "fake/vid_b/notes.txt").write_text("not a frame")
    (tmp_path / "report.json").write_text("{}")

    dataset = FrameFolderDataset(tmp_path, frames_per_video=3)
    # fake first (sorted class folders); 11 frames -> 0, 5, 10; 5 frames -> 0, 2, 4
    assert dataset.video_ids() == ["fake/vid_b"] * 3 + ["real/vid_a"] * 3
    assert dataset.labels().tolist() == [1, 1, 1, 0, 0, 0]
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(6)] == [100, 105, 110, 10, 12, 14]
    image, label, video_id = dataset[3]
    assert image.shape == (3, 4, 5) and label == 0 and video_id == "real/vid_a"


def test_frame_folders_nested_videos_and_loose_images(tmp_path):
    write_video(tmp_path / "real/youtube/000", 2)
    write_frame(str(tmp_path / "real/single.png"), 7)
    write_video(tmp_path / "real/.cache/x", 1)  # hidden: passed over
    dataset = FrameFolderDataset(tmp_path, frames_per_video=None)
    assert dataset.video_ids() == ["real/single.png", "real/youtube/000", "real/youtube/000"]
    assert dataset.labels().tolist() == [0, 0, 0]


def test_frame_folders_give_a_file_and_a_folder_of_one_name_distinct_ids(tmp_path):
    write_frame(str(tmp_path / "real/a.png"), 1)
    write_frame(str(tmp_path / "real/a.jpg"), 2)
    write_video(tmp_path / "real/a", 2, lambda i: 3 + i)
    dataset = FrameFolderDataset(tmp_path, frames_per_video=None)
    greys = {}
    for image, _, video in (dataset[i] for i in range(len(dataset))):
        greys.setdefault(video, []).append(round(float(image[0, 0, 0]) * 255))
    assert greys == {"real/a": [3, 4], "real/a.jpg": [2], "real/a.png": [1]}


def test_frame_folders_follow_symlinked_videos_once(tmp_path):
    store = tmp_path / "store"
    write_video(store / "v1", 2, lambda i: 40 + i)
    root = tmp_path / "root"
    (root / "fake").mkdir(parents=True)
    os.symlink(store / "v1", root / "fake/v1")  # a data set assembled from symlinks
    dataset = FrameFolderDataset(root, frames_per_video=None)
    assert dataset.video_ids() == ["fake/v1", "fake/v1"]
    assert [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(2)] == [40, 41]
    os.symlink(store / "v1", root / "fake/v1_again")
    with pytest.raises(ValueError, match="fake/v1_again is the folder .*fake/v1 again"):
        FrameFolderDataset(root)
    os.remove(root / "fake/v1_again")
    os.symlink(root / "fake", store / "v1/loop")  # a cycle through the linked video
    with pytest.raises(ValueError, match="symlink loop"):
        FrameFolderDataset(root)


def test_frame_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="frame folder not found"):
        FrameFolderDataset(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="neither 'real/' nor 'fake/'"):
        FrameFolderDataset(tmp_path)
    write_video(tmp_path / "Real/v", 1)
    with pytest.raises(ValueError, match=r"unexpected folder\(s\) \['Real'\]"):
        FrameFolderDataset(tmp_path)
    os.rename(tmp_path / "Real", tmp_path / "real")
    (tmp_path / "fake/empty_video").mkdir(parents=True)
    with pytest.raises(ValueError, match="fake: no image files"):
        FrameFolderDataset(tmp_path)
    with pytest.raises(TypeError, match="frames_per_video must be an int"):
        FrameFolderDataset(tmp_path, frames_per_video=2.5)


# ---------------------------------------------------------------- DeepfakeBench's own output


def rearranged_indexes(tmp_path, written_root=None, windows=False):
    """Frames under tmp_path/rgb and a folder of indexes as DeepfakeBench's rearrange.py writes them
    for `dataset_root_path = written_root` (default: the real absolute frames folder): one JSON per
    data set, frame paths os.path.join(dataset_root_path, <data set>, ...) listed in scandir order,
    FaceForensics++ split by compression level, a Celeb-DF test video whose frame glob found nothing.
    Returns (json folder, frames folder)."""
    frames_root = tmp_path / "rgb"
    written_root = str(frames_root) if written_root is None else written_root
    separator = "\\" if windows else "/"

    def listed(paths):
        relative = (os.path.relpath(path, frames_root) for path in paths)
        return [written_root + separator + path.replace("/", separator) for path in relative]

    ff = frames_root / "FaceForensics++"
    real = write_video(ff / "original_sequences/youtube/c23/frames/000", 12, lambda i: i)
    fake = write_video(ff / "manipulated_sequences/Deepfakes/c23/frames/000_003", 2, lambda i: 200 + i)
    celeb = frames_root / "Celeb-DF-v2"
    celeb_real = write_video(celeb / "Celeb-real/frames/id0_0000", 5, lambda i: 10 + i)
    celeb_fake = write_video(celeb / "Celeb-synthesis/frames/id0_id1_0000", 3, lambda i: 100 + i)
    empty = {"train": {}, "val": {}, "test": {}}
    indexes = {
        "FaceForensics++": {
            "FF-real": {
                "train": {"c23": {"000": {"label": "FF-real", "frames": listed(real)}}},
                "val": {"c23": {}},
                "test": {"c23": {}},
            },
            "FF-DF": {
                "train": {"c23": {"000_003": {"label": "FF-DF", "frames": listed(fake), "masks": []}}},
                "val": {"c23": {}},
                "test": {"c23": {}},
            },
        },
        "Celeb-DF-v2": {
            "CelebDFv2_real": {
                **empty,
                "test": {
                    "id0_0000": {"label": "CelebDFv2_real", "frames": listed(celeb_real)},
                    "id9_0000": {"label": "CelebDFv2_real", "frames": []},
                },
            },
            "CelebDFv2_fake": {
                **empty,
                "test": {"id0_id1_0000": {"label": "CelebDFv2_fake", "frames": listed(celeb_fake)}},
            },
        },
    }
    json_folder = tmp_path / "dataset_json"
    json_folder.mkdir()
    for name, index in indexes.items():
        (json_folder / f"{name}.json").write_text(json.dumps({name: index}))
    return json_folder, frames_root


def deepfakebench_config(json_path, root, *overrides):
    return load_config(
        None,
        [
            "data.kind=deepfakebench", f"data.json_path={json_path}", f"data.root={root}",
            "data.dataset_name=FaceForensics++", "data.frames_per_video=4", "data.image_size=4",
            "model.out_stride=4", *overrides,
        ],
    )


def greys(dataset):
    return [round(float(dataset[i][0][0, 0, 0]) * 255) for i in range(len(dataset))]


def test_rearranged_absolute_paths_and_json_folder_load_through_the_config(tmp_path):
    json_folder, frames_root = rearranged_indexes(tmp_path)
    cfg = deepfakebench_config(json_folder, frames_root, "data.test_dataset_name=Celeb-DF-v2")
    check_paths(cfg)  # a folder of indexes is a valid data.json_path

    train = build_dataset(cfg, "train")  # FaceForensics++.json, absolute paths under data.root
    assert greys(train) == [0, 3, 7, 11, 200, 201]
    assert train.video_ids() == ["FF-real/000"] * 4 + ["FF-DF/000_003"] * 2

    with pytest.warns(UserWarning, match=r"1 of the 3 videos of 'Celeb-DF-v2', split 'test', list no frames "
                                         r"and are left out \(CelebDFv2_real/id9_0000\)"):
        test = build_dataset(cfg, "test")  # another data set by name: Celeb-DF-v2.json
    assert test.json_path == str(json_folder / "Celeb-DF-v2.json")
    assert test.videos_without_frames == ["CelebDFv2_real/id9_0000"]
    assert greys(test) == [10, 11, 12, 14, 100, 101, 102]  # 5 frames -> linspace 0, 1, 2, 4; 3 -> all
    assert test.labels().tolist() == [0] * 4 + [1] * 3

    missing = deepfakebench_config(json_folder, frames_root, "data.dataset_name=DFDC")
    with pytest.raises(FileNotFoundError, match=r"no index DFDC.json in the JSON folder .*\['Celeb-DF-v2', 'FaceForensics\+\+'\]"):
        build_dataset(missing, "train")
    # an absolute path outside data.root is still refused, naming the key that fixes it
    elsewhere = deepfakebench_config(json_folder, tmp_path / "dataset_json")
    with pytest.raises(ValueError, match=r"frames\[0\]: frame path '.*rgb/FaceForensics\+\+/.*' is absolute, "
                                         r"outside the data root .*data.json_prefix"):
        build_dataset(elsewhere, "train")


def test_json_prefix_is_a_config_key_for_moved_data(tmp_path):
    json_folder, frames_root = rearranged_indexes(tmp_path, written_root="/old/machine/datasets/rgb")
    cfg = deepfakebench_config(json_folder, frames_root, "data.json_prefix=/old/machine/datasets/rgb/")
    assert greys(build_dataset(cfg, "train")) == [0, 3, 7, 11, 200, 201]
    # the prefix matches whole folder names only
    near_miss = deepfakebench_config(json_folder, frames_root, "data.json_prefix=/old/machine/datasets/rg")
    with pytest.raises(ValueError, match="does not start with json_prefix '/old/machine/datasets/rg'"):
        build_dataset(near_miss, "train")


@pytest.mark.parametrize(
    "prefix", ["F:\\DeepfakeBench\\datasets\\rgb", "f:/deepfakebench/datasets/rgb/", "F:/DeepfakeBench/datasets/rgb"]
)
def test_windows_drive_and_backslash_paths(tmp_path, prefix):
    json_folder, frames_root = rearranged_indexes(tmp_path, "F:\\DeepfakeBench\\datasets\\rgb", windows=True)
    cfg = deepfakebench_config(json_folder, frames_root, f"data.json_prefix={prefix}")
    assert greys(build_dataset(cfg, "train")) == [0, 3, 7, 11, 200, 201]
    # without the prefix a drive path is absolute, not a relative "F:/..." under the root
    with pytest.raises(ValueError, match=r"frame path 'F:\\\\DeepfakeBench\\\\.*' is absolute, outside the data root"):
        build_dataset(deepfakebench_config(json_folder, frames_root), "train")


def test_frame_selection_first_is_deepfakebenchs_loader_rule(tmp_path):
    json_folder, frames_root = rearranged_indexes(tmp_path)
    first = build_dataset(deepfakebench_config(json_folder, frames_root, "data.frame_selection=first"), "train")
    assert greys(first) == [0, 1, 2, 3, 200, 201]  # 12 frames: the first 4, not 0, 3, 7, 11
    folders = tmp_path / "folders"
    write_video(folders / "real/v", 7, lambda i: 30 + i)
    assert greys(FrameFolderDataset(folders, frames_per_video=3, frame_selection="first")) == [30, 31, 32]
    assert greys(FrameFolderDataset(folders, frames_per_video=3)) == [30, 33, 36]
    with pytest.raises(ValueError, match="config key 'data.frame_selection' expects one of 'evenly_spaced', 'first'"):
        deepfakebench_config(json_folder, frames_root, "data.frame_selection=middle")
    with pytest.raises(ValueError, match="frame_selection must be one of"):
        FrameFolderDataset(folders, frame_selection="last")


def write_lmdb(database, files, dataset_folder):
    """An LMDB database as DeepfakeBench's dataset2lmdb writes it: key "<data set>\\<path relative to
    the data set's folder>" (os.path.relpath, so "/" inside on POSIX), value the file's bytes."""
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(database), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for path, content in files.items():
            key = f"{os.path.basename(dataset_folder)}\\" + os.path.relpath(path, dataset_folder)
            txn.put(key.encode("utf-8"), content)
    env.close()


def test_lmdb_storage_is_read(tmp_path):
    pytest.importorskip("lmdb")
    json_folder, frames_root = rearranged_indexes(tmp_path)
    celeb = frames_root / "Celeb-DF-v2"
    files = {str(path): path.read_bytes() for path in sorted(celeb.rglob("*.png"))}
    first = str(celeb / "Celeb-real/frames/id0_0000/0.png")
    incomplete, lmdb_dir = tmp_path / "incomplete", tmp_path / "lmdb"
    incomplete.mkdir(), lmdb_dir.mkdir()
    write_lmdb(incomplete / "Celeb-DF-v2_lmdb", {p: b for p, b in files.items() if p != first}, celeb)
    write_lmdb(lmdb_dir / "Celeb-DF-v2_lmdb", files, celeb)
    shutil.rmtree(frames_root)  # frames come from the database only
    settings = ("data.dataset_name=Celeb-DF-v2", "data.frames_per_video=3")
    cfg = deepfakebench_config(json_folder, frames_root, f"data.lmdb_path={incomplete}", *settings)
    check_paths(cfg)  # data.root need not exist: it names the paths' prefix only
    with pytest.raises(FileNotFoundError, match=r"not found in the LMDB database .*Celeb-DF-v2_lmdb: "
                                                r"'Celeb-DF-v2/Celeb-real/frames/id0_0000/0.png'"):
        with pytest.warns(UserWarning, match="list no frames"):
            build_dataset(cfg, "test")

    cfg = deepfakebench_config(json_folder, frames_root, f"data.lmdb_path={lmdb_dir}", *settings)
    with pytest.warns(UserWarning, match="list no frames"):
        dataset = build_dataset(cfg, "test")
    assert greys(dataset) == [10, 12, 14, 100, 101, 102]
    assert dataset.video_ids() == ["CelebDFv2_real/id0_0000"] * 3 + ["CelebDFv2_fake/id0_id1_0000"] * 3
    # DataLoader workers open their own environment
    loader = torch.utils.data.DataLoader(dataset, batch_size=6, num_workers=1)
    images, labels, _ = next(iter(loader))
    assert [round(float(grey) * 255) for grey in images[:, 0, 0, 0]] == [10, 12, 14, 100, 101, 102]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    # the database itself may be named, and a folder without one is an error naming what it holds
    direct = deepfakebench_config(
        json_folder, frames_root, f"data.lmdb_path={lmdb_dir / 'Celeb-DF-v2_lmdb'}",
        "data.dataset_name=Celeb-DF-v2", "data.frames_per_video=3",
    )
    with pytest.warns(UserWarning):
        assert len(build_dataset(direct, "test")) == 6
    with pytest.raises(FileNotFoundError, match=r"holds no FaceForensics\+\+_lmdb/data.mdb; databases there: \['Celeb-DF-v2_lmdb'\]"):
        build_dataset(deepfakebench_config(json_folder, frames_root, f"data.lmdb_path={lmdb_dir}"), "train")


def test_lmdb_storage_without_the_lmdb_package_is_a_one_line_user_error(tmp_path, monkeypatch):
    from mlrank.cli import USER_ERRORS
    from mlrank.data import binary

    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(USER_ERRORS, match="pip install lmdb"):
        binary._lmdb_environment(str(tmp_path))


@pytest.mark.parametrize(
    "kind, root_layout, other",
    [
        ("seqdeepfake", "frames", "frames"),
        ("frames", "seqdeepfake", "seqdeepfake"),
        ("deepfakebench", "seqdeepfake", "seqdeepfake"),
    ],
)
def test_a_data_root_laid_out_for_another_kind_is_one_clear_error(tmp_path, kind, root_layout, other):
    from mlrank.cli import run_cli
    from mlrank import train

    root = tmp_path / "data"
    if root_layout == "frames":
        (root / "train" / "real" / "v1").mkdir(parents=True)
    else:
        (root / "facial_components" / "annotations").mkdir(parents=True)
    overrides = [f"data.kind={kind}", f"data.root={root}", f"output_dir={tmp_path / 'run'}"]
    if kind == "deepfakebench":
        overrides += [f"data.json_path={root}", "data.dataset_name=FaceForensics++"]
    cfg = load_config(None, overrides)
    with pytest.raises(ValueError, match=f"data.kind is '{kind}'.*laid out for data.kind '{other}'.*set data.kind={other}"):
        check_paths(cfg)
    assert run_cli(lambda: train.main(overrides)) == 2
    assert not (tmp_path / "run").exists()


def test_a_video_folder_reached_under_both_labels_is_an_error_naming_both_paths(tmp_path):
    video = write_video(tmp_path / "elsewhere" / "clip", 2)
    (tmp_path / "frames" / "real").mkdir(parents=True)
    (tmp_path / "frames" / "fake").mkdir(parents=True)
    os.symlink(os.path.dirname(video[0]), tmp_path / "frames" / "real" / "clip")
    os.symlink(os.path.dirname(video[0]), tmp_path / "frames" / "fake" / "clip")
    with pytest.raises(ValueError, match=r"real/clip is the folder .*fake/clip again .*under one label or both"):
        FrameFolderDataset(tmp_path / "frames")


def test_empty_video_folders_are_left_out_with_a_warning(tmp_path):
    write_video(tmp_path / "real" / "kept", 2)
    write_video(tmp_path / "fake" / "kept", 2)
    (tmp_path / "real" / "empty").mkdir()
    (tmp_path / "fake" / "notes").mkdir()
    (tmp_path / "fake" / "notes" / "readme.txt").write_text("no frames here")
    with pytest.warns(UserWarning, match=r"2 video folder\(s\) hold no image files .*fake/notes, real/empty"):
        dataset = FrameFolderDataset(tmp_path)
    assert dataset.videos_without_frames == ["fake/notes", "real/empty"] and len(dataset) == 4


def test_a_duplicate_video_key_or_a_frame_under_both_labels_is_an_error(tmp_path):
    real = write_video(tmp_path / "rgb" / "real0", 2)
    fake = write_video(tmp_path / "rgb" / "fake0", 2)
    records = '{"a": {"label": "real", "frames": %s}, "a": {"label": "real", "frames": %s}}' % (
        json.dumps(real), json.dumps(fake))
    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text('{"Set": {"real": {"test": %s}}}' % records)
    with pytest.raises(ValueError, match=r"the key 'a' appears twice in one object"):
        DeepfakeBenchDataset(duplicate, "Set", "test", root=tmp_path / "rgb")
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"Set": {
        "real": {"test": {"v": {"label": "real", "frames": real}}},
        "fake": {"test": {"w": {"label": "fake", "frames": [real[1], *fake]}}}}}))
    with pytest.raises(ValueError, match=r"frame .*real0/0.png is listed as real and as fake \(by videos real/v and fake/w\)"):
        DeepfakeBenchDataset(both, "Set", "test", root=tmp_path / "rgb")
