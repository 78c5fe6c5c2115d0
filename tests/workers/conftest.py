"""Fixtures of the worker tests."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: intra-op threads only contend with each other on tiny tensors."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
