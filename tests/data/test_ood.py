"""`data.ood` for mnist1d (the generator's knobs, the clean data's units, cache) and the spec checks of every
dataset."""

from __future__ import annotations

import pytest
import torch

from landscape_sweep.data import load_data
from landscape_sweep.data import ood as ood_mod
from landscape_sweep.data import tabular as tab
from landscape_sweep.data.ood import check_ood, mnist1d_samples

SMALL = {"num_train": 400, "num_test": 100}
NOISY = {"name": "noisy", "iid_noise_scale": 0.1, "corr_noise_scale": 0.5}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.parametrize("shuffle_seq", [False, True])
def test_samples_are_the_generators_before_it_scales_them(root, shuffle_seq):
    args = tab.mnist1d_args(**SMALL, shuffle_seq=shuffle_seq)
    x, y, perm = mnist1d_samples(args)
    assert (perm is not None) == shuffle_seq
    (xtr, ytr), (xte, yte), _ = tab.raw_mnist1d(root, **SMALL, shuffle_seq=shuffle_seq)
    scaled = torch.from_numpy((x - x.mean()) / x.std()).float().unsqueeze(1)
    assert torch.equal(scaled, torch.cat([xtr, xte])) and torch.equal(torch.from_numpy(y), torch.cat([ytr, yte]))


def test_shifted_set_has_the_generators_labels_new_inputs_and_its_own_seed(root, monkeypatch):
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    b = load_data("mnist1d", root, ood=[NOISY], **SMALL)
    x, y = b.ood["noisy"]
    assert x.shape == b.test[0].shape and b.info["num_ood"] == {"noisy": 100}
    # the generator itself, with the shifted knobs and the set's own seed (default 1), gives the same labels and,
    # scaled by its own statistics instead of the clean data's, the same signals
    args = {**tab.mnist1d_args(**SMALL), "iid_noise_scale": 0.1, "corr_noise_scale": 0.5, "seed": 1}
    ref = make_dataset(ObjectView({**args, "num_samples": 100, "train_split": 1.0}))
    assert torch.equal(y, torch.from_numpy(ref["y"]).long())
    assert torch.corrcoef(torch.stack([x.flatten(), torch.from_numpy(ref["x"]).float().flatten()]))[0, 1] > 0.999
    assert not torch.equal(x, b.test[0]) and not torch.equal(y, b.test[1])  # a fresh draw, not the test set
    # stronger noise, in the clean data's units: more spread than the clean test set after the same standardisation
    assert x.std() > 1.2 * b.test[0].std()
    # cached: read back, never regenerated; the same spec regenerated from scratch gives the same set
    monkeypatch.setattr(ood_mod, "mnist1d_samples", lambda args: pytest.fail("regenerated instead of cached"))
    assert torch.equal(load_data("mnist1d", root, ood=[NOISY], **SMALL).ood["noisy"][0], x)
    monkeypatch.undo()
    fresh = load_data("mnist1d", root / "fresh", ood=[NOISY], **SMALL).ood["noisy"]
    assert torch.equal(fresh[0], x) and torch.equal(fresh[1], y)
    other = load_data("mnist1d", root, ood=[{**NOISY, "seed": 7}], **SMALL).ood["noisy"]
    assert not torch.equal(other[0], x)


def test_unshifted_knobs_give_a_fresh_test_set_of_the_clean_distribution(root):
    b = load_data("mnist1d", root, ood=[{"name": "fresh"}], **SMALL)
    x = b.ood["fresh"][0]
    assert abs(x.mean() - b.test[0].mean()) < 0.1 and abs(x.std() / b.test[0].std() - 1) < 0.1


def test_a_trained_model_is_worse_on_the_shifted_set(root):
    b = load_data("mnist1d", root, ood=[NOISY])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = b.train
    for _ in range(15):
        for idx in torch.randperm(len(y)).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        test, shifted = ((model(s[0]).argmax(1) == s[1]).float().mean().item() for s in (b.test, b.ood["noisy"]))
    assert test > 0.4 and shifted < test - 0.05, (test, shifted)


