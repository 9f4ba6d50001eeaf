"""The procedural faces render as they did before `faces.py` was split into modules.

EXPECTED was produced by the code before the split, at commit 7e9a311 (one file, mlrank/data/faces.py).
To regenerate it (only for an intended change of the pictures), run `python -m tests.test_faces_split`
from the repository root (so that it imports this checkout): it prints the dict.

Each array is compared by a fingerprint (shape, dtype, mean, standard deviation and a mean weighted
by a fixed random pattern), to a relative 1e-4, not by a hash of its bytes: the renderer's float math
(numpy's sin/exp/pow, OpenCV's resizing and blending) can differ in the last bits between CPU
instruction sets, which can move a pixel by one level, while a real change of the code (another
random draw, a moved or missing stroke) moves these numbers by far more than 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlrank.data.face_geometry import landmarks
from mlrank.data.face_model import sample_face
from mlrank.data.face_rendering import render
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.data.vocab import SUBSETS

SIZES = (64, 96)
FACE_SEEDS = (0, 1, 2)
ITEMS = 6  # one block of the synthetic set: the original and one sequence of each length 1..5


def digest(array: np.ndarray) -> list[object]:
    """[dtype and shape, mean, standard deviation, mean weighted by a fixed pattern in [0.5, 1.5)]."""
    values = np.asarray(array, dtype=np.float64).ravel()
    weights = np.random.default_rng(0).uniform(0.5, 1.5, values.size)
    return [f"{np.asarray(array).dtype} {np.shape(array)}",
            *(float(f"{number:.8g}") for number in (values.mean(), values.std(), (values * weights).mean()))]


def same_fingerprints(got: dict[str, object], expected: dict[str, object]) -> bool:
    return got.keys() == expected.keys() and all(
        got[name] == value if not isinstance(value, list) or isinstance(value[0], int)
        else got[name][0] == value[0] and got[name][1:] == pytest.approx(value[1:], rel=1e-4, abs=1e-9)
        for name, value in expected.items()
    )


def rendered_faces(seed: int, size: int) -> dict[str, str]:
    """The renderer on its own: both passes, the base's masks and the landmarks (fingerprints)."""
    face = sample_face(np.random.default_rng(seed), min_age=0.3)
    image, base = render(face, size)
    return {"image": digest(image), "base": digest(base.image), "face_alpha": digest(base.face_alpha),
            "hair_alpha": digest(base.hair_alpha), "landmarks": digest(landmarks(face, size))}


def synthetic_items(subset: str, size: int) -> dict[str, object]:
    """Whole items with every edit of the subset (bangs, glasses, beard and smile included)."""
    dataset = SyntheticSeqDeepFake("train", subset, size=size, num_images=ITEMS, seed=0)
    hashes: dict[str, object] = {}
    for index in range(ITEMS):
        item = dataset.sample(index)
        hashes[f"{index} label"] = item.sequence.tolist()
        hashes[f"{index} image"] = digest(item.image)
        hashes[f"{index} face_mask"] = digest(item.face_mask)
        hashes[f"{index} landmarks"] = digest(item.landmarks)
        for name, mask in item.component_masks.items():
            hashes[f"{index} mask {name}"] = digest(mask)
    return hashes


def current() -> dict[str, dict[str, object]]:
    hashes: dict[str, dict[str, object]] = {}
    for size in SIZES:
        for seed in FACE_SEEDS:
            hashes[f"face seed {seed} size {size}"] = rendered_faces(seed, size)
        for subset in SUBSETS:
            hashes[f"{subset} size {size}"] = synthetic_items(subset, size)
    return hashes


