"""Method registry: entry-point discovery, duplicates, broken plugins, in-process registration.

Fake plugins here are real installed-distribution layouts (``*.dist-info`` with ``entry_points.txt``) put on
``sys.path``, so discovery goes through ``importlib.metadata`` exactly as for a pip-installed package.
"""

from __future__ import annotations

import textwrap
import warnings
from importlib.metadata import distribution
from pathlib import Path

import pytest

from dpgen_bench import registry
from dpgen_bench.method import GenerativeMethod
from dpgen_bench.registry import (
    ENTRY_POINT_GROUP,
    DuplicateMethodError,
    UnknownMethodError,
    get_method,
    list_methods,
    method_entry,
    register_method,
    unregister_method,
)

BUILTINS = {"dp-mepf", "dp-merf", "dp-gan", "dp-cgan"}

METHOD_SOURCE = '''
from dpgen_bench.method import GenerativeMethod

class {cls}(GenerativeMethod):
    def fit(self, train, budget, ledger):
        pass
    def generate(self, n, labels, generator):
        raise NotImplementedError
    def checkpoint_state(self):
        return {{}}
    def load_checkpoint_state(self, state):
        pass
'''


def make_plugin(root: Path, dist: str, module: str, entry_points: dict[str, str], source: str) -> None:
    """Write an installed distribution ``dist`` (module + dist-info with entry points) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    eps = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{eps}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    monkeypatch.undo()
    registry.refresh()


def _quiet_list() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list_methods()


def test_builtins_are_declared_in_the_same_entry_point_group_as_plugins():
    eps = {ep.name: ep.value for ep in distribution("dpgen-bench").entry_points if ep.group == ENTRY_POINT_GROUP}
    assert BUILTINS <= set(eps)
    assert all(v.startswith(("dpgen_bench_methods.", "dpgen_bench_baselines.")) for v in eps.values())


def test_builtins_are_listed_with_dpgen_bench_as_their_source():
    registry.refresh()
    names = _quiet_list()
    missing = BUILTINS - set(names)
    assert not missing, f"built-in methods failed to load: {sorted(missing)}"
    for name in BUILTINS:
        assert method_entry(name).source == "dpgen-bench"


def test_plugin_is_discovered_with_its_distribution_as_source(plugin_dir):
    make_plugin(plugin_dir, "acme-gen", "acme_gen", {"acme": "acme_gen:Acme"}, METHOD_SOURCE.format(cls="Acme"))
    assert "acme" in _quiet_list()
    entry = method_entry("acme")
    assert entry.source == "acme-gen"
    assert issubclass(entry.cls, GenerativeMethod) and entry.cls.name == "acme"


def test_two_packages_with_the_same_method_name_is_an_error_naming_both(plugin_dir):
    make_plugin(plugin_dir, "first-pkg", "first_mod", {"clash": "first_mod:A"}, METHOD_SOURCE.format(cls="A"))
    make_plugin(plugin_dir, "second-pkg", "second_mod", {"clash": "second_mod:B"}, METHOD_SOURCE.format(cls="B"))
    with pytest.raises(DuplicateMethodError) as err:
        _quiet_list()
    assert "'clash'" in str(err.value)
    assert "first-pkg" in str(err.value) and "second-pkg" in str(err.value)


def test_a_plugin_that_fails_to_import_warns_naming_it_and_the_rest_still_load(plugin_dir):
    make_plugin(plugin_dir, "broken-pkg", "broken_mod", {"broken": "broken_mod:X"}, "raise ImportError('no torch_xyz')\n")
    make_plugin(plugin_dir, "good-pkg", "good_mod", {"good": "good_mod:G"}, METHOD_SOURCE.format(cls="G"))
    with pytest.warns(RuntimeWarning) as record:
        names = list_methods()
    messages = [str(w.message) for w in record]
    assert any("'broken'" in m and "broken-pkg" in m and "no torch_xyz" in m for m in messages), messages
    assert "good" in names and "broken" not in names


def test_an_entry_point_that_is_not_a_method_class_is_skipped_with_a_warning(plugin_dir):
    make_plugin(plugin_dir, "odd-pkg", "odd_mod", {"odd": "odd_mod:thing"}, "thing = 42\n")
    with pytest.warns(RuntimeWarning, match="'odd'.*not a GenerativeMethod"):
        assert "odd" not in list_methods()


def test_unknown_method_error_lists_the_available_names(plugin_dir):
    make_plugin(plugin_dir, "acme-gen", "acme_gen2", {"acme2": "acme_gen2:Acme"}, METHOD_SOURCE.format(cls="Acme"))
    _quiet_list()
    with pytest.raises(UnknownMethodError) as err:
        get_method("no-such-method")
    assert "'no-such-method'" in str(err.value) and "acme2" in str(err.value)


def _decorated(cls_name: str) -> type[GenerativeMethod]:
    namespace: dict = {}
    exec(METHOD_SOURCE.format(cls=cls_name), namespace)
    return namespace[cls_name]


def test_register_method_decorator_adds_an_in_process_method():
    cls = _decorated("InProc")
    try:
        register_method("in-proc-test")(cls)
        assert "in-proc-test" in _quiet_list()
        assert method_entry("in-proc-test").source == "<registered in-process>"
        assert get_method("in-proc-test") is cls and cls.name == "in-proc-test"
    finally:
        unregister_method("in-proc-test")
    assert "in-proc-test" not in _quiet_list()


def test_registering_a_second_class_under_the_same_name_in_process_is_an_error():
    register_method("twice-test")(_decorated("One"))
    try:
        with pytest.raises(DuplicateMethodError, match="twice-test"):
            register_method("twice-test")(_decorated("Two"))
    finally:
        unregister_method("twice-test")


def test_register_method_refuses_a_class_that_is_not_a_generative_method():
    with pytest.raises(TypeError, match="not a GenerativeMethod"):
        register_method("not-a-method")(int)
