"""Stratos' exception hierarchy: one base, each message in plain words.

Every exception class Stratos defines is a `StratosError` (`tests/unit/shared/test_error_tree.py` checks it), so
``except StratosError`` catches everything raised on purpose and the CLI prints it as one line. Below the base, one
root per layer a caller handles differently; a class that callers also catch as ``ValueError`` or ``RuntimeError``
keeps that base too:

- here: bad events (`InvalidEventError`), artifacts, job state, the input policy, wiring bugs, `Redeliver`;
- `stratos_shared.tasks.errors.TaskError`: a task refused (options, data file, snapshot, grading, user patterns);
- `stratos_shared.teacher.errors.TeacherError`: the teacher (secrets, address, answers, the HTTP engine);
- `stratos_shared.localmodels.bundled.BundledModelError`, `stratos_shared.catalog.CatalogError`,
  `stratos_shared.embedded.EmbeddedNatsError`: a bundled model, the server catalog, the embedded nats-server;
- `stratos_trainer.domain.errors.TrainingError`: training data or a chat template the trainer cannot use;
- `stratos_deployer.serving.process.ServingError`: a model server that does not come up, a request it refuses;
- the CLI's: `StackUnreachable`, `MembershipError`, `ReportError`, `Stopped` (a signal ends `server join`);
- the inventory's `ProductsApiError` (a products API that does not answer usably).
"""

from __future__ import annotations


class StratosError(Exception):
    """Base of every error Stratos raises on purpose."""


class InvalidEventError(StratosError):
    """A message on the bus is not a valid event of the expected type and version."""

    def __init__(self, reason: str, errors: list[str] | None = None, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []
        self.job_id = job_id


class ArtifactError(StratosError):
    """An artifact could not be stored or read, or its name/URI is not allowed."""


class JobStateError(StratosError):
    """A job's state or spec is missing or inconsistent."""


class PolicyError(StratosError):
    """A job spec references something the operator's input policy refuses (a path, a secret, a network)."""


class UndeclaredEventError(StratosError):
    """A handler or publisher tried to publish an event type it did not declare (a wiring bug, not bad input)."""


class Redeliver(StratosError):
    """Hand the message back to the queue now: not a failure (e.g. a trainer cut off from NATS hands its job back).

    Not FastStream's ``NackMessage``: our consumers use manual acks and the event router's own pull loop
    (`stratos_shared.bus.handler`) acks, naks with backoff and dead-letters itself. It catches this before
    its generic failure path, so handing back neither counts as a failed attempt nor dead-letters; a
    ``NackMessage`` raised inside that loop would be just another exception to it.
    """

    def __init__(self, reason: str, delay_s: float = 0.5) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
