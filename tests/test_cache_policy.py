"""Cache policy and residency: pure functions with literal sizes, the sysfs reader on a literal tree."""

import pytest
import torch

from xfbench.profilers.device import (
    CPU_NO_ROTATION,
    MAX_INPUT_SETS,
    CachePolicy,
    cache_policy,
    cache_resident,
    cache_size_bytes,
    cpu_llc_bytes,
    largest_data_cache,
    plan_rotation,
)
from xfbench.workloads.base import Step

KIB, MIB, GIB = 2**10, 2**20, 2**30
L2 = 50 * MIB


def test_residency_is_working_set_against_cache():
    assert cache_resident(50 * MIB, L2) is True
    assert cache_resident(50 * MIB + 1, L2) is False
    assert cache_resident(1, None) is None


@pytest.mark.parametrize(
    "text, expected", [("48K", 48 * KIB), ("2048K", 2 * MIB), ("491520K", 480 * MIB), ("32M", 32 * MIB), ("512", 512)]
)
def test_sysfs_cache_sizes(text, expected):
    assert cache_size_bytes(text + "\n") == expected


def test_last_level_is_the_highest_data_or_unified_cache():
    # This VM's CPU0: L1d 48K, L1i 64K, L2 2048K, L3 491520K.
    caches = [(1, "Data", 48 * KIB), (1, "Instruction", 64 * KIB), (2, "Unified", 2 * MIB), (3, "Unified", 480 * MIB)]
    assert largest_data_cache(caches) == 480 * MIB
    assert largest_data_cache(caches[:2]) == 48 * KIB  # an instruction cache never counts, however large
    assert largest_data_cache([(1, "Instruction", 64 * KIB)]) is None