EXPECTED: dict[str, dict[str, object]] = {
    'face seed 0 size 64': {
        'image': ['uint8 (64, 64, 3)', 84.247477, 56.889738, 84.589127],
        'base': ['uint8 (64, 64, 3)', 84.719808, 56.687378, 85.048491],
        'face_alpha': ['float32 (64, 64)', 0.29021714, 0.446913, 0.28710873],
        'hair_alpha': ['float32 (64, 64)', 0.11794356, 0.30236768, 0.11779383],
        'landmarks': ['float32 (68, 2)', 36.282245, 9.0752807, 37.012772],
    },
    'face seed 1 size 64': {
        'image': ['uint8 (64, 64, 3)', 134.73999, 37.441361, 134.79032],
        'base': ['uint8 (64, 64, 3)', 135.36841, 37.086761, 135.43008],
        'face_alpha': ['float32 (64, 64)', 0.26798216, 0.43629432, 0.26456123],
        'hair_alpha': ['float32 (64, 64)', 0.12978081, 0.32025374, 0.12616814],
        'landmarks': ['float32 (68, 2)', 36.638917, 9.3612992, 37.408641],
    },
    'face seed 2 size 64': {
        'image': ['uint8 (64, 64, 3)', 128.71118, 57.31976, 128.76031],
        'base': ['uint8 (64, 64, 3)', 131.57959, 58.645552, 131.57965],
        'face_alpha': ['float32 (64, 64)', 0.25295841, 0.42782423, 0.24922753],
        'hair_alpha': ['float32 (64, 64)', 0.058957327, 0.22000944, 0.058804614],
        'landmarks': ['float32 (68, 2)', 33.873908, 8.3757143, 34.553291],
    },
    'facial_components size 64': {
        '0 label': [3, 5, 1, 0, 0],
        '0 image': ['uint8 (64, 64, 3)', 175.89209, 48.089625, 176.06544],
        '0 face_mask': ['bool (64, 64)', 0.29174805, 0.45456696, 0.28950163],
        '0 landmarks': ['float32 (68, 2)', 36.395857, 8.6128455, 37.142779],
        '0 mask eyebrow': ['bool (64, 64)', 0.026855469, 0.16166092, 0.024939367],
        '0 mask hair': ['bool (64, 64)', 0.21582031, 0.41139021, 0.2133937],
        '0 mask nose': ['bool (64, 64)', 0.023925781, 0.15281799, 0.023853127],
        '1 label': [2, 4, 0, 0, 0],
        '1 image': ['uint8 (64, 64, 3)', 65.254313, 36.809483, 65.376524],
        '1 face_mask': ['bool (64, 64)', 0.22216797, 0.41570345, 0.21713649],
        '1 landmarks': ['float32 (68, 2)', 35.519673, 7.7283865, 36.286793],
        '1 mask eye': ['bool (64, 64)', 0.022705078, 0.1489616, 0.022324048],
        '1 mask lip': ['bool (64, 64)', 0.024169922, 0.15357649, 0.024351644],
        '2 label': [5, 0, 0, 0, 0],
        '2 image': ['uint8 (64, 64, 3)', 161.09237, 55.171023, 161.09823],
        '2 face_mask': ['bool (64, 64)', 0.29833984, 0.45752943, 0.2958928],
        '2 landmarks': ['float32 (68, 2)', 35.531793, 9.0958991, 36.246052],
        '2 mask hair': ['bool (64, 64)', 0.19628906, 0.39718971, 0.19388464],
        '3 label': [0, 0, 0, 0, 0],
        '3 image': ['uint8 (64, 64, 3)', 121.03133, 50.251959, 121.06927],
        '3 face_mask': ['bool (64, 64)', 0.25952148, 0.43837208, 0.25717672],
        '3 landmarks': ['float32 (68, 2)', 36.366567, 8.3397463, 37.128239],
        '4 label': [3, 5, 1, 2, 0],
        '4 image': ['uint8 (64, 64, 3)', 145.22184, 46.358433, 145.43004],
        '4 face_mask': ['bool (64, 64)', 0.23681641, 0.42512868, 0.23303991],
        '4 landmarks': ['float32 (68, 2)', 36.512765, 7.8577482, 37.32388],
        '4 mask eyebrow': ['bool (64, 64)', 0.024414062, 0.15433087, 0.023078821],
        '4 mask hair': ['bool (64, 64)', 0.16870117, 0.37448777, 0.16547887],
        '4 mask nose': ['bool (64, 64)', 0.01953125, 0.13838273, 0.019181206],
        '4 mask eye': ['bool (64, 64)', 0.022949219, 0.14974162, 0.022851215],
        '5 label': [5, 3, 1, 4, 2],
        '5 image': ['uint8 (64, 64, 3)', 126.62142, 59.397199, 126.69655],
        '5 face_mask': ['bool (64, 64)', 0.24023438, 0.42722572, 0.23603524],
        '5 landmarks': ['float32 (68, 2)', 36.447141, 8.1563418, 37.24634],
        '5 mask hair': ['bool (64, 64)', 0.12573242, 0.33154755, 0.12508958],
        '5 mask eyebrow': ['bool (64, 64)', 0.020019531, 0.14006695, 0.01932761],
        '5 mask nose': ['bool (64, 64)', 0.031738281, 0.17530249, 0.032009439],
        '5 mask lip': ['bool (64, 64)', 0.034179688, 0.1816905, 0.034388291],
        '5 mask eye': ['bool (64, 64)', 0.018554688, 0.13494596, 0.017960378],
    },
    'facial_attributes size 64': {
        '0 label': [5, 1, 2, 4, 0],
        '0 image': ['uint8 (64, 64, 3)', 107.62777, 69.47973, 107.64439],
        '0 face_mask': ['bool (64, 64)', 0.27514648, 0.44658806, 0.27280011],
        '0 landmarks': ['float32 (68, 2)', 36.069541, 8.800218, 36.791281],
        '0 mask Young': ['bool (64, 64)', 0.34033203, 0.47382079, 0.335775],
        '0 mask Bangs': ['bool (64, 64)', 0.19042969, 0.39264007, 0.18633984],
        '0 mask Eyeglasses': ['bool (64, 64)', 0.061035156, 0.23939479, 0.060206148],
        '0 mask Smiling': ['bool (64, 64)', 0.053222656, 0.22447718, 0.053036601],
        '1 label': [1, 4, 3, 2, 5],
        '1 image': ['uint8 (64, 64, 3)', 116.24357, 54.294587, 116.42751],
        '1 face_mask': ['bool (64, 64)', 0.2175293, 0.41256551, 0.21425356],
        '1 landmarks': ['float32 (68, 2)', 35.891014, 8.8514416, 36.653894],
        '1 mask Bangs': ['bool (64, 64)', 0.11865234, 0.32337898, 0.11452716],
        '1 mask Smiling': ['bool (64, 64)', 0.043212891, 0.20333602, 0.043111784],
        '1 mask Beard': ['bool (64, 64)', 0.093017578, 0.29045707, 0.093489403],
        '1 mask Eyeglasses': ['bool (64, 64)', 0.043701172, 0.2044294, 0.043644229],
        '1 mask Young': ['bool (64, 64)', 0.27587891, 0.44695608, 0.27196846],
        '2 label': [3, 0, 0, 0, 0],
        '2 image': ['uint8 (64, 64, 3)', 167.41976, 29.905881, 167.57961],
        '2 face_mask': ['bool (64, 64)', 0.29443359, 0.45578773, 0.29145498],
        '2 landmarks': ['float32 (68, 2)', 35.240886, 8.9210297, 35.957869],
        '2 mask Beard': ['bool (64, 64)', 0.081542969, 0.27366716, 0.082939482],
        '3 label': [1, 3, 0, 0, 0],
        '3 image': ['uint8 (64, 64, 3)', 98.19987, 48.658698, 98.402576],
        '3 face_mask': ['bool (64, 64)', 0.21850586, 0.41323244, 0.21359435],
        '3 landmarks': ['float32 (68, 2)', 36.659987, 7.5042005, 37.449543],
        '3 mask Bangs': ['bool (64, 64)', 0.12475586, 0.33044188, 0.12090446],
        '3 mask Beard': ['bool (64, 64)', 0.08203125, 0.27441232, 0.082620357],
        '4 label': [0, 0, 0, 0, 0],
        '4 image': ['uint8 (64, 64, 3)', 75.013509, 54.609623, 75.143928],
        '4 face_mask': ['bool (64, 64)', 0.2890625, 0.453327, 0.28481623],
        '4 landmarks': ['float32 (68, 2)', 37.148099, 9.0192718, 37.918834],
        '5 label': [3, 5, 4, 0, 0],
        '5 image': ['uint8 (64, 64, 3)', 95.993327, 57.568157, 96.148258],
        '5 face_mask': ['bool (64, 64)', 0.25219727, 0.43427388, 0.24788496],
        '5 landmarks': ['float32 (68, 2)', 35.726852, 7.7704925, 36.493277],
        '5 mask Beard': ['bool (64, 64)', 0.095214844, 0.29351146, 0.095715056],
        '5 mask Young': ['bool (64, 64)', 0.27832031, 0.44817197, 0.27470594],
        '5 mask Smiling': ['bool (64, 64)', 0.041259766, 0.19889042, 0.041802511],
    },
    'face seed 0 size 96': {
        'image': ['uint8 (96, 96, 3)', 84.368996, 57.616149, 84.41867],
        'base': ['uint8 (96, 96, 3)', 84.585576, 57.206853, 84.633512],
        'face_alpha': ['float32 (96, 96)', 0.28249124, 0.44571806, 0.28334822],
        'hair_alpha': ['float32 (96, 96)', 0.12046739, 0.31280517, 0.1202422],
        'landmarks': ['float32 (68, 2)', 54.423368, 13.612921, 55.519158],
    },
    'face seed 1 size 96': {
        'image': ['uint8 (96, 96, 3)', 135.17965, 37.718904, 135.45816],
        'base': ['uint8 (96, 96, 3)', 135.68772, 37.353444, 135.95212],
        'face_alpha': ['float32 (96, 96)', 0.26219873, 0.43566212, 0.26333727],
        'hair_alpha': ['float32 (96, 96)', 0.13201315, 0.32821361, 0.13250199],
        'landmarks': ['float32 (68, 2)', 54.958376, 14.041949, 56.112961],
    },
    'face seed 2 size 96': {
        'image': ['uint8 (96, 96, 3)', 129.04738, 58.250452, 129.21572],
        'base': ['uint8 (96, 96, 3)', 131.17101, 59.291835, 131.32757],
        'face_alpha': ['float32 (96, 96)', 0.24680266, 0.42679489, 0.24774805],
        'hair_alpha': ['float32 (96, 96)', 0.06049285, 0.22875332, 0.060690602],
        'landmarks': ['float32 (68, 2)', 50.810862, 12.563571, 51.829937],
    },
    'facial_components size 96': {
        '0 label': [3, 5, 1, 0, 0],
        '0 image': ['uint8 (96, 96, 3)', 177.61787, 49.018513, 177.81672],
        '0 face_mask': ['bool (96, 96)', 0.2859158, 0.45184948, 0.28717325],
        '0 landmarks': ['float32 (68, 2)', 54.593785, 12.919268, 55.714168],
        '0 mask eyebrow': ['bool (96, 96)', 0.027669271, 0.16402342, 0.027808831],
        '0 mask hair': ['bool (96, 96)', 0.24967448, 0.4328246, 0.24941517],
        '0 mask nose': ['bool (96, 96)', 0.018880208, 0.13610197, 0.019633668],
        '1 label': [2, 4, 0, 0, 0],
        '1 image': ['uint8 (96, 96, 3)', 65.228082, 37.511771, 65.414758],
        '1 face_mask': ['bool (96, 96)', 0.21744792, 0.41250978, 0.21863651],
        '1 landmarks': ['float32 (68, 2)', 53.27951, 11.59258, 54.430189],
        '1 mask eye': ['bool (96, 96)', 0.016276042, 0.1265351, 0.016031541],
        '1 mask lip': ['bool (96, 96)', 0.020833333, 0.14282614, 0.021412384],
        '2 label': [5, 0, 0, 0, 0],
        '2 image': ['uint8 (96, 96, 3)', 162.14113, 55.49462, 162.37727],
        '2 face_mask': ['bool (96, 96)', 0.2922092, 0.45477795, 0.29328934],
        '2 landmarks': ['float32 (68, 2)', 53.29769, 13.643849, 54.369078],
        '2 mask hair': ['bool (96, 96)', 0.18261719, 0.38635237, 0.18321411],
        '3 label': [0, 0, 0, 0, 0],
        '3 image': ['uint8 (96, 96, 3)', 121.12829, 50.633632, 121.36102],
        '3 face_mask': ['bool (96, 96)', 0.25195312, 0.43413448, 0.25328832],
        '3 landmarks': ['float32 (68, 2)', 54.549851, 12.509619, 55.692359],
        '4 label': [3, 5, 1, 2, 0],
        '4 image': ['uint8 (96, 96, 3)', 145.55624, 46.967336, 145.8769],
        '4 face_mask': ['bool (96, 96)', 0.22949219, 0.42050627, 0.23044539],
        '4 landmarks': ['float32 (68, 2)', 54.769148, 11.786622, 55.985819],
        '4 mask eyebrow': ['bool (96, 96)', 0.025499132, 0.15763542, 0.025870408],
        '4 mask hair': ['bool (96, 96)', 0.15614149, 0.36298943, 0.15667936],
        '4 mask nose': ['bool (96, 96)', 0.021484375, 0.1449924, 0.022317788],
        '4 mask eye': ['bool (96, 96)', 0.016927083, 0.12899828, 0.016975192],
        '5 label': [5, 3, 1, 4, 2],
        '5 image': ['uint8 (96, 96, 3)', 125.94372, 61.005201, 126.30837],
        '5 face_mask': ['bool (96, 96)', 0.23339844, 0.42299363, 0.23403694],
        '5 landmarks': ['float32 (68, 2)', 54.670711, 12.234513, 55.86951],
        '5 mask hair': ['bool (96, 96)', 0.15397135, 0.36092129, 0.15382677],
        '5 mask eyebrow': ['bool (96, 96)', 0.021701389, 0.14570669, 0.021628992],
        '5 mask nose': ['bool (96, 96)', 0.030815972, 0.17281883, 0.031293336],
        '5 mask lip': ['bool (96, 96)', 0.026475694, 0.16054511, 0.026800151],
        '5 mask eye': ['bool (96, 96)', 0.020399306, 0.14136185, 0.021154434],
    },
    'facial_attributes size 96': {
        '0 label': [5, 1, 2, 4, 0],
        '0 image': ['uint8 (96, 96, 3)', 107.47942, 70.694205, 107.3472],
        '0 face_mask': ['bool (96, 96)', 0.26920573, 0.44354707, 0.27043518],
        '0 landmarks': ['float32 (68, 2)', 54.104311, 13.200327, 55.186922],
        '0 mask Young': ['bool (96, 96)', 0.33072917, 0.4704757, 0.33110241],
        '0 mask Bangs': ['bool (96, 96)', 0.18489583, 0.38821304, 0.18491874],
        '0 mask Eyeglasses': ['bool (96, 96)', 0.04437934, 0.20593643, 0.045136553],
        '0 mask Smiling': ['bool (96, 96)', 0.045138889, 0.20760869, 0.044826624],
        '1 label': [1, 4, 3, 2, 5],
        '1 image': ['uint8 (96, 96, 3)', 117.01895, 54.752228, 117.07852],
        '1 face_mask': ['bool (96, 96)', 0.21061198, 0.40774327, 0.21105704],
        '1 landmarks': ['float32 (68, 2)', 53.836522, 13.277163, 54.980841],
        '1 mask Bangs': ['bool (96, 96)', 0.12207031, 0.327367, 0.12288859],
        '1 mask Smiling': ['bool (96, 96)', 0.044704861, 0.20665511, 0.04435533],
        '1 mask Beard': ['bool (96, 96)', 0.077256944, 0.26699871, 0.077804902],
        '1 mask Eyeglasses': ['bool (96, 96)', 0.034939236, 0.18362594, 0.03508176],
        '1 mask Young': ['bool (96, 96)', 0.26584201, 0.44178053, 0.26704423],
        '2 label': [3, 0, 0, 0, 0],
        '2 image': ['uint8 (96, 96, 3)', 168.16634, 30.02839, 168.38355],
        '2 face_mask': ['bool (96, 96)', 0.28765191, 0.45266797, 0.28853454],
        '2 landmarks': ['float32 (68, 2)', 52.861329, 13.381545, 53.936803],
        '2 mask Beard': ['bool (96, 96)', 0.094943576, 0.29313699, 0.094620838],
        '3 label': [1, 3, 0, 0, 0],
        '3 image': ['uint8 (96, 96, 3)', 98.206091, 49.064165, 98.429996],
        '3 face_mask': ['bool (96, 96)', 0.21365017, 0.40988264, 0.21530478],
        '3 landmarks': ['float32 (68, 2)', 54.989981, 11.256301, 56.174314],
        '3 mask Bangs': ['bool (96, 96)', 0.11534288, 0.31943529, 0.11590598],
        '3 mask Beard': ['bool (96, 96)', 0.080512153, 0.27208445, 0.079907308],
        '4 label': [0, 0, 0, 0, 0],
        '4 image': ['uint8 (96, 96, 3)', 74.85659, 55.537341, 74.954624],
        '4 face_mask': ['bool (96, 96)', 0.28428819, 0.45107474, 0.28562614],
        '4 landmarks': ['float32 (68, 2)', 55.722148, 13.528908, 56.878251],
        '5 label': [3, 5, 4, 0, 0],
        '5 image': ['uint8 (96, 96, 3)', 95.818938, 58.426426, 96.118709],
        '5 face_mask': ['bool (96, 96)', 0.24598524, 0.43066983, 0.24679312],
        '5 landmarks': ['float32 (68, 2)', 53.590278, 11.655739, 54.739916],
        '5 mask Beard': ['bool (96, 96)', 0.089518229, 0.28549031, 0.089042616],
        '5 mask Young': ['bool (96, 96)', 0.26312934, 0.44033202, 0.26326358],
        '5 mask Smiling': ['bool (96, 96)', 0.043619792, 0.20424766, 0.044210036],
    },
}


def test_the_fingerprint_tells_a_small_stroke_from_rounding():
    image = render(sample_face(np.random.default_rng(0), min_age=0.3), 64)[0]
    stroke = image.copy()
    stroke[30:33, 20:24] = 255 - stroke[30:33, 20:24]  # a 3 x 4 pixel mark
    rounding = image.copy()
    rounding[::7, ::5, 0] ^= 1  # one level on about 120 values, what another CPU's rounding does
    assert not same_fingerprints({"x": digest(stroke)}, {"x": digest(image)})
    assert same_fingerprints({"x": digest(rounding)}, {"x": digest(image)})


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_rendering_is_unchanged(case):
    size = int(case.rsplit(" ", 1)[1])
    if case.startswith("face seed"):
        got = rendered_faces(int(case.split()[2]), size)
    else:
        got = synthetic_items(case.split()[0], size)
    assert same_fingerprints(got, EXPECTED[case]), (got, EXPECTED[case])


if __name__ == "__main__":
    print("EXPECTED: dict[str, dict[str, object]] = {")
    for case, hashes in current().items():
        print(f"    {case!r}: {{")
        for name, value in hashes.items():
            print(f"        {name!r}: {value!r},")
        print("    },")
    print("}")
