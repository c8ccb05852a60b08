"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread; restore the previous count after.

    The tensors of these tests are small and gain nothing from threads, and on a
    shared 2-core machine thread contention makes them many times slower. A
    module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    # Imported here, not at the top: most test modules never need torch.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
