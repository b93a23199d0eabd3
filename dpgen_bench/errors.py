"""Errors that several layers raise (the runner's config checks, the executors' pre-flight checks, the jobs):
the ground floor, so no layer imports another one above it only to raise its error."""

from __future__ import annotations


class ConfigFileError(ValueError):
    """A benchmark config that does not validate; the message names the key and the bad value.

    Carries every problem found (``problems``), so a config with several mistakes is reported in one go:
    one problem reads as its own line, several as ``invalid benchmark config (N problems):`` and a list."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(dict.fromkeys(problems))
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"invalid benchmark config ({len(self.problems)} problems):" + "".join(
                f"\n  - {p.removeprefix(_SCHEMA_PREFIX)}" for p in self.problems)
        super().__init__(text)


_SCHEMA_PREFIX = "invalid benchmark config: "
