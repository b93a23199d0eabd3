"""Mutation checks: break the code each guard protects, run the tests that guard it, expect them to fail; then
restore the file. Every row should print rc=1. Run from anywhere: ``python tools/mutations.py [NAME-PREFIX ...]``.

A row whose pattern no longer matches raises: update the pattern together with the code it breaks.
"""
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
MUTATIONS = [
  ("F1 BatchNorm generator", "baselines/dcgan.py",
   "layers: list[nn.Module] = [nn.GroupNorm(_group_count(top), top), nn.ReLU()]",
   "layers: list[nn.Module] = [nn.BatchNorm2d(top), nn.ReLU()]",
   ["tests/test_conformance.py::test_dp_sgd_gradient_rows_are_independent_of_other_examples"]),
  ("F1b generator not validated per-example", "baselines/dp_gan.py",
   "        validate_per_example(self.generator)\n", "",
   ["tests/test_conformance.py::test_dp_cgan_with_a_batchnorm_generator_is_refused_at_construction"]),
  ("F2 one shared latent stream", "baselines/dp_gan.py",
   'fake_gen = release_generator(dev) if budget.is_private else public_generator(self.seed, "d-fakes", device=dev)',
   'fake_gen = torch.Generator(device=dev).manual_seed(self.seed + 3)',
   ["tests/test_conformance.py::test_neighbouring_datasets_give_the_same_ledger_and_public_randomness"]),
  ("F3 q from len(train)", "baselines/dp_gan.py",
   "        n_hat = train.public_size()\n", "        n_hat = len(train)\n",
   ["tests/test_conformance.py::test_neighbouring_datasets_give_the_same_ledger_and_public_randomness"]),
  ("F3b delta rule from len(train)", "dpgen_bench/runner/execute.py",
   "    n_hat = splits.train.public_size()\n", "    n_hat = len(splits.train) - 1\n",
   ["tests/test_runner_end_to_end.py::test_results_csv_is_long_format_with_every_design_column"]),
  ("F4 calibration ignores the budget's accountant", "dpgen_bench/privacy/calibration.py",
   "    accountant = budget.accountant\n", "    accountant = \"prv\"\n",
   ["tests/test_conformance.py::test_ledger_stays_within_target_for_every_supported_accountant"]),
  ("F4b gdp not refused for DP-SGD", "dpgen_bench/method.py",
   "        if self.dp_sgd and not get_accountant(accountant).subsampling:", "        if False:",
   ["tests/test_runner_config.py::test_gdp_with_a_dp_sgd_method_is_refused_before_training"]),
  ("F5 PRV error added to the spend check", "dpgen_bench/privacy/budget.py",
   "return bool(spent <= self.epsilon * (1.0 + SPEND_RTOL))", "return bool(spent <= self.epsilon + 0.01)",
   ["tests/test_privacy_accounting.py::test_spend_above_target_by_less_than_prv_error_is_not_admitted"]),
  ("F6 labelled guessed from capabilities", "dpgen_bench/method.py",
   "                and cls.samples_labelled is GenerativeMethod.samples_labelled):", "                and False):",
   ["tests/test_method_interface.py::test_a_method_that_trains_either_way_must_say_whether_its_sample_labels_mean_anything"]),
  ("F7 private-family extractor allowed", "dpgen_bench/features/base.py",
   "    if family in extractor_trained_on(name):", "    if False:",
   ["tests/test_runner_config.py::test_an_extractor_trained_on_the_private_family_is_refused_for_training"]),
  ("F8 toy release noise from the run seed", "tests/runner_toy.py",
   "            sums = sums + gaussian_noise((k, d), sigma * math.sqrt(d), dtype=torch.float32)\n            counts = counts + gaussian_noise((k,), sigma)",
   "            g = torch.Generator().manual_seed(self.seed)\n            sums = sums + sigma * math.sqrt(d) * torch.randn(k, d, generator=g)\n            counts = counts + sigma * torch.randn(k, generator=g, dtype=torch.float64)",
   ["tests/test_conformance.py::test_release_noise_is_fresh_for_the_same_public_seed"]),
]
MUTATIONS += [
  ("R1 workers outlive the parent", "dpgen_bench/runner/benchmark.py",
   "initargs=(threads, tuple(config.plugins), os.getpid()),", "initargs=(threads, tuple(config.plugins), None),",
   ["tests/test_runner_kill.py::test_sigkill_of_a_jobs_parent_takes_its_workers_with_it"]),
  ("R2 Ctrl-C not handled", "dpgen_bench/cli/run.py",
   "    except RunInterrupted as exc:", "    except ZeroDivisionError as exc:",
   ["tests/test_runner_kill.py::test_ctrl_c_stops_promptly_with_one_line_and_a_valid_store"]),
  ("R3 jobs: queued cells not cancelled", "dpgen_bench/runner/benchmark.py",
   "            for process in list(getattr(pool, \"_processes\", {}).values()):\n                process.kill()\n            pool.shutdown(wait=False, cancel_futures=True)\n",
   "            pool.shutdown(wait=True)\n",
   ["tests/test_runner_kill.py::test_ctrl_c_stops_promptly_with_one_line_and_a_valid_store"]),
]
MUTATIONS += [
  ("R4 no pre-flight checks", "dpgen_bench/runner/benchmark.py", "    check_environment(config)\n", "",
   ["tests/test_runner_config.py", "-k", "refused_before"]),
  ("R5 no lock", "dpgen_bench/runner/benchmark.py", "    with store.lock():\n", "    if True:\n",
   ["tests/test_runner_kill.py::test_a_second_run_on_the_same_output_directory_is_refused_naming_the_holder"]),
]
MUTATIONS += [
  ("R6 artefacts not verified", "dpgen_bench/runner/store.py",
   "        problem = verify_artefacts(self.cells_dir / key, expected)\n", "        problem = None\n",
   ["tests/test_runner_damage.py"]),
  ("R7 table from results.csv", "dpgen_bench/cli/table.py", "    return records\n", "    return store.read_results()\n",
   ["tests/test_runner_damage.py", "-k", "table"]),
  ("R8 plot reads junk png", "dpgen_bench/runner/plots.py", "    except Exception:  # PIL", "    except ZeroDivisionError:  # PIL",
   ["tests/test_runner_damage.py", "-k", "junk"]),
]
MUTATIONS += [
  ("P1 plan disagrees with the release", "methods/dp_mepf.py",
   '        return 2 if config.moments == "phi1+phi2" else 1', "        return 1",
   ["tests/test_conformance.py", "-k", "accountant and dp-mepf"]),
  ("P2 unreachable eps not checked", "dpgen_bench/runner/config.py",
   "        check_reachable(config, cls, method_config, where)\n", "",
   ["tests/test_runner_config.py", "-k", "no_noise_can_reach"]),
]
MUTATIONS += [  # extension points: datasets, extractors, accountants registered from user code; atomic writes
  ("X1 datasets listed alphabetically only", "dpgen_bench/data/registry.py",
   "key=lambda n: (not DATASETS.get(n).offline, n))", "key=lambda n: (n,))",
   ["tests/test_extension_points.py::test_a_registered_dataset_is_listed_offline_first_and_shown_by_the_cli"]),
  ("X2 own loader not called", "dpgen_bench/data/registry.py",
   "        dataset = spec.load()\n", "        dataset = embedded.load_digits()\n",
   ["tests/test_extension_points.py::test_a_registered_dataset_loads_and_splits"]),
  ("X3 n-hat from the loaded length", "dpgen_bench/data/registry.py",
   "return dataclasses.replace(dataset, nominal_size=spec.size)", "return dataclasses.replace(dataset, nominal_size=len(dataset))",
   ["tests/test_extension_points.py::test_a_registered_dataset_declares_the_spec_size_not_the_loaded_length"]),
  ("X4 loader contract not checked", "dpgen_bench/data/registry.py",
   "    _check_loaded(spec, dataset)\n", "",
   ["tests/test_extension_points.py::test_a_loader_breaking_the_contract_is_refused_when_loading"]),
  ("X5 calibration ignores a registered accountant", "dpgen_bench/privacy/calibration.py",
   "    accountant = budget.accountant\n", "    accountant = \"prv\"\n",
   ["tests/test_extension_points.py::test_a_registered_dataset_and_accountant_run_a_tiny_benchmark"]),
  ("X6 extractor not frozen", "dpgen_bench/features/base.py",
   "    return extractor.freeze().to(device)", "    return extractor.to(device)",
   ["tests/test_extension_points.py::test_a_registered_extractor_is_listed_built_frozen_and_differentiable"]),
  ("X7 private-family extractor allowed", "dpgen_bench/features/base.py",
   "    if family in extractor_trained_on(name):", "    if False:",
   ["tests/test_extension_points.py::test_a_registered_extractor_is_not_public_for_its_own_family"]),
  ("X8 CLI backends hard-coded", "dpgen_bench/cli/privacy.py",
   "        return list_accountants()\n", "        return [\"prv\", \"rdp\", \"prv-accountant\", \"gdp\"]\n",
   ["tests/test_extension_points.py::test_a_registered_accountant_is_listed_and_usable_from_the_cli"]),
  ("X9 subsampling capability not read", "dpgen_bench/privacy/accounting.py",
   "    return [name for name, acc in ACCOUNTANTS.items() if acc.subsampling]", "    return ACCOUNTANTS.names()",
   ["tests/test_extension_points.py::test_a_registered_accountant_drives_budget_calibration_and_ledger"]),
  ("X10 coarse guide by name", "dpgen_bench/privacy/calibration.py",
   "    if get_accountant(accountant).discretised:", "    if accountant in (\"prv\", \"prv-accountant\"):",
   ["tests/test_extension_points.py::test_a_discretised_accountant_gets_the_coarse_guide_and_a_closed_form_one_does_not"]),
  ("X11 extractor origin lost", "dpgen_bench/features/base.py",
   "ExtractorEntry(factory, families), origin=origin_of(factory))", "ExtractorEntry(factory, families))",
   ["tests/test_extension_points.py::test_a_name_registered_twice_is_refused_naming_both_origins"]),
  ("X12 unknown dataset only a KeyError", "dpgen_bench/data/errors.py",
   "class UnknownDatasetError(UnknownNameError):", "class UnknownDatasetError(KeyError):",
   ["tests/test_extension_points.py::test_an_unknown_name_lists_the_valid_names_including_registered_ones"]),
  ("X13 trained_on string accepted", "dpgen_bench/features/base.py",
   "    if isinstance(trained_on, str):", "    if False:",
   ["tests/test_extension_points.py::test_a_malformed_registration_is_refused_naming_the_problem"]),
  ("X14 temporary without the target's suffix", "dpgen_bench/files.py",
   "keep_suffix: bool = True", "keep_suffix: bool = False",
   ["tests/test_files.py::test_a_file_name_writer_lands_on_the_target_and_leaves_no_temporary"]),
  ("X15 failed write leaves its temporary", "dpgen_bench/files.py",
   "    finally:\n        if tmp.exists():\n            tmp.unlink()\n", "    except BaseException:\n        raise\n",
   ["tests/test_files.py::test_a_failed_write_keeps_the_old_file_and_removes_the_temporary"]),
]
MUTATIONS += [
  ("C1 sample() lets labels out of range", "dpgen_bench/method.py",
   "            if n and (int(labels.min()) < 0 or int(labels.max()) >= k):", "            if False:",
   ["tests/test_contract_conformance.py", "-k", "bad_sample_input and dp-merf-grey28-eps10"]),
  ("C2 registry accepts a name twice", "dpgen_bench/named_registry.py",
   "        if name in self._entries:\n", "        if False:\n",
   ["tests/test_named_registry.py", "tests/test_extension_points.py"]),
  ("C3 default config keys drift", "methods/dp_merf.py",
   "    lr_decay: float = Field(0.59, gt=0, le=1)", "    lr_decay: float = Field(0.6, gt=0, le=1)",
   ["tests/test_runner_config.py::test_the_default_config_has_the_cell_keys_of_the_committed_reference_run"]),
  ("PE1 an example votes twice", "methods/private_evolution.py",
   "votes.index_add_(0, members[nearest], torch.ones_like(nearest))",
   "votes.index_add_(0, members[nearest], 2 * torch.ones_like(nearest))",
   ["tests/test_pe.py"]),
  ("PE2 public draws depend on the votes", "methods/private_evolution.py",
   "    u = torch.rand(len(weights), generator=generator, dtype=torch.float64)\n",
   "    u = torch.zeros(len(weights), dtype=torch.float64)\n"
   "    u[weights > 0] = torch.rand(int((weights > 0).sum()), generator=generator, dtype=torch.float64)\n",
   ["tests/test_pe.py", "tests/test_conformance.py", "-k", "resampling or (neighbouring and pe)"]),
  ("PE3 one release recorded for T histograms", "methods/private_evolution.py",
   "        ledger.record(GaussianEvent(sigma), f\"pe:", "        0 if t else ledger.record(GaussianEvent(sigma), f\"pe:",
   ["tests/test_pe.py", "tests/test_conformance.py", "-k", "ledger and pe"]),
  ("PE4 release noise from the run seed", "methods/private_evolution.py",
   "        noisy = votes.double() + gaussian_noise(votes.shape, sigma)",
   "        noisy = votes.double() + sigma * torch.randn(votes.shape, generator=public_generator(self.seed, t), dtype=torch.float64)",
   ["tests/test_conformance.py", "-k", "fresh and pe"]),
]
only = sys.argv[1:]
for name, path, old, new, tests in MUTATIONS:
    if only and not any(name.startswith(o) for o in only):
        continue
    full = f"{ROOT}/{path}"; src = open(full).read()
    assert src.count(old) == 1, (name, "pattern not found once")
    open(full, "w").write(src.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=ROOT, capture_output=True, text=True)
        last = [l for l in r.stdout.splitlines() if "passed" in l or "failed" in l or "error" in l][-1:]
        fails = [l for l in r.stdout.splitlines() if l.startswith("FAILED")]
        print(f"{name}: rc={r.returncode} {' '.join(last)} | {'; '.join(f[7:120] for f in fails[:3])}", flush=True)
    finally:
        open(full, "w").write(src)
