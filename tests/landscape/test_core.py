import pytest
import torch

from landscape_sweep.landscape._core import flatten, unflatten_like


def test_flatten_unflatten_round_trip_by_dict_and_layout():
    like = {"w": torch.randn(3, 2), "b": torch.randn(3), "s": torch.randn(())}
    flat = flatten(like)
    assert flat.shape == (10,)
    back = unflatten_like(flat, like)
    assert list(back) == list(like) and all(torch.equal(back[k], like[k]) for k in like)
    layout = [("b", torch.Size([3])), ("w", torch.Size([3, 2]))]  # a layout picks keys and order
    torch.testing.assert_close(flatten(like, layout), torch.cat([like["b"], like["w"].reshape(-1)]))
    back = unflatten_like(flatten(like, layout), layout)
    assert torch.equal(back["w"], like["w"]) and torch.equal(back["b"], like["b"])


def test_unflatten_keeps_leading_axes_as_views():
    layout = [("w", torch.Size([2, 2])), ("b", torch.Size([2]))]
    stack = torch.arange(18.0).reshape(3, 6)  # 3 flat points
    out = unflatten_like(stack, layout)
    assert out["w"].shape == (3, 2, 2) and out["b"].shape == (3, 2)
    assert torch.equal(out["b"][1], torch.tensor([10.0, 11.0]))
    assert out["w"].data_ptr() == stack.data_ptr()  # a view, no copy


def test_bad_input():
    with pytest.raises(ValueError, match="layout needs"):
        unflatten_like(torch.zeros(5), [("w", torch.Size([2, 2]))])
    with pytest.raises(ValueError, match="mapping"):
        flatten([torch.zeros(2)], [("w", torch.Size([2]))])
