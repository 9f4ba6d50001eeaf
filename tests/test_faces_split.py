"""The procedural faces render bit for bit as they did before `faces.py` was split into modules.

EXPECTED was produced by the code before the split, at commit 7e9a311 (one file, mlrank/data/faces.py).
To regenerate it (only for an intended change of the pictures), run `python -m tests.test_faces_split`
from the repository root (so that it imports this checkout): it prints the dict. The hashes depend on
float math in numpy and OpenCV (resizing, blending, sin/exp/pow), whose last bits can differ between
builds and CPU instruction sets: if this test fails on another machine while the code did not change,
regenerate the hashes there at 7e9a311 and compare them with this file's.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mlrank.data import faces
from mlrank.data.synthetic import SyntheticSeqDeepFake
from mlrank.data.vocab import SUBSETS

SIZES = (64, 96)
FACE_SEEDS = (0, 1, 2)
ITEMS = 6  # one block of the synthetic set: the original and one sequence of each length 1..5


def digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype} {array.shape} ".encode() + array.tobytes()).hexdigest()


def rendered_faces(seed: int, size: int) -> dict[str, str]:
    """The renderer on its own: both passes, the base's masks and the landmarks."""
    face = faces.sample_face(np.random.default_rng(seed), min_age=0.3)
    image, base = faces.render(face, size)
    return {"image": digest(image), "base": digest(base.image), "face_alpha": digest(base.face_alpha),
            "hair_alpha": digest(base.hair_alpha), "landmarks": digest(faces.landmarks(face, size))}


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
        'image': '85b11cd59defa5e56d21f14858d8717feda73de14b655f0139ba72aa128a876a',
        'base': '685075ed78342ac25ed52edb4abbbf082fb1f13cb9bad35d4d067be8b93a8b68',
        'face_alpha': 'a7d89fcb3f998dbad4d404f251cd8b6eb390b304659c4fa34433a3cd49d917e6',
        'hair_alpha': '78a37b200e61a9090db0153e0513b7da3423a137f5bdb14f206ab5f3f374db89',
        'landmarks': '0bac54a7ab1ebab5399a2b0dafe9d6e7498c83e4fa104aeb423fefd503b788c1',
    },
    'face seed 1 size 64': {
        'image': '01ecdaa24458810bb0ed4aad2074c585767f1fee246dfe1b484b7513b90a214d',
        'base': '082324512a4e02468e87f71ddabff6621f9f7666830d2e9c430a1a84a5d474b0',
        'face_alpha': '63a30c6e78e4a7f483c442aef2df18018b494164ba7570c69f8e726f61fb54a3',
        'hair_alpha': '4211fbf09ab0c871c7cdc7ac70cde75a5cbe9de5750e0c320d07a6dc57bef766',
        'landmarks': '7f8f5a941b12644a544079d3b74a9207386f7859633ba952ca6116db382e691a',
    },
    'face seed 2 size 64': {
        'image': '59b827c8bfc863241d12a345025052cc6b1d8646574e8eccfaf8e2c9123aca98',
        'base': '73ec9cdaab8c2c41e5fc6471b2e0d3c258317efdd14900688fc8cdd44ab0ad40',
        'face_alpha': '3dce39093ea8b8052ca01f38ca205f39984aa98bb0f5a5bbc9844fce10ef9dde',
        'hair_alpha': '50809b6c1408e0c14f15f21868050714df999ae093f6ef391b560795928579fa',
        'landmarks': '82b330ef766f24ff42dce2f9e52050d9a899ccf51a959f448b1246e12751454b',
    },
    'facial_components size 64': {
        '0 label': [3, 5, 1, 0, 0],
        '0 image': '5aaed223383d4608833b4cc214e55b7338b27288073fea7cb3d22b834c3a2281',
        '0 face_mask': '525a5c0d1e9e22151db90aa17a85f8977d30f274aaf0632df215ff003c0594d6',
        '0 landmarks': 'a95e0dbd10ad0a4c0d5135bfdfbc5c8267c4439c2e684e93c7a5e1d70b4ee404',
        '0 mask eyebrow': 'e5dd9b99bb78a2b7d3ff40efa44897539111b625b05fe90dd8e5ac1bac97b5ca',
        '0 mask hair': '212ef5bc8845abdcfe272134e280b4469df913de55539835d2f4aa0bfc763211',
        '0 mask nose': 'cf113407e267aea7fba474170be8b96423a77cd81b14b090fafddf6e2c385674',
        '1 label': [2, 4, 0, 0, 0],
        '1 image': '7722515d365cd9b416bc56d93611c96d8c341cf89b09daa287c5f879ab335f9a',
        '1 face_mask': '0d59228cadbdca8cc71b310e270db4f8e33f8f35d31de7b1349a54d87254b8a9',
        '1 landmarks': '0f4b9d159c67d679e007d19dbdaf059a64cc5bb7aab3a6c9feae4100a2aae3e8',
        '1 mask eye': 'abaf606de375e4713e05b1f2e599941b68146eb29d3f5e61e6e4766cc0abd70d',
        '1 mask lip': 'f7aea7222f6cbb6070ad91983574f5421529123f47dbeadf2538a5476a311ad7',
        '2 label': [5, 0, 0, 0, 0],
        '2 image': '3330f366c514b116a853917ac510afb1cdb5c13c8737a4fc0e4c536c03e9350c',
        '2 face_mask': 'cafddfc0bcb5f8b727724621743173e212de68708882cb7e29104c093fd09df4',
        '2 landmarks': '42716bc2a70e56292fff58bed0989f26fbe998dabdd7246db18e4105c4f65b58',
        '2 mask hair': 'bfb553df6403fe18caa060fd65ea11e01f4ff8957065f13a1a8505e626f9fb80',
        '3 label': [0, 0, 0, 0, 0],
        '3 image': '52618ad5b2aa1bc17d6cbbb82fbf2bb0d4b50be99bf0205952aed8317a549aec',
        '3 face_mask': '1d1d4c7ecb96a57d38ed2d9e308b71c7ba55fd94437cc9f7cb1221fbea525f90',
        '3 landmarks': 'f0c7be3fb11433453b9e5bee1f0ece48e742005d67f43e5d6b48a7387a46ce30',
        '4 label': [3, 5, 1, 2, 0],
        '4 image': 'd427b8d54902159f6b16a5a95caebf421434a24b0f40d7734e8c378667ee9f2b',
        '4 face_mask': 'b68c85a86600ef1c19e477f001dfc1f36a3e9a2e2411f894d6f01c9631ba89ba',
        '4 landmarks': 'f0f608039813e45186035b17b8a22178ace306f555f9b181c30ef85693d6a443',
        '4 mask eyebrow': 'e26d84eeeed6b2a4890475699b73ffb79b69eca48af0b858ad23dd38389dec99',
        '4 mask hair': '55eaa9adaf596824e640e2ff77b739df135d23a667a6b1ace13c8d7518157df1',
        '4 mask nose': 'a3112b456d7a4dd60af51838de1477fe57cb0a187ea38cf4323d8431c9f5d366',
        '4 mask eye': '9958679db89e522398b118680a0e0b9c690a6c6b2977f30672f2694968762d8e',
        '5 label': [5, 3, 1, 4, 2],
        '5 image': 'bf7ab5086922a0d32f1e86af2b00c35392051427d667d881d6382a6964f548cf',
        '5 face_mask': '6227b790e1d35d1e5acabb051039ba6885bd5bdecebe711ef17561c6424c71dc',
        '5 landmarks': '9519a3374d007fbe7021a1e3f4aad813274439651567ab5579c3b484a03eddf8',
        '5 mask hair': '42160a83f323a7680efae752cb1ff1e85942f1c47510d109b0316f4511010ad9',
        '5 mask eyebrow': '4dc2f2c20b2e4503b3e33a9eb580e51d846ec00795f47054f55f177a306f1ca2',
        '5 mask nose': '91476d96238c4d51bc569b8dee46bea29b428c3a428733e11a8deaf58e68de56',
        '5 mask lip': '5e16e5cb3e971e52d81d0a970dfaaba87370f2998a737d4b7005d09e066b5a24',
        '5 mask eye': '5eb9f15e62e06aebf41e9b08c9a85e0c3498bfb10f43f89806eeb1b4820cee5c',
    },
    'facial_attributes size 64': {
        '0 label': [5, 1, 2, 4, 0],
        '0 image': 'd340dd30724e3c8a85aaac1913c8124d6bbc812649511d159773b5369483018c',
        '0 face_mask': '3c7958aa62e13a29449a9901fab421bd1d880cefb7735fd5613141eae0ec4c11',
        '0 landmarks': 'c31ef24eedb2f34e0096d20bcebbea0346078be0f2f49eb72b0dc37d4f2cab22',
        '0 mask Young': 'edc473ad265b0351417c8d1023962790fa8c62cf20fe491c3790a50c2aaa53eb',
        '0 mask Bangs': '7fa1dcef70ec8d0cf9be2a4d0ff2242026b27a98885715ffc5db078e8e229b6d',
        '0 mask Eyeglasses': '91520e2649a8582032fea90a34861c019af2259fa161ad618e43a0b60971583c',
        '0 mask Smiling': '2cbb3c3c461ef5e97a5e87b88e37a58c1c58aaadf717d2f0a04f39a4b68ea843',
        '1 label': [1, 4, 3, 2, 5],
        '1 image': '0eba16a90d7d53cb8afa873b0b6b860e23df2fe7322e305441ea8ed5be497135',
        '1 face_mask': 'cbd67a78d774d3dccaefec4346d9585b38641557f8082ec28fd90b9c74e48a65',
        '1 landmarks': 'cc8655973cce03df4d96969a6ec28fec93a6f244e0191a3851ddd56df54503ad',
        '1 mask Bangs': 'de39d1691cdb82debec2158534dc973e21eb054cab6e2f026633d2d07ded0856',
        '1 mask Smiling': 'f4c1f8faca6f1c61fc69f09fe4443042e1074e0e13c4bdbc388e77a183900055',
        '1 mask Beard': '5190b8fec545f1134893656bcc2bd110b94e02b072974bb2bd99d863ea68e11f',
        '1 mask Eyeglasses': '743771cbe0c46c8b74bb1aab1caead70c08feda47ec6cedcc9d846f61602ac60',
        '1 mask Young': '56ce17423cb9c566b3988bad20859b2ed2d6b6b0e1b57ecc9f1a0c421902e1f0',
        '2 label': [3, 0, 0, 0, 0],
        '2 image': 'c8b1ffb4ba007b1abe0d785df9ec581be45b9c151bda6b14063011af742f1043',
        '2 face_mask': 'a3a4c0c522ac1b76ff1352607088fb525757501148d0d93051f3a89702ac25d3',
        '2 landmarks': '722d2cc5d1c0e7f4ca011b2cf22ec27326647fe863934ac499da75de33297bcf',
        '2 mask Beard': 'c8440a8440123ee34418f1d928d609754951c6789ec3eca8271c68f142ec6afe',
        '3 label': [1, 3, 0, 0, 0],
        '3 image': '95842c963e6af0a73bc96c7b68be000ae9495c963950907bd00d2891e6950bf2',
        '3 face_mask': 'e27cfc752264f649bcdd12cc52e6926aa2c8118d4ea40999a2613e877a363256',
        '3 landmarks': '4b4629d74b5307a774c6aa6167b9fbc0730028978072ee5676ac331ec81f419e',
        '3 mask Bangs': '693f27b852ea7497b57a03ede750e29c04a7ea0a4d41b95b7db970ebef0d102d',
        '3 mask Beard': 'de103597f8d1766bd3a6a08472fc1ee65f250a6dd1d25609c68dbfa37f096919',
        '4 label': [0, 0, 0, 0, 0],
        '4 image': '5b4c6461b956e7a08a836ed76831e2d507e8d155819cdc40ce07f778f10331d3',
        '4 face_mask': 'bf7b79663cbd0ba6568ec6e4e9415e221011b9c1d4072938be9e5a03d63439d5',
        '4 landmarks': 'b14f88df2a26ab0831c3e3d939362878ae7b187b8bc513268962ec60652b2451',
        '5 label': [3, 5, 4, 0, 0],
        '5 image': 'a438808ee73dd4b01163eb0e3877d7b0ddd33967fa248f5f352a4329850b41c8',
        '5 face_mask': '9fbee0b41e08c0435e5fcd4ad667e9ba1f9e52a97ea25c5b75da66dc2e419904',
        '5 landmarks': '94cc60370b6b99a70da08262a38ca0ce02834ac5840c3e1be8bb96f2d37cd680',
        '5 mask Beard': '38b0fa0a5fa98c75c0837cb5b8569ecc007f86e1c7c9fe423c81f591c3ba7709',
        '5 mask Young': 'e8c194618700f7b9c920147bcc45cc1d8d959418d4621d72bf5dca6325a5491b',
        '5 mask Smiling': '340bce6354a5ea5cf4697757cd8e45c6f2691929aaffde02d567e951e26fba2f',
    },
    'face seed 0 size 96': {
        'image': '60664039bdb07bb93d1f3c7fde3b5729c114271b061417c0fc47e0ab14dd34c3',
        'base': 'b58265fc62cfe661a0cc95a4c27708e0770683e9b462eb1ae9b9ac5fe9b7bbed',
        'face_alpha': '710e7ff9ff175142e55ed4c79e32137fb7190863b261e85d2512d3cef3808ec9',
        'hair_alpha': '3f9ec21df6383aa325ded4014aa3837fb3427bab0ac9c1210e76e1ec2b46bf7a',
        'landmarks': '6eb8918314ce6bac348a3ae69f97cb8b46304182f852ce8450c35199de3d3999',
    },
    'face seed 1 size 96': {
        'image': 'a10738c88e6f06b26d3fdb03a182e340923e0e8d79e56f463dd335b8be4df2c3',
        'base': '152a2178dc35db991214c4edc850a0934e1820d9deee7681c184a1d0b93617a8',
        'face_alpha': '3b7e1d7629e3a49a8cf50b2ab3525580a54ecd956999107006ea91ad36355767',
        'hair_alpha': 'a21b385fb6ad62b4931f58124c4f68f78c80598b4619d2eba021982585b901e5',
        'landmarks': '0466497b1e8cedb194bcef5bef4de586e3c13e042ace78495a2e45dcbaa4096c',
    },
    'face seed 2 size 96': {
        'image': 'c110d7ad9d03675eed5001caf73a81172e30db6dd4535d2640d48f3c4901cb77',
        'base': 'c3cc3eda11eba76ffb4d49e08a028c3b91e6e95e7d0271c6d5d3bc1f301cc76c',
        'face_alpha': '7d593f801a2e6feaab5ab6edf59b6166279f450c372ea80a5ae12dabe3d3ea67',
        'hair_alpha': '59db90f40337a4807c3beb36b23b69948da0a1f058b4e7e40fe040df99712e72',
        'landmarks': '891f1418379921b420244ca5265360bfc0388df84c2c21cece83f77ebdf8889d',
    },
    'facial_components size 96': {
        '0 label': [3, 5, 1, 0, 0],
        '0 image': '260079c772f3fa250165b39dafe68eff8f8167e748f936bc1a4771869803d4a6',
        '0 face_mask': 'eaca6e82f8ba5b0cc0111d778927f0d610a6295924f3e47bfd8ed08ef0d5da9c',
        '0 landmarks': '8aaaaa825eb8592c8b015225b5d09df4d2134db3b5931edadd525902c46b5a1c',
        '0 mask eyebrow': 'e283fba12753e6c280bbb7cebe4af8986ba9875f33b267e3d2e6608300149ee0',
        '0 mask hair': 'dee83007c9edffa96b259c7853c1e3f5f5a0577845260d2102e9d098bd5e9c75',
        '0 mask nose': '6478b46d661e938874593a0847ad42e07d0fed06eb8842d909dc4af92c1378b2',
        '1 label': [2, 4, 0, 0, 0],
        '1 image': 'e9dd252020043bbf7b5cd320b681f6aae95178c0a42be7399c33f6f89850f262',
        '1 face_mask': 'bdce6c905fcece35c6c7f81e511007f94919f8500ab7a2c7798ecbe63a1b4d1a',
        '1 landmarks': '40b372e802b4d08c631da3c63d09eedeab5e0bb33a1c3b4ff36626500d938532',
        '1 mask eye': 'f8a764827adeb14ff9900e3270537ce1c5dd0cbd8cfcd3774c3e5ef5ccbdc675',
        '1 mask lip': '0391ee293716576b745ec97f3e45b1dffed56ddb3380cf74568fe47147140605',
        '2 label': [5, 0, 0, 0, 0],
        '2 image': 'c163b7a8a6bf449fd539293cf68127d45038e6e6be1b2f6d3692f45a31cc4e83',
        '2 face_mask': '5926322f0e5bd0a472333961107034fb150872daf474a39526f5cac3f127e647',
        '2 landmarks': 'fa66fff79f1079fa93d16608dbc7b9fd476b8cb39bc208447e236f132ca79648',
        '2 mask hair': '56cab1b19a55192c1063c57c767ff9605786cfbc6797349465434cb3c72e7ea3',
        '3 label': [0, 0, 0, 0, 0],
        '3 image': '2b1c9ce5a3fac02da59d79a802e0e0a1f04ed27fc0daa18fedd7559bae984ec9',
        '3 face_mask': 'a230e8106155b97831526ed7c0a4e6d564a48197bc316558bea8b63b855d4c1d',
        '3 landmarks': 'bf3c1dffb16b1c9b332b68b45a59ff8bfceccc160136a96abb38de47d997c330',
        '4 label': [3, 5, 1, 2, 0],
        '4 image': '7f91a95e41bbdf55a468290aa850eef5fa0769347e5f0ca0124a286463d62f51',
        '4 face_mask': '0e7738961630c514718e8427aa26f4694529244efd74830251c8d9ba5dfffc9a',
        '4 landmarks': '8e9bda24b5e77659d1d1d6164dde77f26488ab75ac652865caeee8e9cb712775',
        '4 mask eyebrow': '8a72a5fe5fc78d8f9cf5b9a6e6f9037da2cecc5770e949e99192e6311a98bc94',
        '4 mask hair': 'faac65106ff91bd3b2393b2ae563089b8152024e9799ea27a350f2c46922d5ed',
        '4 mask nose': '81381b3d59999cc5acf8a7241d4b4a01fb1421e5a0e45e6fa573e1c42bb1fd6b',
        '4 mask eye': '626562037fec40dcf018c13f73153cb5684fcf11b2b2f9a9d087bb811ef996ed',
        '5 label': [5, 3, 1, 4, 2],
        '5 image': 'd6cd5e6be145cbcb70187469c3ca3f1ddeebed1a801edb8f1d39b91592923f26',
        '5 face_mask': 'ce5f917208aa66e1e8bc3f7a4c72e497e0642043832521266d53c4eb99499f69',
        '5 landmarks': '891865dc01b48ed84cb84ee483323dae223d50b3d6c6faf73f0cc003cb98329f',
        '5 mask hair': 'b3ca8029ee397d4a9f4618454c21738bb1c09eb72d43a74f2fca901584f0345a',
        '5 mask eyebrow': 'b0a614db579d6abf5fa37af4f3c5b6374cb3bbc17d8281c2ff25a3d6070aa630',
        '5 mask nose': '0b75bc77674407587b8c3a3f3dbbc8979bba7b94b2dfb6a94a1b3ce11a5751be',
        '5 mask lip': '271e43059758e069934dfb1c219a00f82178c19ae654a09149aff18d0ac5a8b7',
        '5 mask eye': '97b85e66a6afd6440ff38f9cf1e74928b489cfc80aae667536ad1da20530d657',
    },
    'facial_attributes size 96': {
        '0 label': [5, 1, 2, 4, 0],
        '0 image': '1fecd6d0808335f786b0c291fe8bdffc8079d14a955e751444bdb8c83d93fee0',
        '0 face_mask': '699beaaebfb1c5e40bcc48730551a1a2ee304ee4bf1355e1ccddb3367deab337',
        '0 landmarks': '5e0f925771d76349d3c3c3a53aabd8bb6afbe39d84e2a5c0011088746ab83529',
        '0 mask Young': '1aa54257301bcbe05cf20b6069c6571f40d8e495ba410c55d76fe2be54d50e55',
        '0 mask Bangs': '07ac05a04cc4acb3e5eb9a641fd015a203bfdd721d1816f66ba450c34ded85b5',
        '0 mask Eyeglasses': '51439b8a33309c2ba710b60adb9d218692a1386bb1e87118c01ec69d58f08aa6',
        '0 mask Smiling': '5643420b0c91882814e0135ef369c94824ca77fb5558c1781831b9fc8508c011',
        '1 label': [1, 4, 3, 2, 5],
        '1 image': 'a36c777b36bfc7aba32981f7bd3860ea02fd488a8e850b404a563be0f036264f',
        '1 face_mask': 'bb98c48818e1e4a60d262faf690493a99d95e4cb95d6418ef8715c8f2aecb694',
        '1 landmarks': 'd35b7ac330e9805eee9d2965dbec10fc887d3ea74c313b95f9847054d92b2f4d',
        '1 mask Bangs': '5e8892eee6aa0a18582fb549ab525ecb97b09040aed5f8e2b2382991834dfcdb',
        '1 mask Smiling': 'b922d3dabe219dc4528dc430d860d1ec782aba77af3346f5a65b263b0dbf3b9f',
        '1 mask Beard': '750a7fd922d36bd4a98937f2032c3b8abe3225f5527d6519e107eedb257b58c9',
        '1 mask Eyeglasses': 'a36d158f116d285056943486057204a7de9a95d33172a51ad83674c101868623',
        '1 mask Young': 'c31c3c38a56c53d390f06f52654318eacef316e81abb84436c4db4157620eef3',
        '2 label': [3, 0, 0, 0, 0],
        '2 image': '00a7e81e99e653ef07e192ae9c77ee0beef4c6a0fb21c868099dad3f5b35b3ce',
        '2 face_mask': 'deadbe00f164c3b1a21be32a924cc4f3d691fba937341516a95865e22e880b8a',
        '2 landmarks': 'f8387c282cc513967721ccbf9bc7b409d47c633ea4c50d91eaf73a4599b9cd58',
        '2 mask Beard': 'cf4e596318792f319d3db11dd69dd10d8a16838cb7517d78943588c86944a0de',
        '3 label': [1, 3, 0, 0, 0],
        '3 image': 'ff1523b3ded5829e602a2a7240732dc11527aa4d98226556225dc55a988f2a4f',
        '3 face_mask': '7e72fd3045be5db4d472aa5940ce21131543fa4743f8349e98a47b39f81b9362',
        '3 landmarks': '8d0549cc02c0b3e938f022711641473aaaf9e728a096c92ec3679f360de6e4e1',
        '3 mask Bangs': 'a1e391f08318b684fa90d25a18aa956749853a05cecf2b39ce5cf6d75db78fde',
        '3 mask Beard': '9622983ff6c02daa3fe7b7617fd4130ebb39e00d3747842127a32e600ece76c7',
        '4 label': [0, 0, 0, 0, 0],
        '4 image': 'ac1b3c93b6940723ae656b5e9dfeb3a0e33515ad4ed0cdc225cb676337243bbd',
        '4 face_mask': '8b2cb4805aeef039b1851ccb329952d029d0b3c44db64eeb898b3a3cd6b17460',
        '4 landmarks': '9b36e69b5f798cd2b03c6baf2471751e0906497d933a643b3fd25f678bfcac02',
        '5 label': [3, 5, 4, 0, 0],
        '5 image': '57fd4b7601ea91b7b38c34c7887a616abf27f474c996173356e051904e8069e0',
        '5 face_mask': 'a44d0142a12c3de9da872458d5ce44e57029df1b2a6812ede27c0f4b138a40e7',
        '5 landmarks': 'f80e006e2b00bd56c95ce9b79d36b9c9273ee32b660f0b485c54a81950ffe93c',
        '5 mask Beard': '4936c06684f54e9495043fd566156544e92046786d55c2ebc30bd482b5224e0b',
        '5 mask Young': '6cb3ee81ecedecb35690feab610edcd2800100ef0ace661e0ca75a3b2d30eaa9',
        '5 mask Smiling': 'ef6a63c1e494bea4be0a7cbaedad855dabb0b3312fa71a2aa53215b33c37780d',
    },
}


