"""Before/after measurement: train dp-gan or dp-cgan on mnist-5k, report acc-logreg (cgan) and FD-digitcnn."""
import json, sys, time, math, warnings
import torch
from dpgen_bench.allocator import retain_freed_memory
from dpgen_bench.data import ImageDataset, load_splits
from dpgen_bench.metrics import compute_metrics
from dpgen_bench.privacy.budget import PrivacyBudget
from dpgen_bench.privacy.ledger import PrivacyLedger
from dpgen_bench.registry import get_method
method_name, eps, seed, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
retain_freed_memory(); torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
warnings.simplefilter("ignore")
splits = load_splits("mnist-5k", seed=0, test_fraction=0.2)
m = get_method(method_name)({"progress": False}, splits.info, seed=seed)
budget = PrivacyBudget(eps, 1e-5); ledger = PrivacyLedger()
t0 = time.perf_counter(); m.fit(splits.train, budget, ledger); fit_s = time.perf_counter() - t0
images, labels = m.sample(5000, seed=seed)
labelled = method_name == "dp-cgan"
syn = ImageDataset(images, labels, splits.info, "synthetic", meta={"labelled": labelled})
from dpgen_bench.metrics.accuracy import logreg_accuracy
res = {r.name: r.value for r in compute_metrics(["fd-digitcnn"], splits.test, syn, seed=seed)}
if labelled: res["acc-logreg"] = logreg_accuracy(syn, splits.test, seed=seed)
row = {"method": method_name, "eps": eps, "seed": seed, "fit_s": round(fit_s, 1), "sigma": m.noise_multiplier,
       "steps": m.steps_taken, "spent": ledger.epsilon(1e-5) if budget.is_private else math.inf,
       **{k: res.get(k) for k in ("acc-logreg", "FD-digitcnn")}}
print(json.dumps(row)); open(out, "a").write(json.dumps(row) + "\n")
