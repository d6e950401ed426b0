"""The documentation says each thing once and stays true: parameter tables, links, the repository's bounds."""
import importlib
import pkgutil
import subprocess
from pathlib import Path

import vla_ros.nodes
from vla_ros.nodes import parameters
from vla_ros.nodes.base import VlaNode

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("ARCHITECTURE" + ".md", "../" + "shared")  # the strings themselves would match this file otherwise


def test_the_readme_parameter_tables_are_the_nodes_parameters():
    """Every table equals the one generated from the node's parameter dataclass."""
    text = (REPO / "README.md").read_text()
    assert parameters.stale(text) == [], "run: .venv/bin/python -m vla_ros.nodes.parameters README.md"
    assert {m.group("name") for m in parameters.BLOCK.finditer(text)} == set(parameters.TABLES)


def test_every_node_has_its_table():
    """A node class whose parameters have no README table fails here (add it to parameters.TABLES)."""
    for module in pkgutil.iter_modules(vla_ros.nodes.__path__, "vla_ros.nodes."):
        importlib.import_module(module.name)

    def subclasses(cls):
        return {cls, *(s for c in cls.__subclasses__() for s in subclasses(c))}

    documented = set(parameters.TABLES.values())
    missing = [node.__name__ for node in subclasses(VlaNode) if node.params_type not in documented]
    assert not missing


def test_nothing_refers_to_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in tracked:
        path = REPO / name
        if path.suffix in (".png", ".safetensors") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert found == []


def test_the_docs_the_readme_points_to_exist():
    text = (REPO / "README.md").read_text()
    for doc in ("docs/architecture.md", "docs/notes/sim-time.md", "docs/notes/inverse-dynamics.md",
                "docs/notes/builtin-vla.md", "docs/demo_sheet.png"):
        assert doc in text and (REPO / doc).is_file(), doc
