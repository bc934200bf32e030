"""The device's choices: bf16 convolutions, channels_last, TF32 matrix products."""

import pytest
import torch

from f1lib.hardware import bf16_convolutions, channels_last_convolutions, tf32_matmuls


class Stop(Exception):
    pass


def test_tf32_matmuls_holds_high_precision_inside_its_block_only_even_on_an_interrupt():
    before = torch.get_float32_matmul_precision()
    with pytest.raises(Stop), tf32_matmuls():
        assert torch.get_float32_matmul_precision() == "high"
        raise Stop
    assert torch.get_float32_matmul_precision() == before
    with tf32_matmuls(False):
        assert torch.get_float32_matmul_precision() == before


@pytest.mark.parametrize("capability, expected", [((7, 5), False), ((8, 0), True), ((9, 0), True)],
                         ids=["T4", "A100", "H100"])
def test_bf16_convolutions_only_on_gpus_whose_cudnn_has_them(monkeypatch, capability, expected):
    asked = []

    def get_device_capability(device=None):
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    assert bf16_convolutions("cuda:1") is expected
    assert asked == [torch.device("cuda:1")]  # the device asked about, not the current one
    assert bf16_convolutions("cpu") is False and bf16_convolutions(torch.device("cpu")) is False
    # channels_last goes with bf16 on a GPU; on the CPU the float32 convolutions take it too
    assert channels_last_convolutions("cuda:1") is expected
    assert channels_last_convolutions("cpu") is True
