"""Render a config's synthetic splits into its ``data.synthetic_cache_dir`` once, with many workers,
so that runs started side by side (``studies/parallel_runs.py``) read them instead of each
rendering its own copy:

    python -m studies.render_cache [--config FILE_OR_NAME] [--workers N] key=value ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mlrank.engine.builders import build_dataset
from mlrank.engine.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, [*args.overrides, f"data.num_workers={args.workers}"])
    if cfg.data.kind != "synthetic" or not cfg.data.synthetic_cache_dir:
        raise SystemExit("the config needs data.kind=synthetic and data.synthetic_cache_dir")
    for split in ("train", "val", "test"):
        start = time.monotonic()
        dataset = build_dataset(cfg, split)
        print(f"{split}: {len(dataset)} images in {time.monotonic() - start:.1f} s -> "
              f"{dataset.cache_path(cfg.data.synthetic_cache_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
