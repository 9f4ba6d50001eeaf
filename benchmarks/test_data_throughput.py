"""Throughput of the built-in synthetic Seq-DeepFake, in images per second at 128 x 128.

Run with ``python -m pytest benchmarks/test_data_throughput.py -q``; the images/s are printed at the
end of the run. Nothing here asserts a time. What is timed (median of the rounds):

* ``generator``: `SyntheticSeqDeepFake.sample` in this process, one image after another;
* ``on the fly``: the data set through a DataLoader with 2 workers (batches of 32, workers kept
  between rounds), the way training reads it;
* ``cache write``: `write_seqdeepfake_layout` (render + PNG encode + atomic write), one process;
* ``cache read``: that cache read back by the real-data loader `SeqDeepFakeDataset` through a
  DataLoader with 2 workers: one loader for both the synthetic and the real data.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from mlrank.data.seqdeepfake import SeqDeepFakeDataset
from mlrank.data.synthetic import SyntheticSeqDeepFake, write_seqdeepfake_layout

SIZE = 128
IMAGES = 384  # a multiple of 6 and of the batch size
BATCH = 32
WORKERS = 2
SUBSETS = ("facial_components", "facial_attributes")

IMAGES_PER_SECOND: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def print_throughput(request):
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if reporter is None or not IMAGES_PER_SECOND:
        return
    with capture.global_and_fixture_disabled():  # this teardown's output would otherwise be captured
        reporter.ensure_newline()
        title = f"synthetic Seq-DeepFake throughput, {SIZE} x {SIZE}, torch {torch.__version__}"
        reporter.write_sep("=", title)
        for name, rate in IMAGES_PER_SECOND.items():
            reporter.write_line(f"{name:55s} {rate:8.0f} images/s")


def record(benchmark, name: str, images: int) -> None:
    rate = images / benchmark.stats.stats.median
    benchmark.extra_info["images_per_second"] = rate
    IMAGES_PER_SECOND[name] = rate


def drain(loader: DataLoader) -> None:
    for _ in loader:
        pass


@pytest.mark.parametrize("subset", SUBSETS)
def test_generator(benchmark, subset):
    dataset = SyntheticSeqDeepFake("train", subset, size=SIZE, num_images=IMAGES // 4)
    benchmark.pedantic(lambda: [dataset.sample(i) for i in range(len(dataset))], rounds=3, warmup_rounds=1)
    record(benchmark, f"generator, 1 process, {subset}", len(dataset))


@pytest.mark.parametrize("subset", SUBSETS)
def test_on_the_fly_loader(benchmark, subset):
    dataset = SyntheticSeqDeepFake("train", subset, size=SIZE, num_images=IMAGES)
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS, persistent_workers=True)
    benchmark.pedantic(drain, args=(loader,), rounds=3, warmup_rounds=1)
    record(benchmark, f"on the fly, DataLoader {WORKERS} workers, {subset}", IMAGES)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("seqdeepfake")


def test_cache_write(benchmark, cache_root):
    benchmark.pedantic(write_seqdeepfake_layout, args=(cache_root,),
                       kwargs=dict(sizes={"train": IMAGES}, size=SIZE), rounds=1, iterations=1)
    record(benchmark, "cache write, 1 process, png", IMAGES)


def test_cache_read(benchmark, cache_root):
    if not (cache_root / "facial_components" / "annotations" / "train.csv").exists():
        write_seqdeepfake_layout(cache_root, sizes={"train": IMAGES}, size=SIZE)
    dataset = SeqDeepFakeDataset(cache_root, "facial_components", "train")
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS, persistent_workers=True)
    benchmark.pedantic(drain, args=(loader,), rounds=3, warmup_rounds=1)
    record(benchmark, f"cache read, SeqDeepFakeDataset, DataLoader {WORKERS} workers", IMAGES)
