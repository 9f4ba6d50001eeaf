"""What a run's configuration holds: the nested dataclasses, with their types and defaults.

Only the schema: reading files, overrides, checks and saving are :mod:`mlrank.engine.config`'s,
which re-exports these classes. Kept apart so that the method interface
(:mod:`mlrank.engine.methods`) can name ``Config`` without importing the loader, which itself
asks the method registry to check a config: no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class CrossTestSet:
    """One test set of a cross-data-set evaluation (``python -m mlrank.crosseval``). Keys left unset
    (null) take the value of the same key in ``data``, so a set often needs only its name."""

    name: str = ""  # its row in the table; also the DeepfakeBench data set unless dataset_name is set
    kind: Literal["deepfakebench", "frames"] | None = None
    root: str | None = None
    json_path: str | None = None  # an index file, or the folder of <data set>.json files
    json_prefix: str | None = None
    lmdb_path: str | None = None
    dataset_name: str | None = None  # the data set's key in the JSON, when it differs from name
    split: Literal["train", "val", "test"] = "test"


@dataclass
class DataConfig:
    """Which images, how they are split, loaded and augmented."""

    kind: Literal["synthetic", "seqdeepfake", "deepfakebench", "frames"] = "synthetic"
    root: str | None = None  # Seq-DeepFake root, DeepfakeBench frames root, or frames/<split>/{real,fake}/<video>/
    subset: Literal["facial_components", "facial_attributes"] = "facial_components"  # Seq-DeepFake
    image_size: int = 64
    synthetic_train_size: int = 20000
    synthetic_val_size: int = 300
    synthetic_test_size: int = 300
    synthetic_seed: int = 0  # the synthetic data set's content; the training seed is `seed`
    synthetic_in_memory: bool = True  # render the synthetic images once and keep them in memory
    # A folder where the rendered splits are saved, so later runs with the same settings skip
    # rendering (files named by the settings and a digest of the generator); null renders every run.
    synthetic_cache_dir: str | None = None
    json_path: str | None = None  # DeepfakeBench JSON index, or its folder of <data set>.json (dataset_json_folder)
    dataset_name: str | None = None  # DeepfakeBench data set to train on, e.g. "FaceForensics++"
    compression: Literal["raw", "c23", "c40"] = "c23"
    frames_per_video: int = 8
    # "evenly_spaced" over each video's frames, or DeepfakeBench's loader's rule: the first ones
    frame_selection: Literal["evenly_spaced", "first"] = "evenly_spaced"
    # The leading part of the JSON's frame paths that data.root replaces (absolute paths under
    # data.root itself need none; Windows drive and backslash paths are matched too)
    json_prefix: str | None = None
    lmdb_path: str | None = None  # DeepfakeBench's LMDB database (or lmdb_dir) instead of frame files
    # Seq-DeepFake CSV rows and DeepfakeBench frame paths must stay inside data.root (relative, no
    # ".." component; symlinks inside the root are followed); true reads any path they name.
    allow_paths_outside_root: bool = False
    test_dataset_name: str | None = None  # cross-data-set evaluation, e.g. "Celeb-DF-v2"
    # The test sets of python -m mlrank.crosseval, e.g. [{name: Celeb-DF-v2}, {name: DFDC, json_path: ...}]
    cross_test_sets: list[CrossTestSet] = field(default_factory=list)
    num_workers: int = 2
    weak_augment: bool = False  # flip, random crop, colour jitter, Gaussian blur (the real-data configs set it)
    strong_augment: bool = False  # self-blended pseudo-fakes from real faces
    # Horizontal flips alone (when weak_augment is off): the pixel grid and its traces are kept.
    hflip: bool = False
    batch_size: int = 32


@dataclass
class ModelConfig:
    """Backbone (a timm name), token and head sizes."""

    backbone: str = "resnet10t"
    pretrained_file: str | None = None  # local weights file; nothing is downloaded
    num_classes: int = 5  # L: components or attributes; 1 for binary detection
    token_dim: int = 64
    out_stride: int = 8  # input pixels per token side: N = (image_size / out_stride)^2
    # The coarsest backbone stride the FPN merges; the backbone's stages past it are not built.
    # None merges every stride from out_stride on, the paper's model. The synthetic config stops at
    # 16: resnet10t's last stage (2 x 2 maps of 64 x 64 images) took 30% of a training step on the
    # CPU, and the runs without it end level (docs/method.md section 6).
    max_stride: int | None = None
    num_heads: int = 2
    dropout: float = 0.0
    # Row-normalise the patch tokens U at the encoder input, as the paper does; the synthetic config
    # feeds them unnormalised, which learns its small backbone faster (docs/method.md section 2).
    normalize_patch_tokens: bool = True
    # Standardise the [0, 1] images with the backbone's own mean and std (timm's pretrained
    # configuration), which pretrained weights expect. Checkpoints saved before this key existed
    # were trained without it (LEGACY_DEFAULTS below reads them so).
    standardize_input: bool = True
    # How the fused logits order the edits: False is the paper's (the first edit highest); True
    # ranks the most recent, most visible edit highest and decodes the other way (docs/method.md
    # section 5), which the synthetic config learns far better.
    last_edit_highest: bool = False
    # Beyond the paper: a second linear on each class token scores the order of the edits, trained
    # by L_Order (needs loss.lambda_order > 0), so that the fused logits only detect (docs/method.md
    # section 5). Off: the fused logits detect and order, as in the paper.
    order_head: bool = False
    # Beyond the paper: feed the backbone each image's high-pass residual (image minus its 3x3
    # mean) as three more channels, as forensic detectors do with SRM filters (docs/method.md
    # section 2), so the first convolution sees the fine traces an edit leaves.
    highpass_input: bool = False
    # Beyond the paper: a linear on the mean of the encoded patch tokens scores how many components
    # were edited (0..L), trained by L_Count; decoding then keeps the top-k fused logits, k the count
    # that the head and the logits agree on best, instead of thresholding each component
    # (docs/method.md section 5).
    count_head: bool = False
    # Which logits decode: "fused" (the paper's inference head) or "patch", the patch branch f^U
    # alone, which the paper's ablation ranks by where only L_BCE^U trains (Table 3, row I).
    decode_from: Literal["fused", "patch"] = "fused"
    # Beyond the paper: decode the most probable sequence among those in the training annotations
    # (Seq-DeepFake has 28 component and 26 attribute sequences) instead of any subset in any order
    # (docs/method.md section 7). The training split's sequences are stored in the checkpoint.
    seen_sequences_only: bool = False


@dataclass
class LossConfig:
    """Weights and parameters of L_Total = L_CLS + lambda1 L_BCE + lambda2 L_Rank (eq. 15).

    Each term has its own weight for ablations (mlrank.ranking.losses, docs/method.md section 6):
    L_Total = lambda_cls L_CLS + lambda1 (lambda_bce_patch L_BCE^U + lambda_bce_class L_BCE^V)
    + lambda2 L_Rank. lambda1 is the paper's joint BCE weight and multiplies the branch weights;
    0 switches a term off.
    """

    tau: float = 0.2
    num_k: int | None = None  # None: exact max over all k; 100 reproduces the paper's sampling
    reg: Literal["mean", "sum"] = "mean"  # l_Reg averaged over the n pairs, or summed as printed
    lambda1: float = 1.0  # both BCE terms (the paper's lambda1)
    lambda2: float = 1.0  # L_Rank
    alpha: float = 1.0
    lambda_cls: float = 1.0  # L_CLS
    lambda_bce_patch: float = 1.0  # L_BCE^U, the patch branch, times lambda1
    lambda_bce_class: float = 1.0  # L_BCE^V, the class branch, times lambda1
    lambda_order: float = 0.0  # L_Order, beyond the paper: pairwise order of the edits (the synthetic config: 1)
    lambda_count: float = 1.0  # L_Count, beyond the paper: trains model.count_head (no effect without it)


@dataclass
class OptimConfig:
    """AdamW with the backbone's lr scaled down, and the lr schedule."""

    lr: float = 2e-3
    backbone_lr_scale: float = 1.0  # the paper's 0.1 is for pretrained backbones
    weight_decay: float = 0.05
    epochs: int = 4
    warmup_epochs: int = 0
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    scheduler: Literal["cosine", "constant"] = "cosine"


