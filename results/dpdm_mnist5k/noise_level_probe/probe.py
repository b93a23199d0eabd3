"""Fit DPDM once at eps with config overrides, tracking extra EMA decays (post-processing), then sample
2,000 images from each EMA and evaluate acc-logreg / acc-mlp / acc-cnn / FD-digitcnn."""
import copy, json, sys, time, torch
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
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
decays = [float(d) for d in sys.argv[4].split(",")] if sys.argv[4] else []
splits = split_dataset(load_dataset("mnist-5k"), seed=0, test_fraction=0.2)
strat = extra.pop("_stratify", False)
m = DPDM(extra, splits.train.info, seed=0, context=RunContext(progress=False, cache_dir="/tmp/probe/cache"))
emas = {}
if strat:
    orig_draws = m.draws
    def sdraws(n, generator):
        d = orig_draws(n, generator)
        k = d.shape[1]
        pos = torch.arange(k, device=d.device, dtype=d.dtype).view(1, k)
        d[:, :, 0] = torch.special.ndtri(((pos + torch.special.ndtr(d[:, :, 0])) / k).clamp(1e-7, 1 - 1e-7))
        return d
    m.draws = sdraws
orig = m._update_ema
def upd():
    orig()
    with torch.no_grad():
        for d in decays:
            if d not in emas:
                emas[d] = copy.deepcopy(m.net).requires_grad_(False)
            for pe, p in zip(emas[d].parameters(), m.net.parameters()):
                pe.lerp_(p, 1.0 - d)
m._update_ema = upd
nparams = sum(p.numel() for p in m.net.parameters())
ledger, spent, fit = train(m, splits.train, PrivacyBudget(epsilon=eps, delta=1e-5))
print(label, "params", nparams, "fit", round(fit, 1), "eps", spent, "sigma", m.noise_multiplier, "steps", m.steps_taken, flush=True)
tracks = {m.config.ema_decay: m.ema, **emas}
torch.save({"config": m.config.model_dump(mode="json"), "net": m.net.state_dict(),
            "emas": {str(d): e.state_dict() for d, e in tracks.items()}}, f"/tmp/probe/{label}_model.pt")
for d, ema in tracks.items():
    m.ema = ema
    t0 = time.perf_counter()
    im, lab = m.sample(2000, seed=0)
    ts = time.perf_counter() - t0
    syn = ImageDataset(im, lab, splits.test.info, split="synthetic", meta={"labelled": True})
    res = compute_metrics(["accuracy", "fd-digitcnn"], splits.test, syn, cache_dir="/tmp/probe/cache",
                          accuracy_config=AccuracyConfig(cnn_epochs=3, mlp_max_iter=50))
    print(label, f"ema={d}", f"sample_s={ts:.1f}", {r.name: round(r.value, 3) if r.value is not None else r.missing_reason for r in res}, flush=True)
    torch.save(im[:100], f"/tmp/probe/{label}_ema{d}.pt")
