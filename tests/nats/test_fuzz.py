"""Bad input over a real nats-server: every malformed payload is refused with a reason, nothing wedges.

Payloads come from a seeded generator (random bytes, cut JSON, wrong types,
huge fields, unknown versions, missing fields) and go to every subject a
service consumes. Each one must be answered (`JobRejected` for job
submissions) or dead-lettered with a reason, and every consumer must still
serve a valid event afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from stratos_data_synth.main import build as build_data_synth
from stratos_data_synth.settings import DataSynthSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.contracts.events import (
    DataReady,
    JobSubmitted,
    ModelTrained,
    ServerChosen,
    ServerDown,
    ServerDownRequested,
    TeacherChosen,
)
from stratos_shared.contracts.job import JobSpec
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from tests.nats.services import common, running

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]
PER_SUBJECT = 12


def valid_job(job_id: str) -> dict[str, Any]:
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return json.loads(JobSubmitted(job_id=job_id, spec=spec).to_bytes())


def mutations(rng: random.Random, template: dict[str, Any]) -> list[bytes]:
    """Malformed variants of a valid payload, each broken in a different way."""
    out: list[bytes] = [
        bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))),
        json.dumps(template).encode()[: rng.randint(1, 40)],
        b"[1, 2, 3]",
        b"null",
        json.dumps({**template, "schema_version": 999}).encode(),
        json.dumps({**template, "event_type": "SomethingElse"}).encode(),
        json.dumps({**template, "job_id": "x" * 5000}).encode(),
        json.dumps({**template, "job_id": {"nested": [1, 2]}}).encode(),
        json.dumps({k: v for k, v in template.items() if k not in ("job_id", "spec", "server_id", "server")}).encode(),
        json.dumps({**template, "submitted_by": "y" * 400_000, "server_id": "y" * 400_000}).encode(),
    ]
    while len(out) < PER_SUBJECT:
        broken = dict(template)
        key = rng.choice([k for k in ("job_id", "spec", "server_id", "server", "revision", "mode") if k in template])
        broken[key] = rng.choice([None, -1, "", [], {"a": 1}, "☃" * 50, 1e308])
        out.append(json.dumps(broken).encode())
    return out


TEMPLATES: dict[str, dict[str, Any]] = {
    ServerDownRequested.SUBJECT: {"event_type": "ServerDownRequested", "server_id": "t4-us-east"},
    ServerDown.SUBJECT: {"event_type": "ServerDown", "server_id": "t4-us-east", "reason": "x"},
    ServerChosen.SUBJECT: {"event_type": "ServerChosen", "job_id": "j", "revision": 1, "server": {}},
    TeacherChosen.SUBJECT: {"event_type": "TeacherChosen", "job_id": "j", "teacher": "t", "mode": "alignment"},
    DataReady.SUBJECT: {"event_type": "DataReady", "job_id": "j", "mode": "alignment", "train_uri": "x"},
    f"{ModelTrained.SUBJECT}.server.t4-us-east": {"event_type": "ModelTrained", "job_id": "j", "model_uri": "x"},
}


@pytest.mark.timeout(240)
async def test_malformed_payloads_are_refused_and_consumers_keep_serving(nats_server, tmp_path, nc: Client, collect):
    rejected = await collect("stratos.evt.job.rejected")
    chosen = await collect("stratos.evt.server.chosen")
    dead = await collect("stratos.dlq.>")
    rng = random.Random(20261129)
    base = common(nats_server, tmp_path)
    services = (
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base)),
        build_teacher_eval(TeacherEvalSettings(**base)),
        build_data_synth(DataSynthSettings(**base)),
    )
    js = nc.jetstream()
    sent = 0
    async with running(*services):
        job_payloads = mutations(rng, valid_job("fuzz"))
        for index, payload in enumerate(job_payloads):
            await js.publish(JobSubmitted.SUBJECT, payload, headers={"Nats-Msg-Id": f"job-{index}"})
        for subject, template in TEMPLATES.items():
            for index, payload in enumerate(mutations(rng, template)):
                await js.publish(subject, payload, headers={"Nats-Msg-Id": f"{subject}-{index}"})
                sent += 1
        await js.publish(JobSubmitted.SUBJECT, json.dumps(valid_job("after-fuzz")).encode())
        await chosen.wait_for(lambda c: any(b.get("job_id") == "after-fuzz" for b in c.bodies()), timeout_s=60)
        await rejected.wait_for(lambda c: len(c.messages) >= len(job_payloads), timeout_s=60)
        # Each payload is dead-lettered once, by the consumer that owns its subject (the ledger only reads);
        # DataReady and ModelTrained have no owner running here (trainer, deployer).
        expected = len(job_payloads) + sent - 2 * PER_SUBJECT
        await dead.wait_for(lambda c: len(c.messages) >= expected, timeout_s=60)
        await asyncio.sleep(1.0)  # a second copy of any of them would arrive by now

    assert len(dead.messages) == expected, "a payload was dead-lettered more than once"

    assert len(rejected.messages) == len(job_payloads)
    assert all(body["reason"] for body in rejected.bodies())
    for message in dead.messages:
        assert message.headers and message.headers["Stratos-Dead-Reason"]
    assert not [b for b in chosen.bodies() if b.get("job_id") == "fuzz"], "a malformed job was placed"
