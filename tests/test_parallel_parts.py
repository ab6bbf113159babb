"""Flexible parallel learning without Ray: placements, schedule, wire codec, block math, cost counts."""

from __future__ import annotations

import copy
import itertools
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.config import default_config
from toolchain.errors import ConfigError, ToolchainError
from toolchain.model import initial_weights
from toolchain.parallel import wire
from toolchain.parallel.costs import block_macs, block_values, node_costs, predict_tallies
from toolchain.parallel.engine import Block, BlockSpec, OptimizerSpec, softmax_xent
from toolchain.parallel.placement import load_placement, placement_from_dict
from toolchain.parallel.schedule import make_schedule, shard_ranges
from toolchain.parallel.worker import average_states
from toolchain.sparsity import build_connectivity

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples" / "placements").glob("*.toml"))


def _cfg():
    return default_config()


def _conns(cfg):
    n = cfg.network
    return build_connectivity(n.neurons, n.out_degrees, n.pattern, n.seed)


def _fpl_dict() -> dict:
    return tomllib.loads((REPO / "examples" / "placements" / "fpl.toml").read_text())


# ----------------------------------------------------------------------------------------------
# Placements
# ----------------------------------------------------------------------------------------------
def test_every_example_placement_loads():
    names = {p.stem for p in EXAMPLES}
    assert {"centralized", "data_parallel", "split_learning", "fpl", "fpl_int8"} <= names
    for path in EXAMPLES:
        pl = load_placement(path, _cfg())
        assert pl.chains(), path
        covered = {j for i in pl.instances.values() for j in i.spec.junctions}
        assert covered == {0, 1, 2}, path


def test_fpl_structure():
    pl = load_placement(REPO / "examples/placements/fpl.toml", _cfg())
    assert pl.chains() == [["head1", "tail"], ["head2", "tail"], ["head3", "tail"], ["head4", "tail"]]
    assert pl.groups()["junction_1+exit"] == ["head1", "head2", "head3", "head4"]
    assert pl.shards == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]


def _broken(mutate) -> str:
    data = _fpl_dict()
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        placement_from_dict(data, _cfg(), "p.toml")
    return str(exc.value)


def test_bad_placements_name_the_field():
    def unknown_node(d):
        d["instance"][0]["node"] = "dev9"

    assert "instance 'head1'.node = 'dev9' is not a node" in _broken(unknown_node)

    def unknown_profile(d):
        d["nodes"]["dev1"]["profile"] = "pi-zero"

    assert "nodes.dev1.profile = 'pi-zero' is not a known profile" in _broken(unknown_profile)

    def no_tail(d):
        d["instance"] = [i for i in d["instance"] if i["name"] != "tail"]

    assert "next = 'tail' is not an instance" in _broken(no_tail)

    def no_tail_at_all(d):
        d["instance"] = [i for i in d["instance"] if i["name"] != "tail"]
        for i in d["instance"]:
            del i["next"]

    assert "next must name the instance that continues at junction_2" in _broken(no_tail_at_all)

    def no_exit(d):
        for i in d["instance"]:
            i["block"] = i["block"].replace("+exit", "")

    assert "exit_to must name an exit instance" in _broken(no_exit)

    def gap(d):
        d["shards"] = [[0, 0.25], [0.3, 1.0]]
        for i in d["instance"]:
            if i.get("shard", 0) > 1:
                i["shard"] = 1

    assert "shards leave a gap at 0.25" in _broken(gap)

    def overlap(d):
        d["shards"] = [[0, 0.6], [0.5, 1.0]]

    assert "shards overlap" in _broken(overlap)

    def short(d):
        d["shards"] = [[0, 0.5]]

    assert "do not cover the training data" in _broken(short)

    def unused_shard(d):
        d["shards"] = 5

    assert "shard 4 feeds no instance" in _broken(unused_shard)

    def bad_shard(d):
        d["instance"][0]["shard"] = 7

    assert "instance 'head1'.shard = 7 is not a shard index" in _broken(bad_shard)

    def bad_wire(d):
        d["wire"] = "bf16"

    assert "wire = 'bf16'" in _broken(bad_wire)

    def bad_block(d):
        d["instance"][0]["block"] = "head+torso"

    assert "instance 'head1'.block = 'head+torso': unknown part 'torso'" in _broken(bad_block)

    def no_aggregator(d):
        del d["replicas"]["aggregator"]

    assert "replicas.aggregator is not set" in _broken(no_aggregator)

    def typo(d):
        d["instance"][0]["nxt"] = "tail"

    assert "unknown key 'nxt'" in _broken(typo)


