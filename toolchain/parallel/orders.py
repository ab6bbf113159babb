"""The order in which a shard's samples are visited, epoch by epoch: exactly `toolchain.train`'s.

Centralized training (`toolchain.train`) feeds Keras `fit` a tf.data pipeline shuffled with the
training seed (`shuffle(n, seed, reshuffle_each_iteration=True)` after `keras.utils.set_random_seed`).
Keras 3.15 (the pinned version) opens two iterators of that dataset per epoch, so epoch e visits the
shuffle of iteration 2e. Replaying the same tf.data shuffle over sample positions gives the same
order without touching `train.py`; tests/test_parallel.py checks the equivalence to 1e-5 in weights,
so a Keras upgrade that changes this fails loudly instead of drifting.

Shard k of a placement uses seed training.seed + k, so a one-shard placement is the centralized
order and two replicas fed the same shard see the same batches.
"""

from __future__ import annotations

import numpy as np

ITERATORS_PER_EPOCH = 2  # Keras 3.15 fit over a finite tf.data dataset


def epoch_orders(n: int, global_seed: int, shard_seed: int, epochs: int) -> list[np.ndarray]:
    import tensorflow as tf

    tf.random.set_seed(global_seed)
    # One batch of the whole permutation per iteration (element by element would take minutes).
    ds = tf.data.Dataset.range(n).shuffle(n, seed=shard_seed, reshuffle_each_iteration=True).batch(n)
    out = []
    for i in range(ITERATORS_PER_EPOCH * epochs):
        (order,) = list(ds.as_numpy_iterator())
        if i % ITERATORS_PER_EPOCH == 0:
            out.append(order.astype(np.int32))
    return out
