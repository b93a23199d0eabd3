"""Fit DPDM once at eps, then sample with several guidance scales (post-processing) and evaluate."""
import json, sys, time, torch
torch.set_num_threads(1)
from baselines.dpdm import DPDM
from dpgen_bench.context import RunContext
from dpgen_bench.data.registry import load_dataset
from dpgen_bench.data.splits import split_dataset
from dpgen_bench.data.types import ImageDataset
from dpgen_bench.metrics import compute_metrics
from dpgen_bench.metrics.accuracy import AccuracyConfig
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.runner.execute import train

label, extra, eps = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
ws = [float(w) for w in sys.argv[4].split(",")]
splits = split_dataset(load_dataset("mnist-5k"), seed=0, test_fraction=0.2)
m = DPDM(extra, splits.train.info, seed=0, context=RunContext(progress=False, cache_dir="/tmp/sweep/cache"))
ledger, spent, fit = train(m, splits.train, PrivacyBudget(epsilon=eps, delta=1e-5))
print(label, "fit", round(fit, 1), "eps", spent, flush=True)
for w in ws:
    m.config = m.config.model_copy(update={"guidance_scale": w})
    t0 = time.perf_counter()
    im, lab = m.sample(2000, seed=0)
    ts = time.perf_counter() - t0
    syn = ImageDataset(im, lab, splits.test.info, split="synthetic", meta={"labelled": True})
    res = compute_metrics(["accuracy", "fd-digitcnn"], splits.test, syn, cache_dir="/tmp/sweep/cache",
                          accuracy_config=AccuracyConfig(cnn_epochs=3, mlp_max_iter=50))
    print(label, f"w={w}", f"sample_s={ts:.1f}", {r.name: round(r.value, 3) if r.value is not None else r.missing_reason for r in res}, flush=True)