def test_cycle_is_reported():
    cfg = _cfg()
    data = {
        "nodes": {"a": {"profile": "cloud-server"}},
        "instance": [
            {"name": "h", "block": "head+exit", "node": "a", "shard": 0, "next": "t1"},
            {"name": "t1", "block": "junction_2", "node": "a", "next": "t2"},
            {"name": "t2", "block": "junction_3", "node": "a", "next": "t1"},
        ],
    }
    with pytest.raises(ConfigError, match=r"cycle: t1 -> t2 -> t1"):
        placement_from_dict(data, cfg, "p.toml")


def test_missing_placement_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_placement(tmp_path / "nope.toml", _cfg())
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_placement(bad, _cfg())


# ----------------------------------------------------------------------------------------------
# Schedule
# ----------------------------------------------------------------------------------------------
@given(n=st.integers(1, 100_000), k=st.integers(1, 16))
def test_shards_partition_the_data(n, k):
    ranges = shard_ranges(n, [(i / k, (i + 1) / k) for i in range(k)])
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_schedule_rounds_and_steps():
    pl = load_placement(REPO / "examples/placements/fpl.toml", _cfg())
    sched = make_schedule(pl, 4000, 128, 2)
    assert sched.steps == [8, 8, 8, 8]  # 1000 samples per shard
    assert len(sched.rounds) == 2  # every = 8 steps: one round per epoch
    steps = sched.instance_steps(pl)
    assert steps["head1"] == 16 and steps["tail"] == 64
    relay = load_placement(REPO / "examples/placements/split_learning.toml", _cfg())
    sched = make_schedule(relay, 4000, 128, 2)
    assert [r.work[0].chain for r in sched.rounds] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert sched.instance_steps(relay)["head1"] == 64  # one model relayed: its optimizer sees every step


# ----------------------------------------------------------------------------------------------
# Wire codec
# ----------------------------------------------------------------------------------------------
arrays = st.integers(1, 20).flatmap(
    lambda r: st.integers(1, 50).flatmap(
        lambda c: st.lists(
            st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=r * c, max_size=r * c
        ).map(lambda v: np.array(v, dtype=np.float32).reshape(r, c))
    )
)


@settings(max_examples=60)
@given(x=arrays, wire_name=st.sampled_from(list(wire.DTYPES)))
def test_wire_roundtrip_and_size(x, wire_name):
    labels = np.arange(len(x)) % 10
    msg = wire.encode(x, wire_name, labels)
    assert len(msg) == wire.message_bytes(*x.shape, wire_name, True)
    back, lab = wire.decode(msg)
    assert np.array_equal(lab, labels)
    if wire_name == "fp32":
        assert np.array_equal(back, x)
    elif wire_name == "fp16":
        assert np.allclose(back, x.astype(np.float16).astype(np.float32))
    else:
        scale = np.abs(x).max() / 127 if np.abs(x).max() > 0 else 1.0
        assert np.max(np.abs(back - x)) <= scale / 2 * 1.0001 + 1e-6
    grad = wire.encode(x, wire_name)
    assert len(grad) == wire.message_bytes(*x.shape, wire_name, False)
    assert wire.decode(grad)[1] is None


def test_wire_rejects_truncated_messages():
    msg = wire.encode(np.ones((4, 3), np.float32), "fp16", np.zeros(4, int))
    with pytest.raises(ToolchainError, match="header says"):
        wire.decode(msg[:-1])
    with pytest.raises(ToolchainError, match="shorter than its header"):
        wire.decode(msg[:5])


def test_averaging_is_a_sample_weighted_mean():
    a, b = np.arange(6, dtype=np.float32), np.arange(6, dtype=np.float32) * 3
    ma, mb = wire.encode_arrays([a]), wire.encode_arrays([b])
    mean = wire.decode_arrays(average_states([ma, mb], [1.0, 3.0]), [(6,)])[0]
    assert np.allclose(mean, (a + 3 * b) / 4)
    same = average_states([ma, ma], [5.0, 5.0])
    assert same == ma  # two equal replicas average to exactly the same bits


# ----------------------------------------------------------------------------------------------
# Block math
# ----------------------------------------------------------------------------------------------
def _batch(cfg, n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, cfg.network.neurons[0]), dtype=np.float32), rng.integers(0, 10, n)


def _full_step(block, x, y):
    out, ex = block.forward(x)
    block.backward(softmax_xent(out, y, 1.0)[1], softmax_xent(ex, y, 1.0)[1])


