"""Atomic writes (``dpgen_bench.files``): a reader or a crash sees the old file or the complete new one."""

from __future__ import annotations

import numpy as np
import pytest

from dpgen_bench.files import atomic_path, write_atomic


def test_a_file_name_writer_lands_on_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "samples.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".") and tmp.suffix == ".npz"
        np.savez(tmp, x=np.arange(3))  # np.savez would append .npz to a name without it
        assert not target.exists()  # nothing visible until the block ends
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["samples.npz"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = write_atomic(tmp_path / "state.txt", "old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.txt"]
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
