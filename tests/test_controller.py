"""The linear controller: paper parameter counts, the reference's layouts, batched = one at a time."""

from __future__ import annotations

import numpy as np
import torch

from envs import get_spec
from envs.controller import controller_config
from models.controller import act, controller_inputs, unpack


def test_paper_parameter_counts_and_inputs():
    doom = controller_config(get_spec("doom"), 64, 512)
    car = controller_config(get_spec("carracing"), 32, 256)
    assert (doom.num_params, doom.input_size, doom.bias) == (1088, 1088, False)
    assert (car.num_params, car.input_size, car.bias) == (867, 288, True)


def test_layout_bias_first_then_row_major_weights():
    config = controller_config(get_spec("carracing"), 32, 256)
    params = torch.arange(config.num_params, dtype=torch.float32)
    weight, bias = unpack(config, params)
    assert bias.tolist() == [0, 1, 2]
    assert weight[0].tolist() == [3, 4, 5] and weight[1, 0] == 6


def test_input_order_is_z_c_h_for_doom():
    config = controller_config(get_spec("doom"), 2, 3)
    z, h, c = torch.full((1, 2), 1.0), torch.full((1, 3), 3.0), torch.full((1, 3), 2.0)
    assert controller_inputs(config, z, h, c).tolist() == [[1, 1, 2, 2, 2, 3, 3, 3]]


def test_batched_per_row_params_equal_one_at_a_time():
    config = controller_config(get_spec("carracing"), 4, 6)
    rng = np.random.default_rng(0)
    params = torch.as_tensor(rng.normal(size=(5, config.num_params)), dtype=torch.float32)
    inputs = torch.as_tensor(rng.normal(size=(5, config.input_size)), dtype=torch.float32)
    batched = act(config, params, inputs)
    single = torch.cat([act(config, params[i], inputs[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, single)
    assert batched.abs().max() <= 1
