"""The layers of docs/architecture.md are a contract that fails the build: `.importlinter`
holds exactly these layers and contracts (removing one is a failing test, not a silent
weakening), and `lint-imports` keeps all of them on the tree as it is."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: lowest first, as docs/architecture.md draws them (top first); `|` independent siblings
LAYERS = [
    "edgebus.errors",
    "edgebus.core",
    "edgebus.config",
    "edgebus.wire | edgebus.kafka | connectors | edgebus.prometheus | edgebus.tracing",
    "edgebus.region | edgebus.commit | edgebus.sagas | edgebus.state",
    "edgebus.server",
    "edgebus.sdk",
    "edgebus.workflow",
    "edgebus.dataflow | edgebus.bench",
    "edgebus.cli",
]

#: what may never import the local Kafka launcher (dev tooling): all but cli and bench
LIBRARY = {
    "edgebus.errors", "edgebus.core", "edgebus.config", "edgebus.wire", "edgebus.kafka",
    "connectors", "edgebus.prometheus", "edgebus.tracing", "edgebus.region",
    "edgebus.commit", "edgebus.sagas", "edgebus.state", "edgebus.server", "edgebus.sdk",
    "edgebus.workflow", "edgebus.dataflow",
}


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter")
    return parser


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.strip().splitlines() if line.strip()]


def test_the_layers_contract_lists_every_layer_of_the_architecture_lowest_last() -> None:
    layers = _contracts()["importlinter:contract:layers"]
    assert layers["type"] == "layers"
    assert _lines(layers["layers"]) == list(reversed(LAYERS))


def test_the_library_and_the_services_may_not_import_the_kafka_launcher() -> None:
    contract = _contracts()["importlinter:contract:dev-tooling"]
    assert contract["type"] == "forbidden"
    assert set(_lines(contract["source_modules"])) == LIBRARY
    assert _lines(contract["forbidden_modules"]) == ["edgebus.localkafka"]


def test_no_package_may_have_an_import_cycle_with_a_sibling() -> None:
    contract = _contracts()["importlinter:contract:acyclic"]
    assert contract["type"] == "acyclic_siblings"
    assert set(_lines(contract["ancestors"])) == {"edgebus", "connectors"}
    assert "ignore_imports" not in contract


def test_lint_imports_keeps_every_contract_on_the_tree() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout
