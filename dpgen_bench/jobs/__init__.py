"""Jobs: the units of work an executor runs, below the executors and the runner (docs/architecture.md).

One typed, picklable spec per kind of job, each with its key (:mod:`.keys`) and its ``run``:

- :class:`Cell` (:mod:`.training`): train one method at one (ε, seed), sample, evaluate;
- :class:`MechanismAudit` and :class:`OneRunAudit` (:mod:`.audit`): the empirical privacy audits;
- :class:`ExternalEvaluation` (:mod:`.external`): evaluate samples made elsewhere (``dpgen-bench evaluate``).

One record model (:func:`.base.record`), one row schema (:mod:`.schema`) and one store (:mod:`.store`) for all
of them. The runner plans jobs from a config and drives them; executors only run them.
"""

from .audit import AuditJob, MechanismAudit, OneRunAudit, make_audit
from .base import Job, MethodJob, record
from .evaluation import EvaluationSpec
from .external import ExternalEvaluation
from .keys import config_hash
from .schema import AUDIT_COLUMNS, AUDITS, COLUMNS, RESULTS, Table
from .store import ResultsStore, StoreLockedError
from .training import Cell

__all__ = [
    "AUDITS",
    "AUDIT_COLUMNS",
    "AuditJob",
    "COLUMNS",
    "Cell",
    "EvaluationSpec",
    "ExternalEvaluation",
    "Job",
    "MechanismAudit",
    "MethodJob",
    "OneRunAudit",
    "RESULTS",
    "ResultsStore",
    "StoreLockedError",
    "Table",
    "config_hash",
    "make_audit",
    "record",
]