def test_cpu_llc_is_read_from_a_sysfs_tree(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    (tmp_path / "index3").mkdir()  # unreadable entries are skipped
    assert cpu_llc_bytes(tmp_path) == 2 * MIB
    assert cpu_llc_bytes(tmp_path / "absent") is None


def test_unknown_cache_size():
    assert plan_rotation(None, 10, 0, GIB) == CachePolicy(1, None, "none (L2 size unknown; working set 10 B)")


def test_a_working_set_of_four_l2_sizes_streams_without_rotation():
    assert plan_rotation(L2, 150 * MIB, 50 * MIB, GIB) == CachePolicy(
        1, False, "none: working set 200 MiB is at least 4 x the L2 (50 MiB), so each call streams it from device "
        "memory",
    )


def test_a_working_set_between_one_and_four_l2_sizes_rotates():
    # 100 MiB = 2 x L2: without rotation half of it could still be in L2 from the previous call.
    assert plan_rotation(L2, 100 * MIB, 0, GIB) == CachePolicy(
        2, False, "rotate 2 input sets of 100 MiB (200 MiB; the 100 MiB working set is under 4 x the L2 (50 MiB)), "
        "more than the L2 (50 MiB) holds: each call reads its inputs from device memory",
    )
    # Inputs that cannot be rotated there say that the floor may be optimistic.
    assert plan_rotation(L2, 120 * MIB, 0, 200 * MIB) == CachePolicy(
        1, False, "none (two input sets of 120 MiB exceed the rotation budget 200 MiB); working set 120 MiB exceeds "
        "the L2 (50 MiB), partly served from it between calls: the floor may be optimistic",
    )


def test_rotation_spans_four_l2_sizes_by_bytes():
    # 25 MiB of inputs, nothing else: 8 sets = 200 MiB = 4 x L2, so every call reads from DRAM.
    assert plan_rotation(L2, 25 * MIB, 0, GIB) == CachePolicy(
        8, False, "rotate 8 input sets of 25 MiB (200 MiB), more than the L2 (50 MiB) holds: "
        "each call reads its inputs from device memory",
    )


def test_small_inputs_get_as_many_sets_as_span_the_cache_not_a_fixed_count():
    # 4 MiB of inputs: 50 sets = 200 MiB = 4 x L2 (the old policy stopped at 64 sets whatever the size).
    assert plan_rotation(L2, 4 * MIB, 0, GIB).input_sets == 50


def test_the_number_of_sets_is_capped():
    # 1 KiB inputs would need 204,800 clones to span 4 x L2; 1024 sets of 1 KiB still fit.
    assert plan_rotation(L2, KIB, 0, GIB) == CachePolicy(
        MAX_INPUT_SETS, True, "rotate 1024 input sets of 1 KiB (1 MiB, capped at 1024 sets, short of 4 x the L2 "
        "(50 MiB)): they still fit in the L2 (50 MiB): cache-resident",
    )
    assert plan_rotation(L2, 100 * KIB, 0, GIB) == CachePolicy(
        MAX_INPUT_SETS, False, "rotate 1024 input sets of 100 KiB (100 MiB, capped at 1024 sets, short of 4 x the L2 "
        "(50 MiB)), more than the L2 (50 MiB) holds: each call reads its inputs from device memory",
    )


def test_an_empty_working_set():
    assert plan_rotation(L2, 0, 0, GIB) == CachePolicy(
        1, True, "none (no tensor inputs to rotate); working set 0 B fits in the L2 (50 MiB): cache-resident"
    )


def test_a_budget_cap_that_still_fits_says_cache_resident():
    assert plan_rotation(L2, KIB, 0, 32 * KIB) == CachePolicy(
        32, True, "rotate 32 input sets of 1 KiB (32 KiB, capped by the 32 KiB budget): they still fit in the L2 "
        "(50 MiB): cache-resident",
    )
    assert plan_rotation(L2, 3 * MIB, MIB, 8 * MIB) == CachePolicy(
        2, True, "rotate 2 input sets of 3 MiB (6 MiB, capped by the 8 MiB budget): with the other 1 MiB they still "
        "fit in the L2 (50 MiB): cache-resident",
    )


def test_a_budget_below_two_sets_does_not_rotate():
    assert plan_rotation(L2, 30 * MIB, 0, 40 * MIB) == CachePolicy(
        1, True, "none (two input sets of 30 MiB exceed the rotation budget 40 MiB); working set 30 MiB fits in "
        "the L2 (50 MiB): cache-resident",
    )


def test_weights_that_cannot_rotate_keep_the_working_set_resident():
    # Token ids (16 KiB) beside 20 MiB of weights: rotating the ids would change nothing.
    assert plan_rotation(L2, 16 * KIB, 20 * MIB, GIB) == CachePolicy(
        1, True, "none (tensor inputs 16 KiB are under 10% of the working set; the other 20 MiB, weights and "
        "state, cannot rotate); working set 20 MiB fits in the L2 (50 MiB): cache-resident",
    )
    # A decode step has no tensor inputs at all.
    assert plan_rotation(L2, 0, 4 * MIB, GIB).cache_resident is True


def test_rotated_inputs_beside_resident_outputs():
    # Attention forward: q, k, v (3 MiB) rotate; the output (1 MiB) is written to the same place each call.
    assert plan_rotation(L2, 3 * MIB, MIB, GIB) == CachePolicy(
        67, True, "rotate 67 input sets of 3 MiB (201 MiB), more than the L2 (50 MiB) holds: each call reads its "
        "inputs from device memory, but the other 1 MiB (weights, outputs) do not rotate and may be served from the "
        "L2 (50 MiB): cache-resident",
    )


def test_a_small_part_that_does_not_rotate_keeps_the_floor():
    # q, k, v (30 MiB) rotate; the 1 MiB output is under 10% of the working set: a floor, maybe 3.2% optimistic.
    assert plan_rotation(L2, 30 * MIB, MIB, GIB) == CachePolicy(
        7, False, "rotate 7 input sets of 30 MiB (210 MiB), more than the L2 (50 MiB) holds: each call reads its "
        "inputs from device memory; the other 1 MiB (weights, outputs) do not rotate and may be served from the "
        "L2 (50 MiB), so the floor may be optimistic by up to their 3.2% of the working set",
    )


def test_cpu_never_rotates_but_says_whether_the_llc_holds_the_working_set():
    llc = 480 * MIB
    assert plan_rotation(llc, 3 * MIB, MIB, 0, rotate=False, cache="LLC") == CachePolicy(
        1, True, f"{CPU_NO_ROTATION}; working set 4 MiB fits in the LLC (480 MiB): cache-resident"
    )
    assert plan_rotation(llc, GIB, 0, 0, rotate=False, cache="LLC") == CachePolicy(
        1, False, f"{CPU_NO_ROTATION}; working set 1 GiB exceeds the LLC (480 MiB)"
    )


def test_cache_policy_takes_the_step_inputs_as_the_rotating_bytes():
    x = torch.zeros(256, 1024)  # 1 MiB of inputs; the other 3 MiB of the working set stay
    step = Step(fn=lambda x: None, inputs=(x, 7), flops=1.0, tokens=1, working_set_bytes=4 * MIB)
    p = cache_policy(torch.device("cpu"), step)
    assert p.input_sets == 1 and p.description.startswith(CPU_NO_ROTATION)
    assert "working set 4 MiB" in p.description
    assert p.cache_resident == cache_resident(4 * MIB, cpu_llc_bytes())
