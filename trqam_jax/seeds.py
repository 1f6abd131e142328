"""Integer seeds hashed from tuples of integers, for environment resets and generated episodes."""

import numpy as np


def hash_seed(*parts: int) -> int:
    """A 32-bit seed from integers: the first word of numpy's SeedSequence(parts).

    Different tuples give unrelated seeds (unlike consecutive integers), so e.g. the reset seeds
    of two evaluation rounds or of online and evaluation episodes do not overlap.
    """
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
