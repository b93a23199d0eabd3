"""The import structure the architecture relies on (docs/architecture.md), read from the source: the core never
imports a concrete method, and the method interface does not import the audit layer built on it."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "dpgen_bench"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (function bodies and TYPE_CHECKING blocks included), made absolute."""
    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.add(".".join(part for part in (base, node.module or "") if part))
    return found


def test_no_core_module_imports_a_concrete_method():
    concrete = ("dpgen_bench_methods", "dpgen_bench_baselines")
    offenders = {str(p.relative_to(CORE.parent)): sorted(m for m in _imports(p) if m.startswith(concrete))
                 for p in CORE.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_method_interface_does_not_import_the_audit_layer():
    imported = _imports(CORE / "method.py")
    assert "dpgen_bench.context" in imported  # the reader resolves relative imports
    assert not [m for m in imported if m.startswith("dpgen_bench.audit")], imported
