"""Load a probe model, sample with sampler variants (post-processing) and evaluate."""
import json, sys, time, torch
torch.set_num_threads(1)
from baselines.dpdm import DPDM
from dpgen_bench.context import RunContext
from dpgen_bench.data.registry import load_dataset
from dpgen_bench.data.splits import split_dataset
from dpgen_bench.data.types import ImageDataset
from dpgen_bench.metrics import compute_metrics
from dpgen_bench.metrics.accuracy import AccuracyConfig

label, ema_key = sys.argv[1], sys.argv[2]
variants = [json.loads(v) for v in sys.argv[3:]]
state = torch.load(f"/tmp/probe/{label}_model.pt", weights_only=True)
splits = split_dataset(load_dataset("mnist-5k"), seed=0, test_fraction=0.2)
m = DPDM(state["config"], splits.train.info, seed=0, context=RunContext(progress=False))
m.net.load_state_dict(state["net"])
import copy
m.ema = copy.deepcopy(m.net)
m.ema.load_state_dict(state["emas"][ema_key])
base = m.config
for v in variants:
    m.config = base.model_copy(update=v)
    t0 = time.perf_counter()
    im, lab = m.sample(2000, seed=0)
    ts = time.perf_counter() - t0
    syn = ImageDataset(im, lab, splits.test.info, split="synthetic", meta={"labelled": True})
    res = compute_metrics(["accuracy", "fd-digitcnn"], splits.test, syn, cache_dir="/tmp/probe/cache",
                          accuracy_config=AccuracyConfig(cnn_epochs=3, mlp_max_iter=50))
    print(label, ema_key, v, f"sample_s={ts:.1f}", {r.name: round(r.value, 3) if r.value is not None else r.missing_reason for r in res}, flush=True)