# The public names of `mlrank.data.faces` at 7e9a311: the module keeps them for code that imports it.
PUBLIC_NAMES = {
    "Colour", "SKIN_TONES", "HAIR_COLOURS", "IRIS_COLOURS", "LIP_COLOURS", "FRAME_COLOURS", "SUBPIXEL_BITS",
    "Pose", "Head", "Skin", "Hair", "Brows", "Eyes", "Nose", "Lips", "Bangs", "Glasses", "Beard", "Face",
    "palette", "sample_skin", "sample_hair", "sample_brows", "sample_eyes", "sample_nose", "sample_lips",
    "sample_face", "pose_matrix", "to_pixels", "ellipse", "face_outline", "jaw_points", "eye_centres",
    "eye_arcs", "eye_points", "brow_centreline", "brow_polygon", "nose_points", "lip_points", "cheek_centres",
    "glasses_rims", "glasses_arms", "bangs_polygon", "landmarks", "fixed_point", "polygon_mask", "Stroke",
    "stroke", "draw", "paint_texture", "grain_tile", "grain", "canonical_grid", "upsampled", "tinted", "over",
    "Base", "render_base", "hair_texture", "beard_zone", "lips_extent", "render_features", "render",
}


def test_faces_keeps_its_public_names():
    missing = sorted(name for name in PUBLIC_NAMES if not hasattr(faces, name))
    assert not missing


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_rendering_is_unchanged(case):
    size = int(case.rsplit(" ", 1)[1])
    if case.startswith("face seed"):
        got = rendered_faces(int(case.split()[2]), size)
    else:
        got = synthetic_items(case.split()[0], size)
    assert got == EXPECTED[case]


if __name__ == "__main__":
    print("EXPECTED: dict[str, dict[str, object]] = {")
    for case, hashes in current().items():
        print(f"    {case!r}: {{")
        for name, value in hashes.items():
            print(f"        {name!r}: {value!r},")
        print("    },")
    print("}")