BAD = [
    ("mnist1d", {"x": 1}, "data.ood={'x': 1}: must be a list of shifted test sets"),
    ("mnist1d", [3], "data.ood[0]=3: must be an object"),
    ("mnist1d", [{"iid_noise_scale": 0.1}], "data.ood[0].name=None: must be 1-64 letters, digits, _ or -"),
    ("mnist1d", [{"name": "a/b"}], "data.ood[0].name='a/b': must be 1-64 letters"),
    ("mnist1d", [{"name": "a"}, {"name": "a", "seed": 3}], "data.ood[1].name='a': duplicate"),
    ("mnist1d", [{"name": "a", "noise": 1}], "data.ood[0].noise: unknown key; mnist1d shifted sets take name, seed, "),
    ("mnist1d", [{"name": "a", "iid_noise_scale": -1}], "data.ood[0].iid_noise_scale=-1: must be a finite number >= 0"),
    ("mnist1d", [{"name": "a", "scale_coeff": 2}], "data.ood[0].scale_coeff=2: must be a number in [0, 2)"),
    ("mnist1d", [{"name": "a", "max_translation": 0}], "data.ood[0].max_translation=0: must be an integer >= 1"),
    ("mnist1d", [{"name": "a", "padding": [5, 1]}], "data.ood[0].padding=[5, 1]: must be [low, high]"),
    ("mnist1d", [{"name": "a", "seed": 42}], "data.ood[0].seed=42: must differ from data.options.gen_seed=42"),
    (
        "mnist1d",
        [{"name": "a", "corruption": "contrast"}],
        "data.ood[0].corruption='contrast': not available for mnist1d; its shifted sets take iid_noise_scale",
    ),
    ("cifar10", [{"corruption": "fog", "severity": 1}], "data.ood[0].corruption='fog': must be one of gaussian_noise"),
    ("cifar10", [{"corruption": "contrast", "severity": 0}], "data.ood[0].severity=0: must be an integer in [1, 5]"),
    ("mnist", [{"corruption": "contrast"}], "data.ood[0].severity: missing"),
    (
        "digits",
        [{"corruption": "contrast", "severity": 1, "iid_noise_scale": 1}],
        "data.ood[0].iid_noise_scale: unknown",
    ),
    ("svhn", [{"corruption": "contrast", "severity": 1}] * 2, "data.ood[1].name='contrast_1': duplicate"),
    ("synthetic", [{"name": "a"}], "data.ood=[{'name': 'a'}]: synthetic has no shifted test sets; they exist for"),
    ("mnist1d", [{"name": "c", "control": "yes"}], "data.ood[0].control='yes': must be true or false"),
    (
        "mnist1d",
        [{"name": "c", "control": True, "iid_noise_scale": 0.1}],
        "data.ood[0].control=True: a control set takes no generator knobs (got iid_noise_scale): it has no shift",
    ),
    ("cifar10", [{"corruption": "contrast", "severity": 1, "control": True}], "data.ood[0].control: unknown key"),
]


@pytest.mark.parametrize("dataset, specs, message", BAD, ids=[b[2].split(":")[0] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_specs_fail_in_one_line(dataset, specs, message):
    with pytest.raises(ValueError) as e:
        check_ood(dataset, specs)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_good_specs_get_their_defaults():
    assert check_ood("mnist1d", None) == check_ood("synthetic", []) == []
    assert check_ood("mnist1d", [{"name": "a", "padding": [1, 2]}]) == [
        {"name": "a", "seed": 1, "padding": [1, 2], "control": False}
    ]
    assert check_ood("cifar100", [{"corruption": "brightness", "severity": 2}]) == [
        {"name": "brightness_2", "corruption": "brightness", "severity": 2, "seed": 0, "control": False}
    ]
    assert check_ood("mnist1d", [{"name": "c", "seed": 3, "control": True}])[0]["control"] is True
    assert check_ood("mnist1d", [{"name": "a", "seed": 42}], {"gen_seed": 7})[0]["seed"] == 42
