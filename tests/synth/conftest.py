from __future__ import annotations

from pathlib import Path

import pytest

from cim.synth.generate import SynthSummary, generate_city

BUILDINGS = 400
SEED = 7


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("city")
    return out, generate_city(out=out, buildings=BUILDINGS, seed=SEED, towers=1)