def test_split_blocks_train_exactly_like_the_whole_network():
    """Model parallelism is exact: head+exit and tail as two blocks, fp32 messages in between,
    give the same weights as one block holding everything."""
    cfg = _cfg()
    conns = _conns(cfg)
    w0 = initial_weights(cfg, conns, 0)
    opt = OptimizerSpec.from_config(cfg, 10)
    full = Block(cfg, conns, BlockSpec((0, 1, 2), True), w0, opt)
    head = Block(cfg, conns, BlockSpec((0,), True), w0, opt)
    tail = Block(cfg, conns, BlockSpec((1, 2), False), w0, opt)
    for step in range(5):
        x, y = _batch(cfg, seed=step)
        _full_step(full, x, y)
        split, ex = head.forward(x)
        act, lab = wire.decode(wire.encode(split, "fp32", y))
        out, _ = tail.forward(act)
        d_act = tail.backward(softmax_xent(out, lab, 1.0)[1], None)
        d_act, _ = wire.decode(wire.encode(d_act, "fp32"))
        head.backward(d_act, softmax_xent(ex, y, 1.0)[1])
    got = {**head.packed_weights(), **tail.packed_weights()}
    want = full.packed_weights()
    for k in want:
        assert np.allclose(got[k], want[k], atol=1e-6, rtol=0), k


def test_gradients_match_finite_differences():
    cfg = _cfg()
    conns = _conns(cfg)
    w0 = initial_weights(cfg, conns, 1)
    spec = BlockSpec((0, 1, 2), True)
    x, y = _batch(cfg, 16)
    x = x.astype(np.float64).astype(np.float32)

    def loss(weights):
        b = Block(cfg, conns, spec, weights, OptimizerSpec.from_config(cfg, 1))
        out, ex = b.forward(x, keep=False)
        return softmax_xent(out, y, 1.0)[0] + softmax_xent(ex, y, 1.0)[0]

    # One SGD step without momentum history or weight decay: Δw = -lr·g, so g = -Δw / lr.
    sgd = copy.deepcopy(cfg)
    sgd.training.optimizer, sgd.training.weight_decay, sgd.training.schedule = "sgd", 0.0, "constant"
    sgd.training.learning_rate = 1.0
    b = Block(sgd, conns, spec, w0, OptimizerSpec.from_config(sgd, 1))
    _full_step(b, x, y)
    grads = {k: w0[k] - v for k, v in b.packed_weights().items()}
    rng = np.random.default_rng(3)
    for name in ("junction_1/w", "junction_2/b", "junction_3/w", "exit_logits/kernel"):
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in w0[name].shape)
            eps = 1e-3
            wp = {k: v.astype(np.float32).copy() for k, v in w0.items()}
            wm = {k: v.astype(np.float32).copy() for k, v in w0.items()}
            wp[name][idx] += eps
            wm[name][idx] -= eps
            numeric = (loss(wp) - loss(wm)) / (2 * eps)
            assert abs(numeric - grads[name][idx]) < 5e-4 + 0.05 * abs(numeric), (name, idx)


# ----------------------------------------------------------------------------------------------
# Cost counts
# ----------------------------------------------------------------------------------------------
def test_block_macs_and_values_by_hand():
    cfg = _cfg()  # [800, 40, 40, 10], d_out [2, 9, 10]: edges 1600, 360, 400; exit 40x10
    assert block_macs(cfg, BlockSpec((0,), True)) == (1600 + 400, 1600 + 800)
    assert block_macs(cfg, BlockSpec((1, 2), False)) == (760, 1520)
    assert block_values(cfg, BlockSpec((0,), True)) == 1640 + 410
    assert block_values(cfg, BlockSpec((0, 1, 2), True)) == 2450 + 410


def test_predicted_bytes_by_hand():
    """Two heads on two devices, tail on the edge, fp16: per step and head one activation message
    (rows x 40 x 2 B + 14 B header + rows labels) up and one gradient (rows x 40 x 2 + 14) down."""
    cfg = _cfg()
    data = _fpl_dict()
    data["shards"] = 2
    data["wire"] = "fp16"
    data["instance"] = [i for i in data["instance"] if i["name"] in ("head1", "head2", "tail")]
    data["replicas"]["every"] = "epoch"
    pl = placement_from_dict(data, cfg, "p.toml")
    sched = make_schedule(pl, 300, 128, 1)  # 150 per shard: batches of 128 and 22
    t = predict_tallies(cfg, pl, sched)
    up = sum(r * 40 * 2 + 14 + r for r in (128, 22))
    down = sum(r * 40 * 2 + 14 for r in (128, 22))
    weights = 14 + 4 * (1640 + 410)
    assert t["head1"].sent == {"activations": up, "weights": weights}
    assert t["head1"].received == {"gradients": down, "weights": weights}
    assert t["tail"].received == {"activations": 2 * up}
    assert t["aggregator"].sent == {"weights": 2 * weights}
    costs = node_costs(pl, t, "predicted")
    assert costs["total"]["bytes"] == 2 * (up + down) + 4 * weights
    dev = costs["nodes"]["dev1"]
    bits = 8 * (up + down + 2 * weights)
    assert dev["energy_comm_j"] == pytest.approx(bits * 289.8e-9)
    macs = 150 * (2000 + 2400)
    assert dev["node_time_s"] == pytest.approx(macs / 1e9)
    assert dev["energy_j"] == pytest.approx(macs / 1e9 * 6.4 + bits * 289.8e-9)