@dataclass
class TrainConfig:
    """Logging, evaluation cadence, precision."""

    log_every: int = 20  # steps between progress-bar updates of loss and images/s
    eval_every: int = 1  # epochs between validation passes
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    max_steps_per_epoch: int | None = None  # cap for quick runs; None: the whole training split
    # Each epoch's record (metrics.jsonl) as TensorBoard scalars in RUN/tensorboard too; needs the
    # optional package tensorboard.
    tensorboard: bool = False


@dataclass
class SeeableConfig:
    """SeeABLE (ICCV 2023), the one-class detector (docs/seeable.md)."""

    grid: tuple[int, int] = (4, 4)  # local regions the soft discrepancies are placed in
    # mlrank's four types; SeeABLE's two are [spatial, frequency] (seeable_ffpp)
    types: list[str] = field(default_factory=lambda: ["colour", "blur", "resample", "frequency"])
    embed_dim: int = 128
    temperature: float = 0.07  # SeeABLE's code (its BCR loss)
    lambda_gui: float = 1.0
    feather: float = 0.25  # soft mask ramp, as a fraction of the cell's shorter side, in (0, 1]
    blend_range: tuple[float, float] = (0.5, 1.0)  # peak blend weight drawn uniformly, 0 < low <= high <= 1


@dataclass
class Config:
    """A whole run. Defaults: the paper's method on the built-in synthetic data set, trainable in
    minutes on 2 CPU cores (the synthetic config adds its departures, ``PAPER_DEPARTURES``)."""

    method: str = "mlrank"  # a name in mlrank.engine.methods.METHODS
    seed: int = 0
    output_dir: str = "runs/synthetic"
    deterministic: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeable: SeeableConfig = field(default_factory=SeeableConfig)
