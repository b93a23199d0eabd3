"""Pure-noise reference for the DPDM results: 5,000 uniform-noise images with uniform labels."""
import numpy as np
rng = np.random.default_rng(0)
np.savez("/tmp/exp/noise.npz", images=rng.random((5000, 1, 28, 28), dtype=np.float32),
         labels=rng.integers(0, 10, 5000))
